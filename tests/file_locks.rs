//! File locks through a dump and a restore with `--file-locks`
//! (tests/programs/locks.c): POSIX locks of a parent and of its child on
//! one file (different ranges, a read range shared), an OFD lock, and a
//! flock on a file whose descriptor the child inherited. After the
//! restore each task checks its own locks, and a probe of its own sees
//! them from outside. A lock someone else took meanwhile fails the
//! restore in one line and leaves nothing behind.
//!
//! Leases (tests/programs/leases.c): a read lease and a write lease come
//! back in their task, which checks them and has them broken; a restore
//! that cannot take one fails in one line and leaves nothing behind; a
//! lease being broken is refused by the dump and by the restore.

mod kit;

use crit::image::pb;
use crit::model::lock::{FL_FLOCK, FL_LEASE, FL_OFD, FL_POSIX, F_RDLCK, F_WRLCK, LEASE_BREAKING};
use kit::dump::*;
use std::os::unix::fs::OpenOptionsExt;
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

/// The leases program's arguments (tests/programs/leases.c), `extra`
/// after them.
fn lease_args(kit: &Kit, extra: &[&str]) -> (PathBuf, PathBuf, Vec<String>) {
    let (result, hb, files) = args(kit);
    let mut a = vec![
        result.display().to_string(),
        hb.display().to_string(),
        files.display().to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    (result, files, a)
}

/// What CRIU 4.2 records for the leases program: a read lease through
/// fd 3, a write lease through fd 4.
fn leases_expected(pid: i32) -> Vec<(u32, u32, i32, i32, i64, i64)> {
    vec![
        (FL_LEASE, F_RDLCK, pid, 3, 0, 0),
        (FL_LEASE, F_WRLCK, pid, 4, 0, 0),
    ]
}

/// The leases on the inodes of `files` that /proc/locks shows.
fn leases_on(files: &[&Path]) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let inos: Vec<String> = files
        .iter()
        .map(|f| format!(":{} ", std::fs::metadata(f).unwrap().ino()))
        .collect();
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|l| l.contains("LEASE") && inos.iter().any(|i| l.contains(i.as_str())))
        .map(str::to_string)
        .collect()
}

