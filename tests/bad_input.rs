//! Bad input ends with exit status 1 and one line on stderr naming the file
//! and the byte offset or JSON path, never a panic.

mod kit;
use kit::cli::*;

fn write(dir: &std::path::Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn decode_fails(data: &[u8], want: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "bad.img", data);
    for pretty in [false, true] {
        let mut c = crit();
        c.arg("decode").arg("-i").arg(&p);
        if pretty {
            c.arg("--pretty");
        }
        let o = run(&mut c, None);
        assert_fails(&o, want);
        assert!(String::from_utf8_lossy(&o.stderr).contains("bad.img"));
    }
    // The same through a pipe.
    let o = run(crit().arg("decode"), Some(data));
    assert_fails(&o, want);
    // info walks the same entries.
    let o = run(crit().arg("info").arg(&p), None);
    assert_eq!(o.status.code(), Some(1));
}

fn files_img() -> Vec<u8> {
    std::fs::read(testdata().join("criu-4.2/kitchen/files.img")).unwrap()
}

#[test]
fn truncated_files() {
    let img = files_img();
    // Inside the magic, inside a length prefix, inside an entry.
    decode_fails(&img[..6], "truncated magic");
    decode_fails(
        &img[..10],
        "at byte 8: truncated length prefix: 2 of 4 bytes",
    );
    decode_fails(
        &img[..40],
        "at byte 8: entry claims 84 bytes but only 28 are left",
    );
    let o = run(crit().arg("decode"), Some(&img[..40]));
    assert_fails(&o, "<stdin>: at byte 8: entry claims");
}

/// Each image type has one first magic, as CRIU's loader expects: another
/// one is refused (writing the image back would change it).
#[test]
fn a_first_magic_that_does_not_fit_the_image_is_refused() {
    let img = files_img();
    let mut service = img.clone();
    service[..4].copy_from_slice(&0x5510_5940u32.to_le_bytes());
    decode_fails(
        &service,
        "at byte 0: FILES starts with the service magic; FILES images start with the common magic",
    );
    decode_fails(&img[4..], "FILES starts with its own magic");
    let inv = std::fs::read(testdata().join("criu-4.2/counter/inventory.img")).unwrap();
    let mut common = 0x5456_4319u32.to_le_bytes().to_vec();
    common.extend_from_slice(&inv);
    decode_fails(&common, "INVENTORY images start with their own magic");
}

#[test]
fn empty_file() {
    decode_fails(b"", "empty file");
}

#[test]
fn unknown_magic() {
    decode_fails(
        b"\x01\x02\x03\x04\x05\x06\x07\x08",
        "unknown magic 0x4030201",
    );
    decode_fails(
        &[0x19, 0x43, 0x56, 0x54, 9, 9, 9, 9],
        "at byte 4: unknown magic 0x9090909",
    );
}

#[test]
fn absurd_length_prefix() {
    let mut img = files_img()[..8].to_vec();
    img.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
    img.extend_from_slice(b"abc");
    decode_fails(
        &img,
        "at byte 8: entry claims 2147483647 bytes but only 3 are left",
    );
    let mut neg = files_img()[..8].to_vec();
    neg.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    decode_fails(&neg, "negative length");
}

#[test]
fn garbage_entries() {
    let mut img = files_img()[..8].to_vec();
    let junk: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    img.extend_from_slice(&(junk.len() as u32).to_le_bytes());
    img.extend_from_slice(&junk);
    decode_fails(&img, "at byte 12: invalid field number 0");
}

#[test]
fn magic_that_does_not_match_the_entries() {
    // core entries under the FILES magic.
    let core = std::fs::read(testdata().join("criu-4.2/counter/core-26659.img")).unwrap();
    let mut img = files_img()[..8].to_vec();
    img.extend_from_slice(&core[8..]);
    decode_fails(&img, "at byte");
}

fn encode_fails(json: &str, want: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "bad.json", json.as_bytes());
    let out = tmp.path().join("out.img");
    let o = run(
        crit().arg("encode").arg("-i").arg(&p).arg("-o").arg(&out),
        None,
    );
    assert_fails(&o, want);
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.json"));
    // Nothing is left behind on failure.
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn malformed_json() {
    encode_fails("", "input ends");
    encode_fails("{\"magic\": \"FILES\", \"entries\": [", "at byte 31");
    encode_fails(
        "{\"magic\": \"FILES\" \"entries\": []}",
        "expected ',' or '}'",
    );
    encode_fails("[1, 2]", "expected an object");
    encode_fails(
        "{\"magic\": \"FILES\", \"entries\": []} x",
        "after the end of the document",
    );
    encode_fails(
        "{\"magic\": \"NOPE\", \"entries\": []}",
        "unknown magic \"NOPE\"",
    );
    encode_fails("{\"entries\": []}", "no \"magic\"");
    // A key twice would write two image headers back to back.
    encode_fails(
        r#"{"magic": "PSTREE", "entries": [], "entries": []}"#,
        "duplicate key \"entries\"",
    );
    encode_fails(
        r#"{"magic": "PSTREE", "magic": "CORE", "entries": []}"#,
        "duplicate key \"magic\"",
    );
    encode_fails(
        r#"{"entries": [], "entries": [], "magic": "PSTREE"}"#,
        "duplicate key \"entries\"",
    );
    let deep = format!("{{\"magic\": \"PIPES_DATA\", \"entries\": [{{\"pipe_id\": 1, \"bytes\": 0, \"extra\": {}}}]}}", "[".repeat(100_000));
    encode_fails(&deep, "nesting deeper");
}

#[test]
fn json_values_of_the_wrong_type() {
    let f = |entry: &str| format!("{{\"magic\": \"FILES\", \"entries\": [{entry}]}}");
    encode_fails(
        &f(r#"{"type": "REG", "id": "x"}"#),
        "($.entries[0].id): not an integer",
    );
    encode_fails(
        &f(r#"{"type": "REG", "id": true}"#),
        "$.entries[0].id): expected an integer, found a boolean",
    );
    encode_fails(&f(r#"{"type": "REG", "id": -1}"#), "out of range");
    encode_fails(&f(r#"{"type": "REG", "id": 4294967296}"#), "out of range");
    encode_fails(
        &f(r#"{"type": "BOGUS", "id": 1}"#),
        "\"BOGUS\" is not a value of fd_types",
    );
    encode_fails(
        &f(r#"{"type": "REG", "id": 1, "nosuch": 1}"#),
        "file_entry has no field \"nosuch\"",
    );
    encode_fails(&f(r#"{"type": "REG"}"#), "lacks required field \"id\"");
    encode_fails(
        &f(r#"{"type": "REG", "id": 1, "reg": 5}"#),
        "$.entries[0].reg): expected an object",
    );
    encode_fails(&f(r#"{"type": "REG", "id": 1, "id": 2}"#), "given twice");
    encode_fails(
        r#"{"magic": "PIPES_DATA", "entries": [{"pipe_id": 1, "bytes": 4, "extra": "YWJj\n"}]}"#,
        "\"extra\" holds 3 bytes but bytes says 4",
    );
}
