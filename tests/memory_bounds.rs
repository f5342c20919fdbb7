//! Decoding an image whose entry carries a large payload holds about the
//! payload (mapped from the file) plus a bounded working set, not copies
//! of it: the base64 text is made and written out piece by piece. One
//! test in this binary, so the children's peak RSS is crit's alone.

use crit::image::pb;
use crit::image::typed::ImageBuilder;
use std::io::Write;

#[test]
fn decode_of_a_large_payload_is_bounded() {
    const MB: usize = 1 << 20;
    let n = 64 * MB;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("pipes-data.img");
    // Written piece by piece: the child starts as a copy of this
    // process, and its peak counts this one's.
    let mut b = ImageBuilder::new("PIPES_DATA").unwrap();
    b.entry(&pb::PipeDataEntry {
        pipe_id: 1,
        bytes: n as u32,
        size: None,
    });
    let mut f = std::fs::File::create(&img).unwrap();
    f.write_all(&b.bytes).unwrap();
    let piece: Vec<u8> = (0..MB).map(|i| (i * 131 % 251) as u8).collect();
    for _ in 0..n / MB {
        f.write_all(&piece).unwrap();
    }
    drop(f);
    let out = dir.path().join("out.json");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_crit"))
        .args([
            "decode",
            "-i",
            img.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let peak = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .unwrap()
        .max_rss() as usize
        * 1024;
    // The JSON is 4/3 of the payload: holding it, or the base64 text, once
    // more would pass this bound.
    assert!(
        peak < n + 48 * MB,
        "crit decode peaked at {} MiB for a {} MiB payload",
        peak / MB,
        n / MB
    );
    assert!(std::fs::metadata(&out).unwrap().len() as usize > n * 4 / 3);
}
