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
use kit::tty::converse;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// runc with its state under the test's own directory.
fn runc(runc: &Path, state: &Path) -> Command {
    let mut c = Command::new(runc);
    c.arg("--root").arg(state);
    c
}

/// The counting loop of the containers, into /tmp/count.
const COUNT: &str = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done";

/// A bundle whose process counts into /tmp/count, with a child and a
/// file on a tmpfs at /run.
fn bundle(kit: &Kit, runc_bin: &Path) -> PathBuf {
    let script = format!("echo held-in-tmpfs > /run/marker; sleep 1000 & {COUNT}");
    bundle_with(kit, runc_bin, "bundle", false, &script)
}

/// A bundle running `sh -c script`, with a terminal or pipes as stdio.
fn bundle_with(kit: &Kit, runc_bin: &Path, name: &str, terminal: bool, script: &str) -> PathBuf {
    let busybox = require("busybox", "busybox-static");
    let b = kit.path(name);
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
    c["process"]["terminal"] = terminal.into();
    c["process"]["args"] = serde_json::json!(["sh", "-c", script]);
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

/// `runc --criu crit checkpoint EXTRA --image-path IMAGES --work-path
/// WORK NAME`, which must succeed (the engine's log shown if not).
fn checkpoint(
    runc_bin: &Path,
    state: &Path,
    work: &Path,
    name: &str,
    extra: &[&str],
    images: &Path,
) {
    let o = runc(runc_bin, state)
        .args(["--criu", env!("CARGO_BIN_EXE_crit"), "checkpoint"])
        .args(extra)
        .arg("--image-path")
        .arg(images)
        .arg("--work-path")
        .arg(work)
        .arg(name)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "runc checkpoint {extra:?}: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        read(&work.join("dump.log"))
    );
}

