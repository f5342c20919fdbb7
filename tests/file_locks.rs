//! File locks through a dump and a restore with `--file-locks`
//! (tests/programs/locks.c): POSIX locks of a parent and of its child on
//! one file (different ranges, a read range shared), an OFD lock, and a
//! flock on a file whose descriptor the child inherited. After the
//! restore each task checks its own locks, and a probe of its own sees
//! them from outside. A lock someone else took meanwhile fails the
//! restore in one line and leaves nothing behind.

mod kit;

use crit::image::pb;
use crit::model::lock::{FL_FLOCK, FL_OFD, FL_POSIX, F_RDLCK, F_WRLCK};
use kit::dump::*;
use std::path::{Path, PathBuf};

/// The program's arguments: result file, heartbeat, and the directory
/// of its locked files (made here).
fn args(kit: &Kit) -> (PathBuf, PathBuf, PathBuf) {
    let files = kit.path("files");
    std::fs::create_dir_all(&files).unwrap();
    (kit.path("result"), kit.path("hb"), files)
}

/// filelocks.img's entries, as (flag, type, pid, fd, start, len).
fn entries(img: &Path) -> Vec<(u32, u32, i32, i32, i64, i64)> {
    let v: Vec<pb::FileLockEntry> =
        crit::image::typed::read_all(&img.join("filelocks.img"), "FILE_LOCKS").unwrap();
    v.iter()
        .map(|e| (e.flag, e.r#type, e.pid, e.fd, e.start, e.len))
        .collect()
}

/// What CRIU 4.2 records for the program's tree (and the child's read
/// lock, which CRIU drops: taken through a descriptor the parent holds
/// too), in CRIU's order.
fn expected(parent: i32, child: i32) -> Vec<(u32, u32, i32, i32, i64, i64)> {
    vec![
        (FL_POSIX, F_WRLCK, parent, 3, 0, 100),
        (FL_POSIX, F_RDLCK, parent, 3, 200, 100),
        (FL_OFD, F_WRLCK, parent, 4, 1000, 0),
        (FL_FLOCK, F_WRLCK, parent, 5, 0, 0),
        (FL_POSIX, F_RDLCK, child, 3, 200, 100),
    ]
}

#[test]
fn locks_come_back_in_their_tasks() {
    let kit = Kit::new();
    let (result, hb, files) = args(&kit);
    let a = [
        result.to_str().unwrap(),
        hb.to_str().unwrap(),
        files.to_str().unwrap(),
    ];
    let a = kit.round_trip_with("locks", &a, &result, 2, &["--file-locks"], |img| {
        let tree: Vec<pb::PstreeEntry> =
            crit::image::typed::read_all(&img.join("pstree.img"), "PSTREE").unwrap();
        let (parent, child) = (tree[0].pid as i32, tree[1].pid as i32);
        assert_eq!(entries(img), expected(parent, child));
    });
    assert_eq!(a.lines().filter(|l| l.starts_with("OK")).count(), 2, "{a}");
}

/// One dump, three restores: without --file-locks (refused, naming the
/// option), with the flock taken meanwhile by another process (refused,
/// naming the task, its fd and the lock), then with it free (restored).
/// The refused restores leave no task behind.
#[test]
fn a_restore_takes_the_locks_or_nothing() {
    let kit = Kit::new();
    let (result, hb, files) = args(&kit);
    let mut prog = kit.start(
        "locks",
        &[
            result.to_str().unwrap(),
            hb.to_str().unwrap(),
            files.to_str().unwrap(),
        ],
    );
    let pids = prog.ready_numbers();
    let tree = kit::proc::tree(prog.pid);
    let img = kit.path("img");
    ok(&kit.dump(prog.pid, &img, &["--file-locks"]));
    let _ = prog.child.wait();
    let left = reap(&tree, std::time::Duration::from_secs(5));
    assert!(left.is_empty(), "still there after the dump: {left:?}");
    assert_eq!(entries(&img), expected(pids[0], pids[1]));
    let restore = |extra: &[&str]| {
        let mut a = vec!["restore", "-d", "--shell-job", "-D", img.to_str().unwrap()];
        a.extend_from_slice(extra);
        kit.crit(&a)
    };
    let refused = |o: &std::process::Output, want: &[&str]| {
        let e = stderr(o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        for w in want {
            assert!(e.contains(w), "{w:?} in {e}");
        }
        // The rollback ended every task: their pids are free again.
        let left = reap(&pids, std::time::Duration::from_secs(5));
        assert!(left.is_empty(), "left behind: {left:?} ({e})");
    };

    refused(
        &restore(&[]),
        &["filelocks.img", "5 file lock(s)", "--file-locks"],
    );

    let f = std::fs::File::open(files.join("pid")).unwrap();
    let held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let fd5 = format!("pid {} fd 5: its FLOCK WRITE lock on ", pids[0]);
    refused(
        &restore(&["--file-locks"]),
        &[&fd5, "another process holds a conflicting lock"],
    );
    drop(held);

    ok(&restore(&["--file-locks"]));
    let a = kit::proc::ask_tree(pids[0], &result, 2);
    assert_eq!(a.lines().filter(|l| l.starts_with("OK")).count(), 2, "{a}");
}

/// A lock on a socket, whose fdinfo the dump reads only once /proc/locks
/// shows a lock on its inode: recorded by its descriptor.
#[test]
fn a_lock_on_a_socket_is_dumped() {
    let kit = Kit::new();
    let prog = kit.start("refuse_net", &["ofd-socket"]);
    let img = kit.path("img");
    let o = kit.dump(prog.pid, &img, &["--file-locks", "-R"]);
    let alive_after = alive(prog.pid);
    kill_tree(prog.pid);
    ok(&o);
    assert!(alive_after, "the task runs on after -R");
    assert_eq!(entries(&img), vec![(FL_OFD, F_WRLCK, prog.pid, 3, 0, 0)]);
}
