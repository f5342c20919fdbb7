//! Tasks in odd states (tests/programs/hostile.c): a dump either
//! restores them as they were, checked by the task itself, or refuses
//! them in one line before any harm.

mod kit;

use kit::dump::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Starts hostile.c in `mode`; returns it with its result and heartbeat
/// files.
fn start(kit: &Kit, mode: &str) -> (Prog, std::path::PathBuf, std::path::PathBuf) {
    let (result, hb) = (kit.path("result"), kit.path("hb"));
    let prog = kit.start(
        "hostile",
        &[mode, result.to_str().unwrap(), hb.to_str().unwrap()],
    );
    (prog, result, hb)
}

/// Dumps the task, lets it go, restores it and returns what it says of
/// its own state.
fn round_trip(kit: &Kit, mode: &str) -> String {
    round_trip_tree(kit, mode, 1)
}

/// As [`round_trip`], for a tree of `n` tasks that each report.
fn round_trip_tree(kit: &Kit, mode: &str, n: usize) -> String {
    let (result, hb) = (kit.path("result"), kit.path("hb"));
    let args = [mode, result.to_str().unwrap(), hb.to_str().unwrap()];
    kit.round_trip("hostile", &args, &result, n, |_| {})
}

/// What must not change in a task that a dump refused: its mappings, its
/// descriptors and what they name.
fn looks(pid: i32) -> String {
    let mut s = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let fd = fd.unwrap();
        let to = std::fs::read_link(fd.path()).unwrap();
        s += &format!("{:?} -> {}\n", fd.file_name(), to.display());
    }
    s
}

