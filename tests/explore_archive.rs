//! `crit x` on checkpoint archives, read in place: every view of an
//! archive prints exactly what it prints for the images dir inside it
//! (tar, tar.gz and tar.zst, podman's layout and images at the top);
//! podman's own export (testdata/podman) against its unpacked
//! `checkpoint/`; `show`/`decode`/`info` of `ARCHIVE:MEMBER`; `x info`;
//! clear one-line errors for what is not an archive or is cut short.

mod kit;

use kit::archive::{podman_like, Codec, Pack, CODECS};
use kit::cli::{assert_fails, fixture_dirs, run, x};
use kit::crit;
use serde_json::Value;
use std::path::{Path, PathBuf};

const VIEWS: [&str; 5] = ["ps", "fds", "mems", "rss", "sk"];

fn pids(dir: &Path) -> Vec<String> {
    let ps: Value = serde_json::from_slice(&x(dir, &["ps", "--json"])).unwrap();
    ps.as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].to_string())
        .collect()
}

/// Every view, text and JSON, of `a` and of `dir`, must be the same bytes.
fn same_views(dir: &Path, a: &Path) {
    for view in VIEWS {
        for json in [false, true] {
            let mut args = vec![view];
            if json {
                args.push("--json");
            }
            assert_eq!(
                String::from_utf8_lossy(&x(a, &args)),
                String::from_utf8_lossy(&x(dir, &args)),
                "{} vs {}: {args:?}",
                a.display(),
                dir.display()
            );
        }
    }
    for pid in pids(dir) {
        for args in [vec!["mem", &pid], vec!["mem", &pid, "--json"]] {
            assert_eq!(x(a, &args), x(dir, &args), "{}: {args:?}", a.display());
        }
    }
}

#[test]
fn every_view_of_an_archive_is_that_of_its_images() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in fixture_dirs() {
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        for codec in CODECS {
            let a = podman_like(
                &dir,
                codec,
                &tmp.path().join(format!("{name}.{}", codec.ext())),
            );
            same_views(&dir, &a);
        }
    }
}

#[test]
fn images_at_the_top_of_a_tar_are_found_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = kit::fixture("kitchen");
    let a = Pack::new()
        .dir(&dir, "")
        .write(Codec::Gzip, &tmp.path().join("k.tgz"));
    same_views(&dir, &a);
}

/// podman's archive unpacked with the tar and zstd crates.
fn unpack_podman(to: &Path) -> PathBuf {
    let f = std::fs::File::open(kit::testdata().join("podman/busybox.tar.zst")).unwrap();
    let dec = zstd::stream::read::Decoder::new(f).unwrap();
    tar::Archive::new(dec).unpack(to).unwrap();
    to.join("checkpoint")
}

#[test]
fn podmans_export_reads_as_its_unpacked_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = unpack_podman(tmp.path());
    let a = kit::testdata().join("podman/busybox.tar.zst");
    same_views(&dir, &a);
    // The container's tree: sh with two sleeps.
    let ps = String::from_utf8(x(&a, &["ps"])).unwrap();
    assert!(
        ps.contains("   sh\n") && ps.matches("sleep").count() == 2,
        "{ps}"
    );
    // Single images: show, decode and info of ARCHIVE:MEMBER.
    let mut images: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".img"))
        .collect();
    images.sort();
    assert!(images.len() > 30, "{images:?}");
    for n in &images {
        let member = format!("{}:checkpoint/{n}", a.display());
        let file = dir.join(n);
        let cmds: Vec<Vec<&str>> = vec![vec!["show"], vec!["info"], vec!["decode", "-i"]];
        for c in cmds {
            let ours = run(crit().args(&c).arg(&member), None);
            let want = run(crit().args(&c).arg(&file), None);
            assert_eq!(ours.stdout, want.stdout, "{c:?} {member}");
            // Raw files (tmpfs contents) fail alike, naming the member.
            assert_eq!(ours.status.code(), want.status.code(), "{c:?} {member}");
            if !want.status.success() {
                let err = String::from_utf8_lossy(&ours.stderr);
                assert!(err.lines().count() == 1 && err.contains(&member), "{err}");
            }
        }
    }
    let o = run(
        crit()
            .arg("show")
            .arg(format!("{}:checkpoint/nope.img", a.display())),
        None,
    );
    assert_fails(&o, "no member checkpoint/nope.img");
}

