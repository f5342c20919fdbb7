//! Incremental dumps: `crit restore` follows the `parent` links of an
//! images dir for the pages marked `in_parent`, through a chain of
//! dumps, as CRIU's pre-dump chains have them. The chain is made here
//! from one real dump of a self-checking tree (tests/programs/scale.c):
//! a middle dump keeps three quarters of every run of pages and gives
//! the first quarter to the full dump; the last keeps half and gives the
//! first half to the middle one (which holds part of it and passes the
//! rest on). Every restored task checks its memory. Without the link the
//! restore is refused in one line, and nothing is left running.

mod kit;

use std::path::Path;
use std::time::{Duration, Instant};

/// Copies the images of `src` to `dst`, giving the first `num/den` of
/// every present run of every task to the parent dump `parent`.
fn split(src: &Path, dst: &Path, num: u64, den: u64, parent: &Path) {
    kit::chain::derive(src, dst, |_, _, n| (n * num / den, kit::chain::PE_PARENT));
    std::os::unix::fs::symlink(parent, dst.join("parent")).unwrap();
}

#[test]
fn a_chain_of_dumps_restores_every_page() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let result = tmp.path().join("result");
    let a = |s: &'static str| std::ffi::OsStr::new(s);
    let (mut child, _) =
        kit::proc::start_ready("scale", &[a("3"), a("6"), a("16"), result.as_os_str()]);
    let pid = child.id() as i32;
    let pids = kit::proc::tree(pid);
    assert_eq!(pids.len(), 3);
    let full = tmp.path().join("full");
    let d = kit::crit()
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&full)
        .output()
        .unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let _ = child.wait();
    let t = Instant::now();
    while pids.iter().any(|&p| kit::proc::exists(p)) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mid = tmp.path().join("mid");
    let last = tmp.path().join("last");
    split(&full, &mid, 1, 4, &full);
    split(&full, &last, 1, 2, Path::new("../mid"));
    // What x mem sees: half of the pages in the parents.
    let s: serde_json::Value = serde_json::from_slice(
        &kit::crit()
            .args([
                "x",
                last.to_str().unwrap(),
                "mem",
                &pid.to_string(),
                "--json",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        s["in_parent"].as_u64().unwrap() > 0 && s["missing_parent"] == 0,
        "{s}"
    );

    // Without its parent the chain is broken: refused, nothing runs.
    std::fs::rename(&mid, tmp.path().join("elsewhere")).unwrap();
    let r = kit::crit()
        .args(["restore", "-d", "--shell-job", "-D"])
        .arg(&last)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr).to_string();
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.lines().count() == 1 && err.contains("parent dump"),
        "{err}"
    );
    assert!(
        pids.iter().all(|&p| !kit::proc::exists(p)),
        "a refused restore leaves nothing"
    );
    std::fs::rename(tmp.path().join("elsewhere"), &mid).unwrap();

    let r = kit::crit()
        .args(["restore", "-d", "--shell-job", "-D"])
        .arg(&last)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let lines = kit::proc::ask_tree(pid, &result, 3);
    assert_eq!(lines.lines().count(), 3, "answers: {lines}");
    assert!(
        lines.lines().all(|l| l.starts_with("OK")),
        "answers: {lines}"
    );
}
