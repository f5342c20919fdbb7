//! A container in its own pid, mount, uts, ipc and network namespaces
//! (tests/programs/ctr.c on a root fs that holds only it), dumped and
//! restored by crit: it must come back as pid 1 with its child as pid 2,
//! its host name, the file on its tmpfs, its System V objects with their
//! contents, clocks that go on from where they were, and its count going
//! on. The container checks all of that itself.

mod dumpkit;

use dumpkit::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Builds ctr.c statically (the root fs has no libc) and lays out a root
/// fs whose /init it is.
fn container_root(kit: &Kit) -> (PathBuf, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/ctr.c");
    let bin = kit.path("ctr");
    let st = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(
        st.success(),
        "cc -static ctr.c failed (libc6-dev has libc.a)"
    );
    let root = kit.path("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(&bin, root.join("init")).unwrap();
    (bin, root)
}

fn wait_for(path: &Path, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.is_empty() {
                return s.trim().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {} in {secs} s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the container; returns its init's pid on the host.
fn launch(bin: &Path, root: &Path) -> i32 {
    let out = Command::new(bin)
        .arg("launch")
        .arg(root)
        .output()
        .expect("run ctr launch");
    assert!(out.status.success(), "ctr launch: {out:?}");
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    wait_for(&root.join("ready"), 10);
    wait_for(&root.join("tmp/count"), 10);
    pid
}

fn count(root: &Path) -> u64 {
    wait_for(&root.join("tmp/count"), 5).parse().unwrap_or(0)
}

/// Asks each task of the restored container to check itself.
fn checks(root: &Path, host: i32) -> (String, String) {
    for f in ["result.init", "result.child"] {
        let _ = std::fs::remove_file(root.join(f));
    }
    let children = std::fs::read_to_string(format!("/proc/{host}/task/{host}/children")).unwrap();
    let child: i32 = children.trim().parse().expect("one child");
    for p in [host, child] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
    }
    (
        wait_for(&root.join("result.init"), 5),
        wait_for(&root.join("result.child"), 5),
    )
}

#[test]
fn container_comes_back_with_its_namespaces() {
    let kit = Kit::new();
    let (bin, root) = container_root(&kit);
    let pid = launch(&bin, &root);
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &[]));
    let names = images(&dir);
    for want in [
        "utsns-",
        "ipcns-var-",
        "ipcns-shm-",
        "ipcns-sem-",
        "ipcns-msg-",
        "mountpoints-",
        "tmpfs-dev-",
        "netns-",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(want)),
            "no {want}* image in {names:?}"
        );
    }
    assert!(!alive(pid), "dump without -R ends the container");
    roundtrip_all(&kit, &dir);
    let before = count(&root);
    // The clocks must not show this pause.
    std::thread::sleep(Duration::from_secs(3));
    let pidfile = kit.path("pid");
    let out = kit.crit(&[
        "restore",
        "-D",
        dir.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "-d",
        "--pidfile",
        pidfile.to_str().unwrap(),
    ]);
    ok(&out);
    let host: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let nspid = std::fs::read_to_string(format!("/proc/{host}/status")).unwrap();
    let line = nspid.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(line.ends_with("\t1"), "pid 1 inside its namespace: {line}");
    let (init, child) = checks(&root, host);
    kill_tree(host);
    assert!(init.starts_with("OK"), "container init: {init}");
    assert_eq!(child, "OK pid=2");
    let after: u64 = init.trim_start_matches("OK count=").parse().unwrap();
    assert!(after > before, "the count went on: {before} then {after}");
}

#[test]
fn container_without_root_is_refused_and_nothing_runs() {
    let kit = Kit::new();
    let (bin, root) = container_root(&kit);
    let pid = launch(&bin, &root);
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &[]));
    reap_all();
    let out = kit.crit(&["restore", "-D", dir.to_str().unwrap(), "-d"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("--root"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        my_children().is_empty(),
        "nothing restored: {:?}",
        my_children()
    );
}
