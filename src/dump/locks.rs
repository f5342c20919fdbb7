//! The tree's file locks: recorded in filelocks.img with `--file-locks`
//! as CRIU 4.2 records them, refused without it.
//!
//! Where a lock shows: the fdinfo of a descriptor lists the locks set
//! through its open file description ("lock:" lines); a POSIX lock only
//! in the fdinfo of its owner, a flock, OFD lock or lease in that of
//! every descriptor of the description, whichever task holds it. Descriptors
//! read through a copy (sockets, pipes: their fdinfo is not read) are
//! looked up in /proc/locks by inode, and their fdinfo read only then.
//!
//! What is recorded, in CRIU's order (tasks in pstree order, descriptors
//! in order, a descriptor's locks as its fdinfo lists them): a flock,
//! OFD lock or lease once, by the first descriptor of its description
//! (a lease's holder is its open file description); a POSIX
//! lock by its owner's first descriptor that shows it. CRIU 4.2 drops a
//! POSIX lock shown by a description an earlier task holds too (a lock a
//! child took through an inherited descriptor); crit keeps it.
//!
//! Refused before anything is written: a lease being broken (see
//! [`crate::model::lock`]), delegations, mandatory flocks and other
//! kinds, by name; a write lease on a deleted file (its contents are
//! read through a new open, which would break the lease); a lock
//! /proc/locks gives to a task of the tree that no descriptor of the
//! tree shows (a mapping or a message in flight holds the file). Nothing
//! here opens a locked file: a new open would break a lease.
//! Waiters (blocked in F_SETLKW or flock) hold nothing: once restored
//! they wait again.

use super::error::DumpError;
use super::fdscan::Fd;
use super::task::Collected;
use super::tree;
use crate::error::Result;
use crate::image::pb;
use crate::model::lock::{fdinfo_lines, Kind, Shown};
use std::collections::{HashMap, HashSet};

/// The locks one descriptor shows, or where to look for them.
#[derive(Debug, Clone)]
pub enum Seen {
    /// Its fdinfo's "lock:" lines.
    Shown(Vec<Shown>),
    /// Read through a copy (a socket or a pipe): its file, to look up in
    /// /proc/locks.
    Copied { dev: u64, ino: u64, socket: bool },
}

/// A descriptor of a task that may hold locks: its number, its file id
/// (one per open file description) and its locks.
#[derive(Debug, Clone)]
pub struct FdLocks {
    pub fd: i32,
    pub id: u32,
    pub seen: Seen,
}

/// What descriptor `fd` (file id `id`) of task `pid` shows of locks;
/// None when it shows none. Without `--file-locks` a lock is refused.
pub fn of_fd(file_locks: bool, pid: i32, fd: &Fd, id: u32) -> Result<Option<FdLocks>> {
    if let Some(dev) = fd.copied_dev {
        let socket = matches!(fd.kind, super::fdscan::Kind::Socket(_));
        let seen = Seen::Copied {
            dev,
            ino: fd.st.ino,
            socket,
        };
        return Ok(Some(FdLocks {
            fd: fd.fd,
            id,
            seen,
        }));
    }
    let shown = shown_in(file_locks, pid, fd.fd, &fd.link, &fd.info)?;
    if let super::fdscan::Kind::Path { deleted: true, .. } = fd.kind {
        refuse_write_lease(pid, fd.fd, &fd.link, &shown)?;
    }
    Ok((!shown.is_empty()).then_some(FdLocks {
        fd: fd.fd,
        id,
        seen: Seen::Shown(shown),
    }))
}

/// Whether an fdinfo text shows a lease on the descriptor's file.
pub fn shows_lease(info: &str) -> bool {
    fdinfo_lines(info).any(|l| Shown::parse(l).is_some_and(|s| s.class == "LEASE"))
}

