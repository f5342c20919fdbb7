//! podman with crit as its `criu` (a symlink named criu first on PATH):
//! `podman container checkpoint --export` and `podman container restore
//! --import` of a busybox-static container that counts; the restored
//! container counts on; a container with a terminal (`-t`) comes back
//! on a new one, its controlling terminal. podman (and the runc it drives) come from
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

    /// The container's count; 0 if it cannot be read. The shell's
    /// `echo $i > /tmp/count` empties the file before writing it, so an
    /// empty read is tried again.
    fn count(&self, name: &str) -> u64 {
        for _ in 0..10 {
            let o = self.run(&["exec", name, "cat", "/tmp/count"]);
            if let Ok(n) = String::from_utf8_lossy(&o.stdout).trim().parse() {
                return n;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        0
    }
}

/// A root fs of busybox-static, imported as image `tag`.
fn image(p: &Podman, dir: &Path, tag: &str) -> String {
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for c in ["sh", "sleep", "cat", "echo", "ps"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(c)).unwrap();
    }
    // Each test's image its own content: two imports of the same tar are
    // one image, and `rmi -f` of one tag would take the other test's too.
    std::fs::write(root.join("etc/crit-test-image"), tag).unwrap();
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
    let name = format!("localhost/{tag}:latest");
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
    // One podman test at a time: they share podman's image store.
    let _g = kit::serial::lock();
    let p = Podman::new();
    let dir = tempfile::tempdir().unwrap();
    let img = image(&p, dir.path(), "crit-test-busybox");
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

/// A container with a terminal (`podman run -t`): checkpointed and
/// restored in place through crit, it comes back on a new pty (conmon
/// gets its master through runc's console socket) that is its
/// controlling terminal, and counts on.
#[test]
fn podman_terminal_container_comes_back_on_a_new_console() {
    require("busybox", "busybox-static");
    require("podman", "podman");
    // One podman test at a time: they share podman's image store.
    let _g = kit::serial::lock();
    let p = Podman::new();
    let dir = tempfile::tempdir().unwrap();
    let img = image(&p, dir.path(), "crit-test-busybox-tty");
    let name = format!("crit-test-tty-{}", std::process::id());
    let _ = p.run(&["rm", "-f", &name]);
    p.ok(&[
        "run",
        "-d",
        "-t",
        "--name",
        &name,
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=4096:4096",
        &img,
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.count(&name) < 5 {
        assert!(Instant::now() < deadline, "the container does not count");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = p.count(&name);
    p.ok(&["container", "checkpoint", &name]);
    p.ok(&["container", "restore", &name]);
    std::thread::sleep(Duration::from_millis(600));
    let after = p.count(&name);
    let pid = p.ok(&["inspect", "-f", "{{.State.Pid}}", &name]);
    let stdin = std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let tty_nr = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().nth(4))
        .unwrap_or("")
        .to_string();
    let _ = p.run(&["rm", "-f", &name]);
    let _ = p.run(&["rmi", "-f", &img]);
    assert_eq!(stdin, Path::new("/dev/pts/0"), "on the container's pts/0");
    assert_eq!(tty_nr, "34816", "pts/0 is its controlling terminal");
    assert!(
        before >= 5 && after > before,
        "the count went on: {before} then {after}"
    );
}