/// A read lease and a write lease (with its own break signal) come back
/// in their task, which checks them and then has each broken by a
/// process that opens the file: the break signal reaches it, it gives
/// the lease up and the opener goes on.
#[test]
fn leases_come_back_and_break_in_their_task() {
    let kit = Kit::new();
    let (result, _, a) = lease_args(&kit, &[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let answer = kit.round_trip_with("leases", &a, &result, 1, &["--file-locks"], |img| {
        let tree: Vec<pb::PstreeEntry> =
            crit::image::typed::read_all(&img.join("pstree.img"), "PSTREE").unwrap();
        assert_eq!(entries(img), leases_expected(tree[0].pid as i32));
    });
    assert!(answer.starts_with("OK "), "{answer}");
}

/// One dump (`-R`: the task's leases are unbroken after it, as the dump
/// opens neither file), four restores: with the write-leased file open elsewhere
/// (refused: a write lease wants no other open), with the read-leased
/// file open for writing elsewhere (refused), with the write lease
/// recorded as CRIU records a lease being broken (refused before
/// anything is made), then as dumped (restored, and the task's checks
/// pass). A refused restore leaves no task and no lease behind.
#[test]
fn a_restore_takes_the_leases_or_nothing() {
    let kit = Kit::new();
    let (result, files, mut a) = lease_args(&kit, &[]);
    // No heartbeat file: the task runs on after the dump, and a file
    // that grew since fails the restore.
    a[1] = "/dev/null".into();
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut prog = kit.start("leases", &a);
    let pid = prog.pid;
    let img = kit.path("img");
    let o = kit.dump(pid, &img, &["--file-locks", "-R"]);
    let leases = leases_of(pid);
    kill_tree(pid);
    let _ = prog.child.wait();
    assert!(reap(&[pid], std::time::Duration::from_secs(5)).is_empty());
    ok(&o);
    assert_eq!(leases, ["ACTIVE READ", "ACTIVE WRITE"]);
    assert_eq!(entries(&img), leases_expected(pid));
    let (read, write) = (files.join("read"), files.join("write"));
    let restore = || {
        kit.crit(&[
            "restore",
            "-d",
            "--shell-job",
            "--file-locks",
            "-D",
            img.to_str().unwrap(),
        ])
    };
    let refused = |o: &std::process::Output, want: &[&str]| {
        let e = stderr(o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        for w in want {
            assert!(e.contains(w), "{w:?} in {e}");
        }
        let left = reap(&[pid], std::time::Duration::from_secs(5));
        assert!(left.is_empty(), "left behind: {left:?} ({e})");
        assert_eq!(leases_on(&[&read, &write]), Vec::<String>::new(), "{e}");
    };

    let reader = std::fs::File::open(&write).unwrap();
    let fd4 = format!(
        "pid {pid} fd 4: its WRITE lease on {} cannot be taken again: the file is open elsewhere",
        write.display()
    );
    refused(&restore(), &[&fd4]);
    drop(reader);

    let writer = std::fs::OpenOptions::new().write(true).open(&read).unwrap();
    let fd3 = format!(
        "pid {pid} fd 3: its READ lease on {} cannot be taken again: the file is open for writing elsewhere",
        read.display()
    );
    refused(&restore(), &[&fd3]);
    drop(writer);

    // CRIU's type for a write lease a reader was breaking:
    // LEASE_BREAKING | F_RDLCK, the type it breaks to.
    let locks = img.join("filelocks.img");
    let dumped = std::fs::read(&locks).unwrap();
    let mut v: Vec<pb::FileLockEntry> = crit::image::typed::read_all(&locks, "FILE_LOCKS").unwrap();
    v[1].r#type = LEASE_BREAKING | F_RDLCK;
    let mut b = crit::image::typed::ImageBuilder::new("FILE_LOCKS").unwrap();
    for e in &v {
        b.entry(e);
    }
    std::fs::write(&locks, &b.bytes).unwrap();
    let breaking = format!("filelocks.img: the lock of pid {pid} fd 4: a lease that was being broken (type 4: breaking to a read lease)");
    refused(&restore(), &[&breaking]);
    std::fs::write(&locks, dumped).unwrap();

    ok(&restore());
    let answer = kit::proc::ask_tree(pid, &result, 1);
    assert!(answer.starts_with("OK "), "{answer}");
}

/// The leases /proc/locks gives to `pid`, as "MODE TYPE" each.
fn leases_of(pid: i32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 8 && f[1] == "LEASE" && f[4] == pid.to_string())
                .then(|| format!("{} {}", f[2], f[3]))
        })
        .collect();
    v.sort();
    v
}

/// A lease being broken (another process opened the file and waits for
/// the holder) is refused by the dump in one line naming the task and
/// its fd; the tree runs on with its leases.
#[test]
fn a_lease_being_broken_is_refused_by_the_dump() {
    let kit = Kit::new();
    let (_, files, a) = lease_args(&kit, &[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let prog = kit.start("leases", &a);
    let pid = prog.pid;
    // A non-blocking open starts the break and returns at once.
    let e = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(files.join("write"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EWOULDBLOCK), "{e}");
    let img = kit.path("img");
    let o = kit.dump(pid, &img, &["--file-locks"]);
    let alive_after = alive(pid);
    let leases = leases_of(pid);
    kill_tree(pid);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    let want = format!(
        "pid {pid} fd 4: {} carries a lease being broken",
        files.join("write").display()
    );
    assert!(
        e.contains(&want) && e.contains("LEASE BREAKING READ"),
        "{e}"
    );
    assert!(alive_after, "the tree runs on after a refused dump");
    assert_eq!(leases, ["ACTIVE READ", "BREAKING READ"]);
    assert!(!img.join("inventory.img").exists());
}

/// A write lease on a deleted file is refused by the dump, which would
/// break it by opening the file to read its contents; the tree runs on
/// with its leases unbroken.
#[test]
fn a_write_lease_on_a_deleted_file_is_refused() {
    let kit = Kit::new();
    let (_, _, a) = lease_args(&kit, &["deleted"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let prog = kit.start("leases", &a);
    let pid = prog.pid;
    let img = kit.path("img");
    let o = kit.dump(pid, &img, &["--file-locks"]);
    let alive_after = alive(pid);
    let leases = leases_of(pid);
    kill_tree(pid);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains(&format!("pid {pid} fd 4: ")) && e.contains("a write lease on a deleted file"),
        "{e}"
    );
    assert!(alive_after, "the tree runs on after a refused dump");
    assert_eq!(leases, ["ACTIVE READ", "ACTIVE WRITE"]);
}