/// Refuses a write lease among the locks of a deleted file's descriptor:
/// the dump reads such a file's contents through a new open for
/// reading, which would start breaking the lease (and wait for a holder
/// that is frozen).
fn refuse_write_lease(pid: i32, fd: i32, link: &str, shown: &[Shown]) -> Result<()> {
    let lease = shown
        .iter()
        .find(|s| s.lock().is_ok_and(|l| l.kind == Kind::Lease && l.write));
    match lease {
        Some(s) => Err(DumpError::LockKind {
            pid,
            fd,
            link: link.to_string(),
            what:
                "a write lease on a deleted file (reading the file for the images would break it)"
                    .into(),
            lock: s.to_string(),
        }
        .into()),
        None => Ok(()),
    }
}

/// The locks of an fdinfo text, each one crit can dump; the first lock
/// is refused without `--file-locks`.
fn shown_in(file_locks: bool, pid: i32, fd: i32, link: &str, info: &str) -> Result<Vec<Shown>> {
    let mut v = Vec::new();
    // An owner the reader's pid namespace cannot see leaves the line
    // empty on kernels before 4.19: nothing the tree holds.
    for l in fdinfo_lines(info).filter(|l| !l.is_empty()) {
        if !file_locks {
            return Err(DumpError::FdLocked {
                pid,
                fd,
                link: link.to_string(),
                lock: l.to_string(),
            }
            .into());
        }
        let s = Shown::parse(l).ok_or_else(|| DumpError::LockLine {
            pid,
            fd,
            line: l.to_string(),
        })?;
        s.lock().map_err(|what| DumpError::LockKind {
            pid,
            fd,
            link: link.to_string(),
            what,
            lock: s.to_string(),
        })?;
        v.push(s);
    }
    Ok(v)
}

/// Every lock held on the system (/proc/locks, waiters left out).
pub struct System {
    held: Vec<Shown>,
    /// The first lock on each file, by (device, inode).
    by_file: HashMap<(u64, u64), usize>,
}

impl System {
    /// Reads /proc/locks (a first read took 8.6 ms here, later ones 0.1 ms: done
    /// beside the collection). A kernel without it has no locks.
    pub fn read() -> System {
        let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
        System::of(
            text.lines()
                .filter_map(Shown::parse)
                .filter(|s| !s.blocked)
                .collect(),
        )
    }

    fn of(held: Vec<Shown>) -> System {
        let mut by_file = HashMap::new();
        for (k, s) in held.iter().enumerate() {
            by_file.entry((s.dev(), s.ino)).or_insert(k);
        }
        System { held, by_file }
    }

    /// A lock on the file of device `dev` and inode `ino`.
    fn on(&self, dev: u64, ino: u64) -> Option<&Shown> {
        self.by_file.get(&(dev, ino)).map(|&k| &self.held[k])
    }

    /// Without `--file-locks`: refuses the first lock a task of the tree
    /// holds, naming the descriptor through which it holds the file.
    pub fn refuse_held(&self, tasks: &[tree::Task]) -> Result<()> {
        let pids: HashSet<i32> = tasks.iter().map(|t| t.pid).collect();
        match self.held.iter().find(|s| pids.contains(&s.pid)) {
            Some(s) => Err(DumpError::HeldLock {
                pid: s.pid,
                fd: fd_of_inode(s.pid, s.dev(), s.ino),
                kind: s.class.clone(),
                inode: s.inode(),
            }
            .into()),
            None => Ok(()),
        }
    }
}

