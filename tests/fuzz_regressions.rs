//! Inputs found by fuzzing (fuzz/, see fuzz/README.md), kept in
//! testdata/fuzz/: `*.json` files are JSON documents for encode, every
//! other file (but README.md) is a binary image for decode.
//!
//! Each goes through the same checks as the fuzz targets
//! (fuzz/fuzz_targets/common.rs):
//! - image: decode (compact, pretty, payload-free) must not panic; if it
//!   succeeds, encode must accept its JSON and the encoded image must
//!   decode to the same JSON;
//! - JSON: encode must not panic; if it succeeds, the image must decode and
//!   encode back to the same bytes.
//!
//! Every file is checked even when one fails; the failures are listed
//! together at the end.

#[path = "../fuzz/fuzz_targets/common.rs"]
mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn inputs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    v.sort();
    v
}

#[test]
fn fuzz_inputs_decode_and_encode_cleanly() {
    let files = inputs();
    assert!(!files.is_empty(), "testdata/fuzz is empty");
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let is_json = path.extension().is_some_and(|e| e == "json");
        let r = catch_unwind(AssertUnwindSafe(|| {
            if is_json {
                common::check_json(&data)
            } else {
                common::check_image(&data)
            }
        }));
        if let Err(p) = r {
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            let first = msg.lines().next().unwrap_or("");
            failed.push(format!(
                "{}: {first}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} fuzz inputs fail:\n  {}",
        failed.len(),
        files.len(),
        failed.join("\n  ")
    );
}
