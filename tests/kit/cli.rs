//! The toolkit's tests: run the binary on the fixtures and on made-up
//! inputs, and check what it prints.

pub use super::{crit, testdata};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Every fixture directory written by CRIU 4.2.
pub fn fixture_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(testdata().join("criu-4.2"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    assert!(v.len() >= 8, "fixtures missing");
    v
}

/// Image files of a fixture that have crit 4.2 JSON next to them.
pub fn fixture_images(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            (n.ends_with(".img") || n == "stats-dump") && !n.starts_with("pages-")
        })
        .collect();
    v.sort();
    v
}

pub fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(data) = stdin {
        use std::io::Write;
        let mut si = child.stdin.take().unwrap();
        let data = data.to_vec();
        // Feed stdin from a thread so a full stdout pipe cannot deadlock.
        std::thread::spawn(move || {
            let _ = si.write_all(&data);
        });
    }
    child.wait_with_output().unwrap()
}

/// Asserts a failed run: exit status 1, one line on stderr containing `want`.
pub fn assert_fails(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "want one line, got: {err}");
    assert!(err.contains(want), "want {want:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A pipes-data image in `dir` whose one entry carries `mb` MiB of
/// payload, written piece by piece (a child of the test starts as a copy
/// of it, and memory tests count the child's peak).
pub fn pipes_data_image(dir: &Path, mb: usize) -> PathBuf {
    use crit::image::{pb, typed::ImageBuilder};
    use std::io::Write;
    let img = dir.join("pipes-data.img");
    let mut b = ImageBuilder::new("PIPES_DATA").unwrap();
    b.entry(&pb::PipeDataEntry {
        pipe_id: 7,
        bytes: (mb << 20) as u32,
        size: None,
    });
    let mut f = std::fs::File::create(&img).unwrap();
    f.write_all(&b.bytes).unwrap();
    let piece: Vec<u8> = (0..1 << 20).map(|i| (i * 131 % 251) as u8).collect();
    for _ in 0..mb {
        f.write_all(&piece).unwrap();
    }
    img
}

/// `crit x TARGET ARGS…`, which must succeed with nothing on stderr.
pub fn x(target: &Path, args: &[&str]) -> Vec<u8> {
    let o = run(crit().arg("x").arg(target).args(args), None);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "x {} {args:?}: {}",
        target.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}
