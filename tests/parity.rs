//! JSON parity with crit 4.2 and exact round trips, on every image of the
//! CRIU 4.2 fixtures (testdata/criu-4.2, copied from shared/fixtures).

mod kit;
use kit::cli::*;

fn reference(img: &std::path::Path, suffix: &str) -> Vec<u8> {
    let name = img.file_name().unwrap().to_str().unwrap();
    let p = img
        .parent()
        .unwrap()
        .join("crit-4.2")
        .join(format!("{name}{suffix}"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn decode_compact_matches_crit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    for dir in fixture_dirs() {
        for img in fixture_images(&dir) {
            let out = tmp.path().join("out.json");
            let o = run(
                crit().arg("decode").arg("-i").arg(&img).arg("-o").arg(&out),
                None,
            );
            assert!(
                o.status.success(),
                "{}: {}",
                img.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(
                std::fs::read(&out).unwrap() == reference(&img, ".json"),
                "decode differs: {}",
                img.display()
            );
            n += 1;
        }
    }
    assert!(n > 100, "only {n} images checked");
}

#[test]
fn show_and_decode_pretty_match_crit() {
    for dir in fixture_dirs() {
        for img in fixture_images(&dir) {
            let want = reference(&img, ".pretty.json");
            let show = run(crit().arg("show").arg(&img), None);
            assert!(show.status.success(), "{}", img.display());
            assert!(show.stdout == want, "show differs: {}", img.display());
            // decode --pretty to stdout is the same as show.
            let dp = run(crit().args(["decode", "--pretty", "-i"]).arg(&img), None);
            assert!(
                dp.stdout == want,
                "decode --pretty differs: {}",
                img.display()
            );
        }
    }
}

#[test]
fn encode_gives_back_the_original_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in fixture_dirs() {
        for img in fixture_images(&dir) {
            let original = std::fs::read(&img).unwrap();
            for suffix in [".json", ".pretty.json"] {
                let json = img.parent().unwrap().join("crit-4.2").join(format!(
                    "{}{suffix}",
                    img.file_name().unwrap().to_str().unwrap()
                ));
                let out = tmp.path().join("back.img");
                let o = run(
                    crit()
                        .arg("encode")
                        .arg("-i")
                        .arg(&json)
                        .arg("-o")
                        .arg(&out),
                    None,
                );
                assert!(
                    o.status.success(),
                    "{}: {}",
                    json.display(),
                    String::from_utf8_lossy(&o.stderr)
                );
                assert!(
                    std::fs::read(&out).unwrap() == original,
                    "encode differs: {}",
                    json.display()
                );
            }
        }
    }
}

#[test]
fn pipes_work_both_ways() {
    let img = testdata().join("criu-4.2/kitchen/sk-queues.img");
    let bytes = std::fs::read(&img).unwrap();
    let dec = run(crit().arg("decode"), Some(&bytes));
    assert!(dec.status.success());
    // To stdout, decode ends with a newline, as crit does.
    let mut want = reference(&img, ".json");
    want.push(b'\n');
    assert_eq!(dec.stdout, want);
    let enc = run(
        crit().args(["encode", "-i", "-", "-o", "-"]),
        Some(&dec.stdout),
    );
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
    assert_eq!(enc.stdout, bytes);
}
