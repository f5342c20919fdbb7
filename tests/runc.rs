//! runc with crit as its engine (`runc --criu crit`): a busybox-static
//! container with its own pid, mount, uts, ipc and network namespaces, a
//! tmpfs holding a file, a child and pipes as stdio (as managers give it)
//! is checkpointed and restored through crit's RPC service; the count goes
//! on, pid 1 and the child are back, and so are the host name and the
//! tmpfs file. The checkpoint builds on a `--pre-dump` (runc's
//! incremental checkpoint). runc and busybox-static come from Debian (`.ci/run`
//! installs them; the test installs them when missing).

mod kit;
use kit::host::require;

use kit::dump::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// runc with its state under the test's own directory.
fn runc(runc: &Path, state: &Path) -> Command {
    let mut c = Command::new(runc);
    c.arg("--root").arg(state);
    c
}

/// A bundle whose process counts into /tmp/count, with a child and a
/// file on a tmpfs at /run.
fn bundle(kit: &Kit, runc_bin: &Path) -> PathBuf {
    let busybox = require("busybox", "busybox-static");
    let b = kit.path("bundle");
    let root = b.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "run"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    for c in ["sh", "sleep", "cat", "echo", "ps", "hostname", "mount"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(c)).unwrap();
    }
    let st = Command::new(runc_bin)
        .arg("spec")
        .current_dir(&b)
        .status()
        .unwrap();
    assert!(st.success(), "runc spec");
    let path = b.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = serde_json::json!([
        "sh",
        "-c",
        "echo held-in-tmpfs > /run/marker; sleep 1000 & i=0; \
         while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done"
    ]);
    c["hostname"] = "crit-ctr".into();
    c["root"]["readonly"] = false.into();
    // No CAP_SYS_RESOURCE here: runc may not raise the open-files limit.
    c["process"]["rlimits"] =
        serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]);
    c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]}
    ));
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    b
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The container's count (read again when caught between the truncation
/// and the write of the file).
fn count(pid: i32) -> u64 {
    let path = PathBuf::from(format!("/proc/{pid}/root/tmp/count"));
    for _ in 0..50 {
        if let Ok(n) = read(&path).parse() {
            return n;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    0
}

/// `runc ... ACTION NAME` with stdio pipes held by the returned child
/// (runc -d returns once the container runs; its stdio stay ours).
fn detached(mut c: Command) -> Child {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn finish(mut child: Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{what} failed; engine log:\n{}", read(log));
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn init_pid(runc_bin: &Path, state: &Path, name: &str) -> i32 {
    let out = runc(runc_bin, state)
        .args(["state", name])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["pid"].as_i64().unwrap_or(0) as i32
}

#[test]
fn runc_checkpoints_and_restores_with_crit() {
    let runc_bin = require("runc", "runc");
    let kit = Kit::new();
    let b = bundle(&kit, &runc_bin);
    let state = kit.path("runc-state");
    let name = format!("crit-test-{}", std::process::id());
    let work = kit.path("work");
    let images = kit.path("ck");
    std::fs::create_dir_all(&work).unwrap();
    let mut run = runc(&runc_bin, &state);
    run.args(["run", "-d", &name]).current_dir(&b);
    let started = detached(run);
    finish(started, "runc run", &work.join("none"));
    let pid = init_pid(&runc_bin, &state, &name);
    assert!(pid > 0, "runc state gives the container's pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(pid) < 3 {
        assert!(Instant::now() < deadline, "the container does not count");
        std::thread::sleep(Duration::from_millis(50));
    }
    let crit = env!("CARGO_BIN_EXE_crit");
    let checkpoint = |extra: &[&str], images: &Path| {
        let o = runc(&runc_bin, &state)
            .args(["--criu", crit, "checkpoint"])
            .args(extra)
            .arg("--image-path")
            .arg(images)
            .arg("--work-path")
            .arg(&work)
            .arg(&name)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "runc checkpoint {extra:?}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            read(&work.join("dump.log"))
        );
    };
    // --leave-running: the images are written and the container goes on.
    let kept = kit.path("ck-kept");
    checkpoint(&["--leave-running"], &kept);
    assert!(kept.join("inventory.img").exists());
    let c0 = count(pid);
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        alive(pid) && count(pid) > c0,
        "the container runs on after --leave-running"
    );
    // runc's --pre-dump (PRE_DUMP, track_mem), then the checkpoint on
    // top of it (parent_img): the restore below takes pages from both.
    let pre = kit.path("ck-pre");
    checkpoint(&["--pre-dump"], &pre);
    assert!(pre.join("inventory.img").exists() && alive(pid));
    std::thread::sleep(Duration::from_millis(300));
    let before = count(pid);
    checkpoint(&["--parent-path", "../ck-pre"], &images);
    assert!(!alive(pid));
    assert_eq!(
        std::fs::read_link(images.join("parent")).unwrap(),
        Path::new("../ck-pre")
    );
    let mut rs = runc(&runc_bin, &state);
    rs.args(["--criu", crit, "restore", "-d", "--image-path"])
        .arg(&images)
        .arg("--work-path")
        .arg(&work)
        .arg(&name)
        .current_dir(&b);
    let restoring = detached(rs);
    finish(restoring, "runc restore", &work.join("restore.log"));
    let pid = init_pid(&runc_bin, &state, &name);
    let status = read(&PathBuf::from(format!("/proc/{pid}/status")));
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let marker = read(&root.join("run/marker"));
    let uts = std::fs::read_link(format!("/proc/{pid}/ns/uts")).unwrap();
    let host_uts = std::fs::read_link("/proc/self/ns/uts").unwrap();
    let hostname = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-u", "hostname"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    std::thread::sleep(Duration::from_millis(500));
    let after = count(pid);
    let children = read(&PathBuf::from(format!("/proc/{pid}/task/{pid}/children")));
    let _ = runc(&runc_bin, &state)
        .args(["delete", "-f", &name])
        .status();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")),
        "pid 1 inside"
    );
    assert_eq!(marker, "held-in-tmpfs");
    assert_ne!(uts, host_uts, "a uts namespace of its own");
    assert_eq!(hostname, "crit-ctr");
    assert!(after > before, "the count went on: {before} then {after}");
    assert!(!children.is_empty(), "its child is back");
}
