//! A container in its own pid, mount, uts, ipc and network namespaces
//! (tests/programs/ctr.c on a root fs that holds only it), dumped and
//! restored by crit: it must come back as pid 1 with its child as pid 2,
//! its host name, the file on its tmpfs, its System V objects with their
//! contents, the files of its own /proc it holds (/proc/1/status in pid 1,
//! /proc/2/status and /proc/1/stat in its child: opened again by task 1
//! right after its fork, docs/restore.md), clocks that go on from where
//! they were, and its count going on. The container checks all of that itself.

mod kit;

use kit::dump::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Builds ctr.c statically (the root fs has no libc) and lays out a root
/// fs whose /init it is.
fn container_root(kit: &Kit) -> (PathBuf, PathBuf) {
    let bin = kit.path("ctr");
    // libc6-dev has the libc.a this needs.
    kit::cc::compile(
        &kit::cc::source("programs", "ctr"),
        &bin,
        &["-static", "-O1"],
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
    launch_with(bin, root, None, false)
}

/// The same, with host directory `ext` bound on the container's /ext
/// (`sub`: and a tmpfs on /ext/sub).
fn launch_with(bin: &Path, root: &Path, ext: Option<&Path>, sub: bool) -> i32 {
    let mut cmd = Command::new(bin);
    cmd.arg("launch").arg(root);
    if let Some(e) = ext {
        cmd.env("CTR_EXT", e);
    }
    if sub {
        cmd.env("CTR_EXT_SUB", "1");
    }
    let out = cmd.output().expect("run ctr launch");
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
    // No temporary directory of the host's is needed (a restore killed
    // halfway would leave it): /kern, a part of a sysfs, is mounted
    // whole on the tree's /proc first, in the tree's mount namespace.
    let out = Command::new(env!("CARGO_BIN_EXE_crit"))
        .args(["restore", "-D"])
        .arg(&dir)
        .arg("--root")
        .arg(&root)
        .arg("-d")
        .arg("--pidfile")
        .arg(&pidfile)
        .env("TMPDIR", kit.path("no-such-dir"))
        .output()
        .unwrap();
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

/// Dumps a fresh container with `dump_extra`, restores it with
/// `restore_extra`; returns the restored init's host pid and the root fs.
fn dump_restore(
    kit: &Kit,
    dump_extra: &dyn Fn(i32) -> Vec<String>,
    restore_extra: &[String],
) -> (i32, PathBuf) {
    let (bin, root) = container_root(kit);
    let pid = launch(&bin, &root);
    let dir = kit.path("img");
    let extra = dump_extra(pid);
    let extra: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
    dump_gone(kit, pid, &dir, &extra);
    (restore_detached(kit, &dir, &root, restore_extra), root)
}

/// `crit restore -d` of `dir` in `root` with `extra`, which must succeed:
/// the restored init's host pid.
fn restore_detached(kit: &Kit, dir: &Path, root: &Path, extra: &[String]) -> i32 {
    let pidfile = kit.path("pid");
    let mut args: Vec<String> = [
        "restore",
        "-d",
        "-D",
        dir.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--pidfile",
        pidfile.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ok(&kit.crit(&args));
    std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn net_ns(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap()
}

/// `--empty-ns net` (runc's default): the restored container gets a new,
/// empty network namespace.
#[test]
fn empty_network_namespace() {
    let kit = Kit::new();
    let (host, root) = dump_restore(&kit, &|_| vec!["--empty-ns".into(), "net".into()], &[]);
    let mine = net_ns(std::process::id() as i32);
    let theirs = net_ns(host);
    let (init, _) = checks(&root, host);
    kill_tree(host);
    assert_ne!(theirs, mine, "a network namespace of its own");
    assert!(init.starts_with("OK"), "{init}");
}

/// `--external net[INO]:KEY` at dump, `--inherit-fd fd[N]:KEY` at
/// restore (podman's way): the container joins the namespace handed in.
#[test]
fn external_network_namespace_is_handed_in() {
    let kit = Kit::new();
    let mut holder = Command::new("unshare")
        .args(["--net", "sleep", "60"])
        .spawn()
        .expect("unshare --net");
    std::thread::sleep(Duration::from_millis(200));
    let ns_path = format!("/proc/{}/ns/net", holder.id());
    let want = std::fs::read_link(&ns_path).unwrap();
    // Not close-on-exec: crit restore inherits it.
    let fd = nix::fcntl::open(
        ns_path.as_str(),
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let n = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let (host, root) = dump_restore(
        &kit,
        &|pid| {
            let ino = std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap();
            vec!["--external".into(), format!("net[{ino}]:ctr-net")]
        },
        &["--inherit-fd".into(), format!("fd[{n}]:ctr-net")],
    );
    let theirs = net_ns(host);
    let (init, _) = checks(&root, host);
    kill_tree(host);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(theirs, want, "the namespace handed in");
    assert!(init.starts_with("OK"), "{init}");
}

/// `--join-ns` (CRIU's option; runc sends it as join_ns): the container's
/// uts and ipc namespaces outlive it, held by another process (as a
/// pod's are), and the restore puts it back into them, given by pid and
/// by file. crit writes nothing into them: the container finds its host
/// name and its System V objects with their contents as they stayed
/// there, which it checks itself.
#[test]
fn the_container_joins_the_uts_and_ipc_namespaces_given() {
    let kit = Kit::new();
    let (bin, root) = container_root(&kit);
    let pid = launch(&bin, &root);
    let mut holder = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-u", "-i", "sleep", "60"])
        .spawn()
        .expect("nsenter");
    let hpid = holder.id() as i32;
    let ns = |pid: i32, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns(hpid, "ipc") != ns(pid, "ipc") {
        assert!(
            Instant::now() < deadline,
            "the namespace holder did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (want_uts, want_ipc) = (ns(hpid, "uts"), ns(hpid, "ipc"));
    let dir = kit.path("img");
    dump_gone(&kit, pid, &dir, &[]);
    let host = restore_detached(
        &kit,
        &dir,
        &root,
        &[
            "--join-ns".into(),
            format!("uts:{hpid}"),
            "--join-ns".into(),
            format!("ipc:/proc/{hpid}/ns/ipc"),
        ],
    );
    let (uts, ipc) = (ns(host, "uts"), ns(host, "ipc"));
    let (init, child) = checks(&root, host);
    kill_tree(host);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(uts, want_uts, "in the uts namespace given");
    assert_eq!(ipc, want_ipc, "in the ipc namespace given");
    assert!(init.starts_with("OK"), "container init: {init}");
    assert_eq!(child, "OK pid=2");
}

/// A restore into joined namespaces that fails leaves them as they were
/// (their host name, loopback up), and an ipc namespace that lacks the
/// tree's System V objects is refused, naming the first one missing.
#[test]
fn a_failed_restore_leaves_the_joined_namespaces_as_they_were() {
    let kit = Kit::new();
    let (root, dir) = dumped(&kit);
    let mut holder = Command::new("unshare")
        .args([
            "--uts",
            "--ipc",
            "--net",
            "sh",
            "-c",
            "hostname pod-host && ip link set lo up && exec sleep 60",
        ])
        .spawn()
        .expect("unshare");
    let hpid = holder.id() as i32;
    let in_holder = |args: &[&str]| {
        let o = Command::new("nsenter")
            .args(["-t", &hpid.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let comm = || std::fs::read_to_string(format!("/proc/{hpid}/comm")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while comm().trim() != "sleep" {
        assert!(
            Instant::now() < deadline,
            "the namespace holder did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let lo = || in_holder(&["-n", "ip", "-o", "link", "show", "lo"]);
    let before = (in_holder(&["-u", "hostname"]), lo());
    assert!(before.1.contains(",UP"), "{}", before.1);
    let restore = |joins: &[String]| {
        let mut a: Vec<String> = ["restore", "-d", "-D"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(dir.display().to_string());
        a.push("--root".into());
        a.push(root.display().to_string());
        for j in joins {
            a.push("--join-ns".into());
            a.push(j.clone());
        }
        let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        kit.crit(&a)
    };
    // The holder's ipc namespace has none of the container's objects.
    let o = restore(&[format!("ipc:{hpid}")]);
    let missing = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{missing}");
    // Then a private segment with the container's id (0) and key, but of
    // one page: not the tree's.
    let made = in_holder(&[
        "-i",
        "python3",
        "-c",
        "import ctypes; print(ctypes.CDLL(None).shmget(0, 4096, 0o1600))",
    ]);
    let o = restore(&[format!("ipc:{hpid}")]);
    let smaller = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{smaller}");
    // Late: the pages are missing, after every namespace is entered.
    fail_after_the_files(&dir);
    let o = restore(&[format!("uts:{hpid}"), format!("net:{hpid}")]);
    let late = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{late}");
    let after = (in_holder(&["-u", "hostname"]), lo());
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(missing.trim().lines().count(), 1, "one line: {missing}");
    assert!(missing.contains("has no System V"), "{missing}");
    assert_eq!(made, "0", "the holder's segment");
    assert!(
        smaller.contains("has no System V shm 0") && smaller.contains("65636 bytes"),
        "{smaller}"
    );
    assert!(late.contains("pages-"), "it failed on the pages: {late}");
    assert_eq!(after, before, "the joined namespaces changed");
    assert!(my_children().is_empty(), "{:?}", my_children());
}

/// A namespace to join that is not one, or not of its kind, fails the
/// restore before anything is made: one line naming the file, exit 1.
#[test]
fn a_wrong_namespace_to_join_is_refused_and_nothing_runs() {
    let kit = Kit::new();
    let (root, dir) = dumped(&kit);
    for (arg, want) in [
        ("uts:/proc/self/status", "not a namespace file"),
        ("ipc:/proc/self/ns/uts", "another kind of namespace"),
        ("uts:/nonexistent/ns", "/nonexistent/ns"),
        ("pid:1", "cannot be joined"),
    ] {
        let out = kit.crit(&[
            "restore",
            "-D",
            dir.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "-d",
            "--join-ns",
            arg,
        ]);
        refused_and_nothing_runs(&out, want);
    }
}

#[test]
fn container_without_root_is_refused_and_nothing_runs() {
    let kit = Kit::new();
    let (_, dir) = dumped(&kit);
    let out = kit.crit(&["restore", "-D", dir.to_str().unwrap(), "-d"]);
    refused_and_nothing_runs(&out, "--root");
}

/// `out` failed in one line that names `want`, and no task was left.
fn refused_and_nothing_runs(out: &std::process::Output, want: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(want), "{want}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        my_children().is_empty(),
        "nothing restored: {:?}",
        my_children()
    );
}

/// A restore that fails after it bound a socket on an external mount (a
/// host directory bound into the container) leaves no socket file in
/// that directory: bound files are removed while the container's mount
/// namespace, which holds the bind, still exists.
#[test]
fn a_failed_restore_removes_its_socket_from_an_external_mount() {
    let kit = Kit::new();
    let (root, host, dir) = dumped_with_ext(&kit, false);
    let sock = host.join("ctr.sock");
    assert!(sock.exists(), "the container listened on /ext/ctr.sock");
    std::fs::remove_file(&sock).unwrap();
    fail_after_the_files(&dir);
    let err = restore_failing_with_ext(&kit, &dir, &root, &host);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // The short pages image is named by the directory given, not by the
    // descriptor the restore reached it through.
    assert!(
        err.contains(&format!("{}/pages-", dir.display())) && !err.contains("/proc/self/fd"),
        "{err}"
    );
    assert!(!sock.exists(), "the restore's socket file is left: {err}");
    assert!(my_children().is_empty(), "{:?}", my_children());
}

/// The same for a mountpoint the restore had to make inside a host
/// directory bound into the container (an external mount): it is the
/// host's, and removed, while what was there stays.
#[test]
fn a_failed_restore_removes_a_mountpoint_it_made_in_an_external_bind() {
    let kit = Kit::new();
    let (root, _, dir) = dumped_with_ext(&kit, true);
    fail_after_the_files(&dir);
    // Another host directory, without sub/: the restore makes it.
    let other = kit.path("otherdir");
    std::fs::create_dir_all(other.join("mine")).unwrap();
    let err = restore_failing_with_ext(&kit, &dir, &root, &other);
    assert!(err.contains("pages-"), "it failed on the pages: {err}");
    let mut names: Vec<String> = std::fs::read_dir(&other)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["mine"], "the host directory changed: {err}");
    assert!(my_children().is_empty(), "{:?}", my_children());
}

/// Empties the tasks' pages images (System V memory's stay, as it is
/// filled before anything is bound): a restore of `dir` then fails once
/// the namespaces, mounts, files and sockets are made.
fn fail_after_the_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_prefix("pagemap-") else {
            continue;
        };
        if n.starts_with("shmem") {
            continue;
        }
        let heads: Vec<crit::image::pb::PagemapHead> =
            crit::image::typed::read_all(&dir.join(&name), "PAGEMAP").unwrap();
        let head = &heads[0];
        let pages = dir.join(format!("pages-{}.img", head.pages_id));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&pages)
            .unwrap()
            .set_len(0)
            .unwrap();
    }
}

/// A failed restore into a root file system that lacks the tree's
/// mountpoints leaves it as it was: the directories (and the files a
/// bind needed) crit made there are removed, and what was there stays.
#[test]
fn a_failed_restore_removes_the_mountpoints_it_made() {
    let kit = Kit::new();
    let (root, dir) = dumped(&kit);
    fail_after_the_files(&dir);
    let fresh = fresh_root(&kit, &root);
    let before = listing(&fresh);
    let mounts = listing(&root);
    assert!(
        mounts.iter().any(|p| !before.contains(p)),
        "the dumped root has mountpoints the fresh one lacks: {mounts:?}"
    );
    let out = kit.crit(&[
        "restore",
        "-D",
        dir.to_str().unwrap(),
        "--root",
        fresh.to_str().unwrap(),
        "-d",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("pages-"), "it failed on the pages: {err}");
    assert_eq!(
        listing(&fresh),
        before,
        "the root file system changed: {err}"
    );
    assert!(my_children().is_empty(), "{:?}", my_children());
}

/// A fresh root file system for the container of `root`: the program,
/// /proc (crit lends the tree its own proc there until the root task
/// mounts the tree's: a root file system must have it), and a directory
/// of the user's own that must stay; none of the container's other
/// mountpoints.
fn fresh_root(kit: &Kit, root: &Path) -> PathBuf {
    let fresh = kit.path("fresh-root");
    std::fs::create_dir_all(fresh.join("keep")).unwrap();
    std::fs::create_dir_all(fresh.join("proc")).unwrap();
    std::fs::copy(root.join("init"), fresh.join("init")).unwrap();
    fresh
}

/// Every path below `d`, relative to it, sorted.
fn listing(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(d)
        .into_iter()
        .map(|p| p.strip_prefix(d).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

/// `crit restore` killed with SIGKILL (by its action script) once the
/// namespaces and mounts are made, and once the container is made, which
/// it cannot catch: the container dies with it, and its janitor removes
/// the socket file it bound in a host directory bound into the container
/// and the mountpoints it made there and in the root file system, once
/// the container's mount namespace, where they are covered, is gone.
#[test]
fn a_restore_killed_with_sigkill_leaves_nothing_behind() {
    use std::os::unix::process::ExitStatusExt;
    let kit = Kit::new();
    let (root, host, dir) = dumped_with_ext(&kit, true);
    assert!(
        host.join("ctr.sock").exists(),
        "the container listens there"
    );
    let fresh = fresh_root(&kit, &root);
    let other = kit.path("otherdir");
    std::fs::create_dir_all(other.join("mine")).unwrap();
    let before = (listing(&fresh), listing(&other));
    for action in ["setup-namespaces", "post-restore"] {
        let script = sigkill_script(&kit, action);
        let out = restore_with_ext(
            &kit,
            &dir,
            &fresh,
            &other,
            &["--action-script", script.to_str().unwrap()],
        );
        assert_eq!(out.status.signal(), Some(9), "{action}: {}", stderr(&out));
        // The janitor works once crit and the tasks are gone.
        let now = || (listing(&fresh), listing(&other));
        eventually(|| now() == before);
        let running: Vec<i32> = my_children().into_iter().filter(|&p| alive(p)).collect();
        let after = now();
        kit::proc::reap_all();
        assert_eq!(
            after, before,
            "{action}: what the killed restore made is left"
        );
        assert!(running.is_empty(), "{action}: still running: {running:?}");
    }
    // Killed again, and restored again at once: the container comes back
    // and keeps its mounts (the new restore waits for the janitor, which
    // holds the restore's locks, so that it does not mount on mountpoints
    // the janitor is about to remove).
    let script = sigkill_script(&kit, "post-restore");
    let killed = restore_with_ext(
        &kit,
        &dir,
        &fresh,
        &other,
        &["--action-script", script.to_str().unwrap()],
    );
    assert_eq!(killed.status.signal(), Some(9), "{}", stderr(&killed));
    let pidfile = kit.path("again.pid");
    let again = restore_with_ext(
        &kit,
        &dir,
        &fresh,
        &other,
        &["--pidfile", pidfile.to_str().unwrap()],
    );
    ok(&again);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mounted = || {
        let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        let mut m: Vec<String> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|p| ["/ext", "/ext/sub", "/kern", "/run"].contains(&p.as_str()))
            .collect();
        m.sort();
        m
    };
    let at_once = mounted();
    // Long enough for a janitor that did not wait to have acted.
    std::thread::sleep(Duration::from_secs(1));
    let later = mounted();
    let (init, _) = checks(&fresh, pid);
    kill_tree(pid);
    kit::proc::reap_all();
    assert_eq!(at_once, ["/ext", "/ext/sub", "/kern", "/run"]);
    assert_eq!(later, at_once, "the restored container's mounts stay");
    assert!(init.starts_with("OK"), "container init: {init}");
}

/// Every path below `d` (not following symlinks); one removed while it
/// is listed (by a janitor at work) is left out.
fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(m) = p.symlink_metadata() else {
            continue;
        };
        if m.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// A container, dumped: its root fs and the images.
fn dumped(kit: &Kit) -> (PathBuf, PathBuf) {
    let (bin, root) = container_root(kit);
    let pid = launch(&bin, &root);
    let dir = kit.path("img");
    dump_gone(kit, pid, &dir, &[]);
    (root, dir)
}

/// A container with a host directory bound on /ext (`sub`: and a tmpfs
/// on /ext/sub), dumped with /ext external: its root fs, the host
/// directory and the images.
fn dumped_with_ext(kit: &Kit, sub: bool) -> (PathBuf, PathBuf, PathBuf) {
    let (bin, root) = container_root(kit);
    let host = kit.path("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    let pid = launch_with(&bin, &root, Some(&host), sub);
    let dir = kit.path("img");
    dump_gone(kit, pid, &dir, &["--external", "mnt[/ext]:ext"]);
    (root, host, dir)
}

/// `crit dump` of `pid` into `dir` with `extra`, which ends the container.
fn dump_gone(kit: &Kit, pid: i32, dir: &Path, extra: &[&str]) {
    ok(&kit.dump(pid, dir, extra));
    let left = reap(&[pid], Duration::from_secs(2));
    assert!(left.is_empty(), "the dump left {left:?} running");
}

/// `crit restore -d` of `dir` in `root` with host directory `host` as
/// the external mount /ext, and `extra`.
fn restore_with_ext(
    kit: &Kit,
    dir: &Path,
    root: &Path,
    host: &Path,
    extra: &[&str],
) -> std::process::Output {
    let ext = format!("mnt[ext]:{}", host.display());
    let mut args = vec![
        "restore",
        "-D",
        dir.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--external",
        &ext,
        "-d",
    ];
    args.extend_from_slice(extra);
    kit.crit(&args)
}

/// [`restore_with_ext`], which must fail: its stderr.
fn restore_failing_with_ext(kit: &Kit, dir: &Path, root: &Path, host: &Path) -> String {
    let out = restore_with_ext(kit, dir, root, host, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}