/// `runc run -d NAME` of bundle `b`, once its container counts: the
/// container's pid.
fn run_counting(runc_bin: &Path, state: &Path, b: &Path, name: &str) -> i32 {
    let mut run = runc(runc_bin, state);
    run.args(["run", "-d", name]).current_dir(b);
    finish(
        detached(run),
        "runc run",
        Path::new("/nonexistent/no-engine-log"),
    );
    let pid = init_pid(runc_bin, state, name);
    assert!(pid > 0, "runc state gives the container's pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(pid) < 3 {
        assert!(Instant::now() < deadline, "the container does not count");
        std::thread::sleep(Duration::from_millis(50));
    }
    pid
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
    let pid = run_counting(&runc_bin, &state, &b, &name);
    let crit = env!("CARGO_BIN_EXE_crit");
    let checkpoint =
        |extra: &[&str], images: &Path| checkpoint(&runc_bin, &state, &work, &name, extra, images);
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

/// A container whose config.json gives its uts and ipc namespaces by
/// path (namespaces another process holds, as a pod's are): runc's
/// restore asks the engine to join them (RPC join_ns). The restored
/// container is in those very namespaces, with their host name, and
/// counts on.
#[test]
fn runc_restores_a_container_into_the_namespaces_it_joined() {
    let runc_bin = require("runc", "runc");
    let kit = Kit::new();
    // The holder: a process in a uts and an ipc namespace of its own,
    // named as a pod's would be.
    let mut holder = Command::new("unshare")
        .args([
            "--uts",
            "--ipc",
            "sh",
            "-c",
            "hostname pod-host && exec sleep 1000",
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let hpid = holder.id() as i32;
    let ns = |pid: i32, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns(hpid, "uts") == ns(std::process::id() as i32, "uts") || !sleeping(hpid) {
        assert!(
            Instant::now() < deadline,
            "the namespace holder did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let b = bundle(&kit, &runc_bin);
    let path = b.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // A joined uts namespace keeps the name its owner gave it.
    c.as_object_mut().unwrap().remove("hostname");
    for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
        let kind = n["type"].as_str().unwrap_or("").to_string();
        if kind == "uts" || kind == "ipc" {
            n["path"] = format!("/proc/{hpid}/ns/{kind}").into();
        }
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let state = kit.path("runc-state");
    let name = format!("crit-join-{}", std::process::id());
    let work = kit.path("work");
    let images = kit.path("ck");
    std::fs::create_dir_all(&work).unwrap();
    let pid = run_counting(&runc_bin, &state, &b, &name);
    assert_eq!(
        ns(pid, "uts"),
        ns(hpid, "uts"),
        "runc joined the uts namespace"
    );
    let crit = env!("CARGO_BIN_EXE_crit");
    checkpoint(&runc_bin, &state, &work, &name, &[], &images);
    assert!(!alive(pid));
    let before: u64 = read(&b.join("rootfs/tmp/count")).parse().unwrap_or(0);
    assert!(before >= 3, "the count at the checkpoint: {before}");
    let mut rs = runc(&runc_bin, &state);
    rs.args(["--criu", crit, "restore", "-d", "--image-path"])
        .arg(&images)
        .arg("--work-path")
        .arg(&work)
        .arg(&name)
        .current_dir(&b)
        // Neither the service nor the restore needs a temporary file or
        // directory (one would be left if either were killed).
        .env("TMPDIR", kit.path("no-such-dir"));
    finish(detached(rs), "runc restore", &work.join("restore.log"));
    let pid = init_pid(&runc_bin, &state, &name);
    let (uts, ipc) = (ns(pid, "uts"), ns(pid, "ipc"));
    let hostname = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-u", "hostname"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let c0 = count(pid);
    std::thread::sleep(Duration::from_millis(500));
    let after = count(pid);
    let _ = runc(&runc_bin, &state)
        .args(["delete", "-f", &name])
        .status();
    let (hold_uts, hold_ipc) = (ns(hpid, "uts"), ns(hpid, "ipc"));
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(pid > 0, "runc state gives the restored container's pid");
    assert_eq!(
        uts, hold_uts,
        "the restored container is in the joined uts namespace"
    );
    assert_eq!(
        ipc, hold_ipc,
        "the restored container is in the joined ipc namespace"
    );
    assert_eq!(hostname, "pod-host");
    assert!(
        c0 >= before && after > c0,
        "the count went on: {before} at the checkpoint, then {c0} and {after}"
    );
}

/// Whether `pid` is asleep (the holder's `sleep` has started).
fn sleeping(pid: i32) -> bool {
    read(&PathBuf::from(format!("/proc/{pid}/comm"))) == "sleep"
}

/// The console socket of `--console-socket`: each master runc (or the
/// engine, at restore) sends arrives on the returned channel.
fn console(path: &Path) -> std::sync::mpsc::Receiver<std::os::fd::OwnedFd> {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let mut buf = [0u8; 256];
            if let Ok((_, fds)) = crit::sys::scm::recv(&conn, &mut buf) {
                for fd in fds {
                    let _ = tx.send(fd);
                }
            }
        }
    });
    rx
}

/// A container with a terminal (`process.terminal`, `--console-socket`):
/// crit dumps its pty slave (runc sets orphan_pts_master) and, at
/// restore, makes a new pty in the container's devpts (pts/0 again, with
/// /dev/console bound to it) and hands the master over with the
/// orphan-pts-master notification, which runc sends to the console
/// socket. The container answers on the new terminal, keeps its window
/// size and its controlling terminal, and counts on.
#[test]
fn runc_terminal_container_gets_a_new_console() {
    use std::os::fd::AsFd;
    let runc_bin = require("runc", "runc");
    let kit = Kit::new();
    let script = format!("({COUNT}) & while read l; do echo \"got:$l\"; done");
    let b = bundle_with(&kit, &runc_bin, "tty-bundle", true, &script);
    let state = kit.path("runc-state");
    let name = format!("crit-tty-{}", std::process::id());
    let work = kit.path("work");
    std::fs::create_dir_all(&work).unwrap();
    let sock = kit.path("console.sock");
    let masters = console(&sock);
    let mut run = runc(&runc_bin, &state);
    run.args(["run", "-d", "--console-socket"])
        .arg(&sock)
        .arg(&name)
        .current_dir(&b);
    finish(detached(run), "runc run", &work.join("none"));
    let first = masters.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(converse(&first, "one").contains("got:one"));
    let size = crit::sys::tty::Winsize {
        row: 33,
        col: 99,
        ..Default::default()
    };
    crit::sys::tty::set_winsize(first.as_fd(), &size).unwrap();
    let pid = init_pid(&runc_bin, &state, &name);
    let crit = env!("CARGO_BIN_EXE_crit");
    let images = kit.path("ck");
    let before = count(pid);
    checkpoint(&runc_bin, &state, &work, &name, &[], &images);
    assert!(!alive(pid));
    // The slave's path names its mount in the container, as CRIU's do.
    let mounts: Vec<crit::image::pb::MntEntry> = std::fs::read_dir(&images)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mountpoints-"))
        .flat_map(|n| all::<crit::image::pb::MntEntry>(&images, &n, "MNTS"))
        .collect();
    let pts_mnt = files(&images)
        .into_iter()
        .filter_map(|f| f.reg)
        .find(|r| r.name == "/dev/pts/0")
        .and_then(|r| r.mnt_id);
    assert!(
        pts_mnt.is_some_and(|m| mounts
            .iter()
            .any(|e| e.mnt_id as i32 == m && e.mountpoint.ends_with("dev/pts"))),
        "/dev/pts/0 on the container's devpts: {pts_mnt:?}"
    );
    drop(first);
    let mut rs = runc(&runc_bin, &state);
    rs.args(["--criu", crit, "restore", "-d", "--console-socket"])
        .arg(&sock)
        .arg("--image-path")
        .arg(&images)
        .arg("--work-path")
        .arg(&work)
        .arg(&name)
        .current_dir(&b);
    finish(detached(rs), "runc restore", &work.join("restore.log"));
    let second = masters.recv_timeout(Duration::from_secs(10)).unwrap();
    let pid = init_pid(&runc_bin, &state, &name);
    let talk = converse(&second, "two");
    let got_size = crit::sys::tty::winsize(second.as_fd()).unwrap();
    let index = crit::sys::tty::pty_index(second.as_fd()).unwrap();
    let stat = read(&PathBuf::from(format!("/proc/{pid}/stat")));
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let console_mount = read(&PathBuf::from(format!("/proc/{pid}/mountinfo")))
        .lines()
        .any(|l| l.contains(" /0 /dev/console "));
    std::thread::sleep(Duration::from_millis(400));
    let after = count(pid);
    let _ = runc(&runc_bin, &state)
        .args(["delete", "-f", &name])
        .status();
    assert!(
        talk.contains("got:two"),
        "the new terminal answers: {talk:?}"
    );
    assert_eq!((got_size.row, got_size.col), (33, 99), "window size kept");
    assert_eq!(index, 0, "pts/0 again");
    // stat fields 7 and 8 (tty_nr, tpgid), from field 3 on here.
    assert_eq!(fields[4], "34816", "pts/0 is its controlling terminal");
    assert_eq!(fields[5], pid.to_string(), "its group is in the foreground");
    assert!(console_mount, "/dev/console is pts/0 again");
    assert!(after > before, "the count went on: {before} then {after}");
}

/// runc's post-copy migration with crit as its engine. `runc checkpoint
/// --lazy-pages --page-server` is a lazy DUMP over crit's RPC: crit leaves
/// the container's memory in it, frozen, tells runc it serves
/// (status-ready, which runc passes to its --status-fd) and serves the
/// pages. A copy of the images (no pages in it) is restored as another
/// container by `runc restore --lazy-pages`, its memory coming from the
/// frozen one through `crit lazy-pages --page-server`. The new container
/// counts on from where the old one stopped, with its child and its
/// tmpfs file, in its own cgroups (runc's cg_root), and the old one goes
/// once every page is over.
#[test]
fn runc_migrates_a_container_lazily_with_crit() {
    let runc_bin = require("runc", "runc");
    let kit = Kit::new();
    let b = bundle(&kit, &runc_bin);
    let state = kit.path("runc-state");
    let (from, to) = (
        format!("crit-lazy-a-{}", std::process::id()),
        format!("crit-lazy-b-{}", std::process::id()),
    );
    let (work, work2) = (kit.path("work"), kit.path("work2"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&work2).unwrap();
    let pid = run_counting(&runc_bin, &state, &b, &from);
    let crit = env!("CARGO_BIN_EXE_crit");
    let (images, copy) = (kit.path("ck"), kit.path("ck-copy"));
    let port = free_ports(1).to_string();
    let mut cp = runc(&runc_bin, &state);
    cp.args(["--criu", crit, "checkpoint", "--lazy-pages"])
        .args(["--page-server", &format!("127.0.0.1:{port}")])
        .arg("--image-path")
        .arg(&images)
        .arg("--work-path")
        .arg(&work)
        .stderr(Stdio::piped());
    let checkpointing = kit::proc::spawn_listening_then(cp, &[&from]);
    // Frozen now, its images written without its memory.
    let before = count(pid);
    std::fs::create_dir(&copy).unwrap();
    let mut bytes = 0;
    for e in std::fs::read_dir(&images).unwrap().flatten() {
        bytes += std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    assert!(bytes < 1 << 20, "{bytes} bytes of images");
    let mut lp = kit::crit();
    lp.args(["lazy-pages", "-D", copy.to_str().unwrap(), "--page-server"])
        .args(["--address", "127.0.0.1", "--port", &port])
        .stderr(Stdio::piped());
    let daemon = kit::proc::spawn_listening(lp);
    let mut rs = runc(&runc_bin, &state);
    rs.args([
        "--criu",
        crit,
        "restore",
        "-d",
        "--lazy-pages",
        "--image-path",
    ])
    .arg(&copy)
    .arg("--work-path")
    .arg(&work2)
    .arg(&to)
    .current_dir(&b);
    finish(detached(rs), "runc restore", &work2.join("restore.log"));
    let d = daemon.wait_with_output().unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let c = checkpointing.wait_with_output().unwrap();
    assert!(
        c.status.success(),
        "runc checkpoint: {}\n{}",
        String::from_utf8_lossy(&c.stderr),
        read(&work.join("dump.log"))
    );
    assert!(!alive(pid), "the old container went");
    let pid2 = init_pid(&runc_bin, &state, &to);
    std::thread::sleep(Duration::from_millis(500));
    let after = count(pid2);
    let marker = read(&PathBuf::from(format!("/proc/{pid2}/root/run/marker")));
    let children = read(&PathBuf::from(format!("/proc/{pid2}/task/{pid2}/children")));
    let cgroups = read(&PathBuf::from(format!("/proc/{pid2}/cgroup")));
    for n in [&to, &from] {
        let _ = runc(&runc_bin, &state).args(["delete", "-f", n]).status();
    }
    assert!(after > before, "the count went on: {before} then {after}");
    assert_eq!(marker, "held-in-tmpfs");
    assert!(!children.is_empty(), "its child is back");
    assert!(
        !cgroups.contains(&from),
        "in the old container's cgroups:\n{cgroups}"
    );
}