#[test]
fn info_says_what_the_checkpoint_is() {
    let a = kit::testdata().join("podman/busybox.tar.zst");
    let v: Value = serde_json::from_slice(&x(&a, &["info", "--json"])).unwrap();
    assert_eq!(v["container"], "crit-fixture");
    assert_eq!(v["engine"], "podman");
    assert_eq!(v["runtime"], "runc");
    assert_eq!(v["format"], "tar.zst");
    assert_eq!(v["image"], "localhost/crit-fixture-busybox:1");
    assert_eq!(v["tasks"], 3);
    assert_eq!(v["root"], "pid 1 (sh)");
    assert_eq!(v["hostname"], "edf5096f934b");
    assert!(
        v["created"]
            .as_str()
            .unwrap()
            .starts_with("2026-12-03T06:13:10"),
        "{v}"
    );
    assert!(
        v["checkpointed"]
            .as_str()
            .unwrap()
            .starts_with("2026-12-03T06:13:"),
        "{v}"
    );
    assert!(
        v["network"][0].as_str().unwrap().contains("10.88.0.24/16"),
        "{v}"
    );
    // Sizes add up to what the archive holds.
    let tmp = tempfile::tempdir().unwrap();
    let dir = unpack_podman(tmp.path());
    let (mut all, mut pages) = (0u64, 0u64);
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        let len = e.metadata().unwrap().len();
        all += len;
        if e.file_name().to_str().unwrap().starts_with("pages-") {
            pages += len;
        }
    }
    assert_eq!(v["images_size"], all);
    assert_eq!(v["pages_size"], pages);
    assert_eq!(
        v["devshm_size"],
        std::fs::metadata(tmp.path().join("devshm-checkpoint.tar"))
            .unwrap()
            .len()
    );
    // podman moves stats-dump out of the images: read from beside them.
    assert_eq!(v["pages_written"], 50);
    let text = String::from_utf8(x(&a, &["info"])).unwrap();
    assert!(text.contains("container:        crit-fixture\n"), "{text}");
    assert!(text.contains("engine:           podman\n"), "{text}");
    // On a plain images dir: what the images say.
    let d: Value = serde_json::from_slice(&x(&dir, &["info", "--json"])).unwrap();
    assert_eq!(d["tasks"], 3);
    assert!(d.get("container").is_none(), "{d}");
    // A made-up archive in podman's layout, without stats.
    let b = podman_like(
        &kit::fixture("counter"),
        Codec::Tar,
        &tmp.path().join("c.tar"),
    );
    let v: Value = serde_json::from_slice(&x(&b, &["info", "--json"])).unwrap();
    assert_eq!(v["container"], "made-up");
    assert_eq!(v["command"], "/bin/sh -c loop");
    assert_eq!(v["tasks"], 1);
}

#[test]
fn what_is_not_an_archive_or_is_cut_short_fails_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, b"this is not a tar archive at all").unwrap();
    assert_fails(
        &run(crit().arg("x").arg(&junk).arg("ps"), None),
        "not a tar, tar.gz or tar.zst",
    );
    let empty = Pack::new()
        .file("README", b"hello")
        .write(Codec::Tar, &tmp.path().join("e.tar"));
    assert_fails(
        &run(crit().arg("x").arg(&empty).arg("ps"), None),
        "no images in it",
    );
    let dir = kit::fixture("kitchen");
    for codec in CODECS {
        let whole = podman_like(&dir, codec, &tmp.path().join(format!("w.{}", codec.ext())));
        let data = std::fs::read(&whole).unwrap();
        for cut in [data.len() / 3, data.len() / 2, data.len() - 600] {
            let short = tmp.path().join(format!("short-{cut}.{}", codec.ext()));
            std::fs::write(&short, &data[..cut]).unwrap();
            for view in ["ps", "fds", "sk", "info"] {
                let o = run(crit().arg("x").arg(&short).arg(view), None);
                let err = String::from_utf8_lossy(&o.stderr);
                // Either the part that is there is enough, or one line says why.
                if !o.status.success() {
                    assert_eq!(o.status.code(), Some(1), "{codec:?} {cut} {view}: {err}");
                    assert_eq!(err.lines().count(), 1, "{codec:?} {cut} {view}: {err}");
                    assert!(err.starts_with("crit: ") && err.contains("short-"), "{err}");
                }
            }
        }
    }
}

#[test]
fn a_member_that_runs_past_the_end_is_named() {
    // A plain tar is read by seeking, which passes its end quietly: a
    // member cut short read as a short member ("lacks required field",
    // or "no member" for those after it), and a declared size past the
    // end named no member.
    let tmp = tempfile::tempdir().unwrap();
    let dir = kit::fixture("counter");
    let whole = Pack::new()
        .dir(&dir, "checkpoint/")
        .write(Codec::Tar, &tmp.path().join("w.tar"));
    let tar = std::fs::read(&whole).unwrap();
    // Cut in the middle of the pages.
    let short = tmp.path().join("short.tar");
    std::fs::write(&short, &tar[..tar.len() / 2]).unwrap();
    for view in [vec!["ps"], vec!["mem", "26659"]] {
        assert_fails(
            &run(crit().arg("x").arg(&short).args(&view), None),
            "member checkpoint/pages-1.img (4308992 bytes from byte",
        );
    }
    // pstree.img's header declares 1 TiB.
    let name = b"checkpoint/pstree.img\0";
    let off = tar.windows(name.len()).position(|w| w == name).unwrap();
    let mut h = tar::Header::new_gnu();
    h.as_mut_bytes().copy_from_slice(&tar[off..off + 512]);
    h.set_size(1 << 40);
    h.set_cksum();
    let mut huge = tar.clone();
    huge[off..off + 512].copy_from_slice(h.as_bytes());
    for codec in CODECS {
        let data = match codec {
            Codec::Tar => huge.clone(),
            Codec::Gzip => {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&huge).unwrap();
                e.finish().unwrap()
            }
            Codec::Zstd => zstd::encode_all(&huge[..], 1).unwrap(),
        };
        let a = tmp.path().join(format!("huge.{}", codec.ext()));
        std::fs::write(&a, data).unwrap();
        let o = run(crit().arg("x").arg(&a).arg("ps"), None);
        assert_fails(&o, "member checkpoint/pstree.img (1099511627776 bytes");
    }
}
