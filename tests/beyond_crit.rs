//! Where crit 4.2 crashes or loses data and we must not: unknown enum
//! numbers, strings that are not UTF-8, fields from a newer CRIU, entry
//! counts of payload images, raw files, a closed stdout.

mod kit;
use crit::image::typed::ImageBuilder;
use kit::cli::*;

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn image(magic: &str, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut b = ImageBuilder::new(magic).unwrap();
    for e in entries {
        b.message(e);
    }
    b.bytes
}

/// A reg_file_entry with the given name bytes (field 6, a proto string).
fn reg_file(name: &[u8]) -> Vec<u8> {
    let mut e = vec![0x08, 0x01, 0x10, 0x02, 0x18, 0x00];
    let fown = [0x08, 0x00, 0x10, 0x00, 0x18, 0x00, 0x20, 0x00, 0x28, 0x00];
    e.push(0x2a);
    e.push(fown.len() as u8);
    e.extend_from_slice(&fown);
    e.push(0x32);
    varint(name.len() as u64, &mut e);
    e.extend_from_slice(name);
    e
}

fn round_trip(img: &[u8], pretty: bool) -> (String, Vec<u8>) {
    let mut args = vec!["decode"];
    if pretty {
        args.push("--pretty");
    }
    let dec = run(crit().args(&args), Some(img));
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    let enc = run(crit().arg("encode"), Some(&dec.stdout));
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
    (String::from_utf8(dec.stdout).unwrap(), enc.stdout)
}

#[test]
fn unknown_enum_value_survives_as_its_number() {
    // file_entry { type = 99, id = 7 }
    let img = image("FILES", &[vec![0x08, 99, 0x10, 7]]);
    for pretty in [false, true] {
        let (json, back) = round_trip(&img, pretty);
        assert!(json.contains("\"type\": 99"), "{json}");
        assert_eq!(back, img);
    }
}

#[test]
fn invalid_utf8_string_survives_byte_exact() {
    let img = image("REG_FILES", &[reg_file(b"/tmp/a\xff\xfe\xc3b")]);
    for pretty in [false, true] {
        let (json, back) = round_trip(&img, pretty);
        assert!(
            json.contains(r#""name": "/tmp/a\udcff\udcfe\udcc3b""#),
            "{json}"
        );
        assert_eq!(back, img);
    }
    // Valid non-ASCII is escaped the way Python escapes it.
    let (json, _) = round_trip(&image("REG_FILES", &[reg_file("/tmp/é".as_bytes())]), false);
    assert!(json.contains(r#""/tmp/\u00e9""#), "{json}");
}

#[test]
fn unknown_fields_survive_in_field_order() {
    // A newer CRIU might add field 40 (varint 5) and field 41 (bytes "hi").
    let mut e = reg_file(b"/x");
    e.extend_from_slice(&[0xc0, 0x02, 0x05, 0xca, 0x02, 0x02, b'h', b'i']);
    let img = image("REG_FILES", &[e]);
    for pretty in [false, true] {
        let (json, back) = round_trip(&img, pretty);
        assert!(json.contains(r#""__unknown_fields__""#), "{json}");
        assert!(
            json.contains(r#""c00205""#) && json.contains(r#""ca02026869""#),
            "{json}"
        );
        assert_eq!(back, img);
    }
}

#[test]
fn info_counts_payload_images_right() {
    // kitchen's sk-queues.img: crit 4.2 mistakes payload bytes for entries.
    let dir = testdata().join("criu-4.2/kitchen");
    for (file, magic, count) in [
        ("sk-queues.img", "SK_QUEUES", 1),
        ("pipes-data.img", "PIPES_DATA", 1),
        ("fifo-data.img", "FIFO_DATA", 1),
        ("ghost-file-1.img", "GHOST_FILE", 1),
        ("sk-queues.img", "SK_QUEUES", 0),
        ("pagemap-26773.img", "PAGEMAP", 0),
        ("files.img", "FILES", 0),
    ] {
        let want_count = if count > 0 {
            count
        } else {
            // Count the entries decode prints (pagemap: minus the head).
            let o = run(crit().arg("decode").arg("-i").arg(dir.join(file)), None);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let n = v["entries"].as_array().unwrap().len();
            if magic == "PAGEMAP" {
                n - 1
            } else {
                n
            }
        };
        let o = run(crit().arg("info").arg(dir.join(file)), None);
        assert!(o.status.success());
        let want = format!("{{\n    \"magic\": \"{magic}\",\n    \"count\": {want_count}\n}}\n");
        assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{file}");
    }
}

#[test]
fn raw_files_are_recognised_by_name() {
    let img = testdata().join("criu-4.2/counter/pages-1.img");
    let size = std::fs::metadata(&img).unwrap().len();
    let o = run(crit().arg("info").arg(&img), None);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["magic"], "RAW");
    assert_eq!(v["size"], size);
    assert!(v["holds"].as_str().unwrap().contains("memory pages"));
    let d = run(crit().arg("decode").arg("-i").arg(&img), None);
    assert_fails(&d, "pages-1.img: raw memory pages");
}

#[test]
fn closed_stdout_ends_quietly() {
    use std::process::Stdio;
    // A big enough document that the writer hits the closed pipe.
    let img = testdata().join("criu-4.2/kitchen/mm-26773.img");
    let mut child = crit()
        .arg("show")
        .arg(&img)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read a little, then close our end.
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 16];
    use std::io::Read;
    out.read_exact(&mut buf).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn output_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("files.img");
    let json = testdata().join("criu-4.2/kitchen/crit-4.2/files.img.json");
    let o = run(
        crit()
            .arg("encode")
            .arg("-i")
            .arg(&json)
            .arg("-o")
            .arg(&out),
        None,
    );
    assert!(o.status.success());
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