/// The entries of filelocks.img for the collected tree: the locks of
/// descriptors read through a copy are read now (refused without
/// `--file-locks`, as the others were while collecting); a lock of the
/// tree that no descriptor shows is refused.
pub fn settle(
    file_locks: bool,
    tasks: &mut [Collected],
    system: &System,
    vpid: impl Fn(i32) -> i32,
) -> Result<Vec<pb::FileLockEntry>> {
    for c in tasks.iter_mut() {
        let pid = c.t.pid;
        for f in &mut c.locks {
            let Seen::Copied { dev, ino, socket } = f.seen else {
                continue;
            };
            // As the descriptor's link reads.
            let link = match socket {
                true => format!("socket:[{ino}]"),
                false => format!("pipe:[{ino}]"),
            };
            // Its fdinfo tells whether the lock is the tree's.
            let shown = match system.on(dev, ino) {
                None => Vec::new(),
                Some(_) => {
                    let info = read_fdinfo(pid, f.fd)?;
                    shown_in(file_locks, pid, f.fd, &link, &info)?
                }
            };
            f.seen = Seen::Shown(shown);
        }
    }
    if !file_locks {
        return Ok(Vec::new());
    }
    check_shown(tasks, system)?;
    Ok(entries(
        tasks.iter().map(|c| (vpid(c.t.pid), c.locks.as_slice())),
    ))
}

/// filelocks.img's entries from what each task's descriptors show
/// (tasks in pstree order, by the pid the tree sees), in CRIU's order.
pub fn entries<'a>(tasks: impl Iterator<Item = (i32, &'a [FdLocks])>) -> Vec<pb::FileLockEntry> {
    // Descriptions whose flock and OFD locks are recorded, and (task,
    // description) pairs whose POSIX locks are.
    let mut described = HashSet::new();
    let mut owned = HashSet::new();
    let mut out = Vec::new();
    for (pid, fds) in tasks {
        for f in fds {
            let Seen::Shown(shown) = &f.seen else {
                continue;
            };
            let first = described.insert(f.id);
            let first_of_owner = owned.insert((pid, f.id));
            for l in shown.iter().filter_map(|s| s.lock().ok()) {
                let take = match l.kind {
                    Kind::Posix => first_of_owner,
                    Kind::Flock | Kind::Ofd | Kind::Lease => first,
                };
                if take {
                    out.push(l.entry(pid, f.fd));
                }
            }
        }
    }
    out
}

/// Refuses a lock that /proc/locks gives to a task of the tree (a POSIX
/// lock's owner, a flock's maker) and no descriptor of the tree shows:
/// its file is held by a mapping or a message in flight only, or by a
/// process outside the tree. OFD locks name no task there.
fn check_shown(tasks: &[Collected], system: &System) -> Result<()> {
    let pids: HashSet<i32> = tasks.iter().map(|c| c.t.pid).collect();
    // Each lock shown, by the descriptions that show it: the same lock
    // in every descriptor of one description is one lock.
    let mut shown: HashMap<&Shown, HashSet<u32>> = HashMap::new();
    for f in tasks.iter().flat_map(|c| &c.locks) {
        if let Seen::Shown(v) = &f.seen {
            for s in v {
                shown.entry(s).or_default().insert(f.id);
            }
        }
    }
    let mut held: HashMap<&Shown, usize> = HashMap::new();
    for s in system.held.iter().filter(|s| pids.contains(&s.pid)) {
        let n = held.entry(s).or_default();
        *n += 1;
        if shown.get(s).map_or(0, HashSet::len) < *n {
            // An outside open that began breaking a lease after the
            // descriptors were read shows the lease changed here.
            if let Err(what) = s.lock() {
                return Err(DumpError::HeldLockKind {
                    pid: s.pid,
                    fd: fd_of_inode(s.pid, s.dev(), s.ino),
                    what,
                    inode: s.inode(),
                    lock: s.to_string(),
                }
                .into());
            }
            return Err(DumpError::LockNoFd {
                pid: s.pid,
                kind: s.class.clone(),
                inode: s.inode(),
                lock: s.to_string(),
            }
            .into());
        }
    }
    Ok(())
}

fn read_fdinfo(pid: i32, fd: i32) -> Result<String> {
    let path = super::procfs::path(pid, "fdinfo").join(fd.to_string());
    std::fs::read_to_string(&path).map_err(|source| DumpError::Proc { pid, path, source }.into())
}