/// Dumps the task in `mode` and checks it was refused in one line holding
/// every one of `want`, leaving no images and the task as it was,
/// running on.
fn refused(kit: &Kit, mode: &str, want: &[&str]) {
    let (prog, _, hb) = start(kit, mode);
    let pid = prog.pid;
    let before = looks(pid);
    let dir = kit.path("img");
    let o = kit.dump(pid, &dir, &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    for w in want {
        assert!(e.contains(w), "{w:?} in {e}");
    }
    let named = [format!("pid {pid}"), format!("/proc/{pid}/")];
    assert!(
        named.iter().any(|n| e.contains(n)),
        "pid {pid} named in {e}"
    );
    assert!(images(&dir).is_empty(), "left: {:?}", images(&dir));
    runs_on(pid, &hb);
    assert_eq!(looks(pid), before, "the task is as it was");
    kill_tree(pid);
}

fn beat(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The task is not traced (the dump worker lets it go within a moment)
/// and its heartbeat moves.
fn runs_on(pid: i32, hb: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .contains("TracerPid:\t0")
    {
        assert!(Instant::now() < deadline, "pid {pid} still traced");
        std::thread::sleep(Duration::from_millis(10));
    }
    let a = beat(hb);
    let deadline = Instant::now() + Duration::from_secs(5);
    while beat(hb) <= a {
        assert!(Instant::now() < deadline, "pid {pid}: heartbeat stuck");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An epoll keys each target by file and descriptor number; numbers
/// closed or given to another file since are recorded as a descriptor
/// that still holds the watched file.
#[test]
fn epoll_targets_whose_numbers_moved_come_back() {
    let kit = Kit::new();
    let a = round_trip(&kit, "epoll-moved");
    assert!(a.starts_with("OK"), "{a}");
}

/// A file on a mount since detached (`umount -l`) has, in /proc, its
/// path inside that mount, which names nothing (or another file) where a
/// restore would open it: refused, whether it is held open, the working
/// directory or mapped.
#[test]
fn files_on_a_detached_mount_are_refused() {
    let kit = Kit::new();
    for (mode, via) in [
        ("detached-fd", " fd 3: /file "),
        ("detached-cwd", "/cwd: / "),
        ("detached-map", "/map_files/"),
    ] {
        refused(&kit, mode, &[via, "mount was detached"]);
    }
}

/// Netlink sockets of protocols other than NETLINK_ROUTE (a generic
/// netlink one, bound, that must still answer; a sock_diag one, unbound)
/// were dumped but not restored.
#[test]
fn netlink_sockets_of_other_protocols_come_back() {
    let kit = Kit::new();
    let a = round_trip(&kit, "netlink");
    assert!(a.starts_with("OK"), "{a}");
}

/// A deleted fifo was dumped by its path, which no longer opens it (the
/// restore failed): refused, as other deleted files that are not regular.
#[test]
fn a_deleted_fifo_is_refused() {
    let kit = Kit::new();
    refused(&kit, "deleted-fifo", &[" fd 3: ", "was deleted"]);
}

/// A POSIX message queue is a regular file to /proc: it was dumped by a
/// path that no restore opens, or, its name unlinked, as a deleted file
/// whose contents (the queue's status text) a restore made a plain file
/// of. Refused.
#[test]
fn a_message_queue_is_refused() {
    let kit = Kit::new();
    refused(&kit, "mqueue", &[" fd 3: ", "POSIX message queue"]);
}

/// Secret memory (memfd_secret) held open and mapped cannot be read by
/// anyone: it was refused as "read deleted file: No such device or
/// address". It is refused by name (its mapping is met first).
#[test]
fn a_secret_memory_area_is_refused_by_name() {
    // SAFETY: memfd_secret takes a flags word; the fd is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_memfd_secret, 0) };
    if fd < 0 {
        eprintln!("note: this kernel makes no secret memory; nothing to refuse");
        return;
    }
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd as i32) };
    let kit = Kit::new();
    refused(&kit, "secretmem", &["the file is a secret memory area"]);
}

/// A task with as many mappings as vm.max_map_count allows has no room
/// for the dump's injected one: refused as "injected mmap: Cannot
/// allocate memory" alone; the message now says why.
#[test]
fn a_task_at_its_mapping_limit_is_refused_saying_so() {
    let max: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if max > 300_000 {
        eprintln!("note: vm.max_map_count is {max}; too many mappings to fill here");
        return;
    }
    let kit = Kit::new();
    refused(&kit, "map-limit", &["vm.max_map_count allows"]);
}

/// Whether this kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let r = nix::sys::utsname::uname().unwrap();
    let v = r.release().to_string_lossy().into_owned();
    let mut n = v
        .split(|c: char| !c.is_ascii_digit())
        .map(|x| x.parse::<u32>().unwrap_or(0));
    (n.next().unwrap_or(0), n.next().unwrap_or(0)) >= (major, minor)
}

/// Guard pages (MADV_GUARD_INSTALL) are not mappings; the dump recorded
/// none of them and the restore brought back a readable page of zeros.
/// They are recorded as CRIU 4.2 does (VMA entries of status
/// VMA_AREA_GUARD) and installed again.
#[test]
fn guard_pages_come_back() {
    // PAGEMAP_SCAN reports guard pages from 6.16 on.
    if !kernel_at_least(6, 16) {
        eprintln!("note: this kernel cannot show guard pages to a dump");
        return;
    }
    let kit = Kit::new();
    let a = round_trip(&kit, "guard");
    assert!(a.starts_with("OK"), "{a}");
    // Explored, the guard entries are no mappings of their own (x mem
    // said that they overlapped the mapping they guard).
    let pid = a.split_whitespace().nth(1).unwrap();
    let img = kit.path("img");
    let x = kit.crit(&["x", img.to_str().unwrap(), "mem", pid]);
    ok(&x);
}

/// A thread waiting in vfork cannot be stopped until its child execs or
/// exits: the dump said so only after its 10 s freeze timeout, as "did
/// not stop (state D)". It is refused within about a second, naming the
/// child.
#[test]
fn a_thread_waiting_in_vfork_is_refused_naming_its_child() {
    let kit = Kit::new();
    refused(&kit, "vfork", &["waits in vfork for its child"]);
}

/// TCP and UDP sockets neither listening nor connected (unbound, or
/// bound only) are in no sock_diag list; they were refused as "of a
/// family crit dump does not support". They are dumped closed, bound
/// where they were.
#[test]
fn closed_tcp_and_udp_sockets_come_back() {
    let kit = Kit::new();
    let a = round_trip(&kit, "closed-inet");
    assert!(a.starts_with("OK"), "{a}");
}

/// A file mapped shared read-only and, above, shared writable, and a
/// deleted file mapped shared writable: the restore opened each file for
/// its first mapping (or with its descriptor's mode) and failed to map
/// the writable one (EACCES).
#[test]
fn files_mapped_shared_and_writable_come_back() {
    let kit = Kit::new();
    let a = round_trip(&kit, "mapped-shared");
    assert!(a.starts_with("OK"), "{a}");
}

/// A task holding its own /proc files: the restore opened them before
/// the task existed (ENOENT, or another process's files had its pid been
/// taken); the task opens them itself now.
#[test]
fn a_tasks_own_proc_files_come_back() {
    let kit = Kit::new();
    let a = round_trip(&kit, "proc-files");
    assert!(a.starts_with("OK"), "{a}");
}

/// A task holding its child's /proc/CHILD/stat: the dump is kept (CRIU
/// restores it), crit's restore refuses it in one line before anything
/// of the tree is made.
#[test]
fn a_parent_holding_its_childs_proc_file_is_refused_at_restore() {
    let kit = Kit::new();
    let (mut prog, _, _) = start(&kit, "proc-of-child");
    let pid = prog.pid;
    let child = kit::proc::tree(pid)
        .into_iter()
        .find(|&p| p != pid)
        .expect("the child");
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &[]));
    let _ = prog.child.wait();
    // The child comes to the test's subreaper once its parent is gone.
    assert!(kit::proc::reap(&[pid, child], Duration::from_secs(5)).is_empty());
    let log = kit.path("restore.log");
    let o = kit.crit(&[
        "restore",
        "-d",
        "--shell-job",
        "-D",
        dir.to_str().unwrap(),
        "-v",
        "-o",
        log.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    for w in [
        format!("pid {pid}"),
        "fd 3".into(),
        format!("/proc/{child}/"),
    ] {
        assert!(e.contains(&w), "{w:?} in {e}");
    }
    let l = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!l.contains("files and sockets made"), "{l}");
    assert!(!kit::proc::exists(pid) && !kit::proc::exists(child));
}

/// A child in the process group of a sibling that exited (the group has
/// no leader): it came back in its parent's group. Now in its own group
/// again, made by a helper that is gone before the tree runs.
#[test]
fn a_group_whose_leader_exited_comes_back() {
    let kit = Kit::new();
    let a = round_trip_tree(&kit, "lost-leader", 2);
    assert_eq!(a.lines().filter(|l| l.starts_with("OK")).count(), 2, "{a}");
}
