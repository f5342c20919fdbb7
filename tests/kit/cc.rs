//! C test programs, compiled with the system's `cc`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// tests/programs/NAME.c (or tests/restore_programs/NAME.c with
/// `restore_programs`).
pub fn source(dir: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir)
        .join(format!("{name}.c"))
}

/// Compiles `src` to `out` with `flags`; a failure fails the test with
/// cc's own message.
pub fn compile(src: &Path, out: &Path, flags: &[&str]) {
    let o = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(src)
        .output()
        .expect("run cc");
    assert!(
        o.status.success(),
        "cc {}: {}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// When `src` or a header beside it (which it may include) last changed.
fn newest_input(src: &Path) -> Option<std::time::SystemTime> {
    let headers = std::fs::read_dir(src.parent()?).ok()?.filter_map(|e| {
        let p = e.ok()?.path();
        (p.extension()? == "h").then(|| std::fs::metadata(&p).ok()?.modified().ok())?
    });
    let own = std::fs::metadata(src).ok()?.modified().ok()?;
    Some(headers.fold(own, |a, b| a.max(b)))
}

/// Compiles tests/programs/NAME.c once per build (kept while newer than
/// its source and the headers beside it) and returns the executable's path.
pub fn program(name: &str) -> PathBuf {
    let _g = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let src = source("programs", name);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sys-programs");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(name);
    let fresh = match (std::fs::metadata(&exe), newest_input(&src)) {
        (Ok(e), Some(s)) => e.modified().unwrap() >= s,
        _ => false,
    };
    if !fresh {
        // Build to a unique name, then rename: other test processes may be
        // building the same program at the same time.
        let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
        compile(&src, &tmp, &["-O1", "-pthread"]);
        std::fs::rename(&tmp, &exe).unwrap();
    }
    exe
}
