//! podman with crit as its `criu` (a symlink named criu first on PATH):
//! `podman container checkpoint --export` and `podman container restore
//! --import` of a busybox-static container that counts; the restored
//! container counts on. podman (and the runc it drives) come from
//! Debian (`.ci/run` installs them; the test does when they are missing).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod kit;
use kit::host::require;

/// podman with a PATH whose `criu` is crit.
struct Podman {
    path: String,
    _bin: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        let bin = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_crit"), bin.path().join("criu")).unwrap();
        let path = format!(
            "{}:{}",
            bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Podman { path, _bin: bin }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .args(args)
            .env("PATH", &self.path)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn count(&self, name: &str) -> u64 {
        let o = self.run(&["exec", name, "cat", "/tmp/count"]);
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

/// A root fs of busybox-static, imported as an image.
fn image(p: &Podman, dir: &Path) -> String {
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for c in ["sh", "sleep", "cat", "echo", "ps"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(c)).unwrap();
    }
    let tar: PathBuf = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let name = "localhost/crit-test-busybox:latest".to_string();
    p.ok(&["import", tar.to_str().unwrap(), &name]);
    name
}

/// `crit x` reads the archive podman wrote with crit as its engine, in
/// place: the tree, what the checkpoint is, the shell's memory.
fn explore_export(archive: &Path, name: &str) {
    let x = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_crit"))
            .arg("x")
            .arg(archive)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "x {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    let ps: serde_json::Value = serde_json::from_slice(&x(&["ps", "--json"])).unwrap();
    let root = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ppid"] == 0)
        .unwrap();
    assert_eq!(root["comm"], "sh", "{ps}");
    let info: serde_json::Value = serde_json::from_slice(&x(&["info", "--json"])).unwrap();
    assert_eq!(info["container"], name, "{info}");
    assert_eq!(info["engine"], "podman", "{info}");
    assert_eq!(info["format"], "tar.zst", "{info}");
    // The shell holds its script (sh -c ...) in memory.
    let pid = root["pid"].to_string();
    let found: serde_json::Value =
        serde_json::from_slice(&x(&["mem", &pid, "--search", "/tmp/count", "--json"])).unwrap();
    assert!(found["count"].as_u64().unwrap() >= 1, "{found}");
}

#[test]
fn podman_exports_and_imports_a_checkpoint_through_crit() {
    require("busybox", "busybox-static");
    require("podman", "podman");
    let p = Podman::new();
    let dir = tempfile::tempdir().unwrap();
    let img = image(&p, dir.path());
    let name = format!("crit-test-{}", std::process::id());
    let again = format!("{name}-restored");
    for n in [&name, &again] {
        let _ = p.run(&["rm", "-f", n]);
    }
    // No CAP_SYS_RESOURCE on these machines: limits within the hard ones.
    p.ok(&[
        "run", "-d", "--name", &name, "--ulimit", "nofile=1024:1024", "--ulimit",
        "nproc=4096:4096", &img, "sh", "-c",
        "echo held > /tmp/marker; i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.count(&name) < 5 {
        assert!(Instant::now() < deadline, "the container does not count");
        std::thread::sleep(Duration::from_millis(100));
    }
    let archive = dir.path().join("ck.tar.zst");
    let before = p.count(&name);
    p.ok(&[
        "container",
        "checkpoint",
        "--export",
        archive.to_str().unwrap(),
        &name,
    ]);
    explore_export(&archive, &name);
    p.ok(&[
        "container",
        "restore",
        "--import",
        archive.to_str().unwrap(),
        "--name",
        &again,
    ]);
    std::thread::sleep(Duration::from_millis(600));
    let after = p.count(&again);
    let marker = p.ok(&["exec", &again, "cat", "/tmp/marker"]);
    for n in [&name, &again] {
        let _ = p.run(&["rm", "-f", n]);
    }
    assert_eq!(marker, "held");
    assert!(
        before >= 5 && after > before,
        "the count went on: {before} then {after}"
    );
}