/// The fd of task `pid` that holds the file of device `dev` and inode
/// `ino`.
fn fd_of_inode(pid: i32, dev: u64, ino: u64) -> Option<i32> {
    use std::os::unix::fs::MetadataExt;
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds.into_iter().find(|fd| {
        std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
            .is_ok_and(|m| m.ino() == ino && m.dev() == dev)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lock::{FL_FLOCK, FL_LEASE, FL_OFD, FL_POSIX};

    fn fd(fd: i32, id: u32, lines: &[&str]) -> FdLocks {
        FdLocks {
            fd,
            id,
            seen: Seen::Shown(lines.iter().map(|l| Shown::parse(l).unwrap()).collect()),
        }
    }

    const W: &str = "1: POSIX  ADVISORY  WRITE 10 fd:01:5 0 99";
    const R: &str = "2: POSIX  ADVISORY  READ  10 fd:01:5 200 299";
    const CHILD_R: &str = "1: POSIX  ADVISORY  READ  11 fd:01:5 200 299";
    const FLOCK: &str = "1: FLOCK  ADVISORY  WRITE 10 fd:01:6 0 EOF";
    const OFD: &str = "1: OFDLCK ADVISORY  WRITE -1 fd:01:5 1000 EOF";
    const LEASE: &str = "1: LEASE  ACTIVE    READ  10 fd:01:7 0 EOF";

    fn short(e: &[pb::FileLockEntry]) -> Vec<(u32, u32, i32, i32, i64, i64)> {
        e.iter()
            .map(|e| (e.flag, e.r#type, e.pid, e.fd, e.start, e.len))
            .collect()
    }

    #[test]
    fn each_lock_is_recorded_once_by_its_holder() {
        // Task 1: fd 3 and its dup fd 5 (file id 1) show its POSIX locks;
        // fd 4 (id 2) a flock, fd 6 (id 3) an OFD lock. Task 2 (its child)
        // inherited ids 1 and 2: fd 3 shows its own read lock, fd 4 the
        // flock again. A lease on fd 7 (id 4), which the child inherited
        // as fd 7 and dup'ed as fd 8: recorded once, by the parent's fd 7.
        let parent = [
            fd(3, 1, &[W, R]),
            fd(4, 2, &[FLOCK]),
            fd(5, 1, &[W, R]),
            fd(6, 3, &[OFD]),
            fd(7, 4, &[LEASE]),
        ];
        let child = [
            fd(3, 1, &[CHILD_R]),
            fd(4, 2, &[FLOCK]),
            fd(7, 4, &[LEASE]),
            fd(8, 4, &[LEASE]),
        ];
        let got = entries([(1, &parent[..]), (2, &child[..])].into_iter());
        assert_eq!(
            short(&got),
            vec![
                (FL_POSIX, 1, 1, 3, 0, 100),
                (FL_POSIX, 0, 1, 3, 200, 100),
                (FL_FLOCK, 1, 1, 4, 0, 0),
                (FL_OFD, 1, 1, 6, 1000, 0),
                (FL_LEASE, 0, 1, 7, 0, 0),
                (FL_POSIX, 0, 2, 3, 200, 100),
            ]
        );
    }

    fn collected(pid: i32, locks: Vec<FdLocks>) -> Collected {
        Collected {
            t: tree::Task {
                pid,
                ppid: 1,
                pgid: pid,
                sid: pid,
                threads: vec![pid],
                stat: Default::default(),
                zombie: false,
            },
            ids: Default::default(),
            cores: Vec::new(),
            mm: None,
            runs: Vec::new(),
            pages_scanned: 0,
            pages_parent: 0,
            fdinfo: Vec::new(),
            fds: Vec::new(),
            fs: Default::default(),
            shared_files: false,
            shared_vm: false,
            locks,
        }
    }

    fn system(lines: &[&str]) -> System {
        System::of(lines.iter().map(|l| Shown::parse(l).unwrap()).collect())
    }

    #[test]
    fn a_lock_of_the_tree_that_no_descriptor_shows_is_refused() {
        let tasks = [collected(10, vec![fd(3, 1, &[W])])];
        assert!(check_shown(&tasks, &system(&[W, OFD])).is_ok());
        // Another process's lock is not the tree's.
        let other = "9: FLOCK  ADVISORY  WRITE 99 fd:01:7 0 EOF";
        assert!(check_shown(&tasks, &system(&[W, other])).is_ok());
        let e = check_shown(&tasks, &system(&[W, FLOCK])).unwrap_err();
        assert!(
            matches!(
                &e,
                crate::error::Error::Dump(DumpError::LockNoFd { pid: 10, kind, .. }) if kind == "FLOCK"
            ),
            "{e}"
        );
        // A lease whose break began after the descriptors were read.
        let active = "1: LEASE  ACTIVE    WRITE 10 fd:01:8 0 EOF";
        let breaking = "1: LEASE  BREAKING  READ  10 fd:01:8 0 EOF";
        let tasks = [collected(10, vec![fd(3, 1, &[active])])];
        assert!(check_shown(&tasks, &system(&[active])).is_ok());
        let e = check_shown(&tasks, &system(&[breaking]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("pid 10") && e.contains("holds a lease being broken"),
            "{e}"
        );
        // Two alike flocks (two descriptions), one shown by the tree.
        let tasks = [collected(10, vec![fd(3, 1, &[FLOCK]), fd(4, 1, &[FLOCK])])];
        assert!(check_shown(&tasks, &system(&[FLOCK])).is_ok());
        assert!(check_shown(&tasks, &system(&[FLOCK, FLOCK])).is_err());
    }

    #[test]
    fn without_the_option_a_lock_is_refused_naming_it() {
        let info = "pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t5\nlock:\t1: FLOCK  ADVISORY  WRITE 10 fd:01:6 0 EOF\n";
        let e = shown_in(false, 10, 4, "/tmp/x", info)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pid 10 fd 4") && e.contains("--file-locks"),
            "{e}"
        );
        assert_eq!(shown_in(true, 10, 4, "/tmp/x", info).unwrap().len(), 1);
        let lease = "lock:\t1: LEASE  ACTIVE    READ 10 fd:01:6 0 EOF\n";
        let e = shown_in(false, 10, 4, "/tmp/x", lease)
            .unwrap_err()
            .to_string();
        assert!(e.contains("LEASE") && e.contains("--file-locks"), "{e}");
        assert_eq!(shown_in(true, 10, 4, "/tmp/x", lease).unwrap().len(), 1);
        let breaking = "lock:\t1: LEASE  BREAKING  UNLCK 10 fd:01:6 0 EOF\n";
        let e = shown_in(true, 10, 4, "/tmp/x", breaking)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("pid 10 fd 4: /tmp/x carries a lease being broken")
                && e.contains("LEASE BREAKING UNLCK"),
            "{e}"
        );
    }

    #[test]
    fn a_write_lease_on_a_deleted_file_is_refused() {
        let lines =
            |l: &[&str]| -> Vec<Shown> { l.iter().map(|l| Shown::parse(l).unwrap()).collect() };
        let read = "1: LEASE  ACTIVE    READ 10 fd:01:6 0 EOF";
        let write = "1: LEASE  ACTIVE    WRITE 10 fd:01:6 0 EOF";
        assert!(refuse_write_lease(10, 4, "/tmp/x (deleted)", &lines(&[FLOCK, read])).is_ok());
        let e = refuse_write_lease(10, 4, "/tmp/x (deleted)", &lines(&[FLOCK, write]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("pid 10 fd 4: /tmp/x (deleted) carries a write lease on a deleted file"),
            "{e}"
        );
    }
}
