//! Decoding an image whose entry carries a large payload holds about the
//! payload (mapped from the file) plus a bounded working set, not copies
//! of it: the base64 text is made and written out piece by piece. One
//! test in this binary, so the children's peak RSS is crit's alone.

mod kit;

#[test]
fn decode_of_a_large_payload_is_bounded() {
    const MB: usize = 1 << 20;
    let n = 64 * MB;
    let dir = tempfile::tempdir().unwrap();
    let img = kit::cli::pipes_data_image(dir.path(), n / MB);
    let out = dir.path().join("out.json");
    let st = kit::crit()
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
