//! The rollback of a restore killed with SIGKILL, which crit cannot
//! catch: its tasks die with it (PR_SET_PDEATHSIG, then
//! PTRACE_O_EXITKILL), and a janitor, a child crit forks when the
//! restore starts, undoes what the restore made outside them: the
//! socket files it bound, the mountpoints it made, the cgroups it made
//! and the values it wrote into existing ones.
//!
//! The restore tells the janitor each of these as it makes it, over a
//! socket pair, with an O_PATH descriptor of the directory of a path
//! (so it is reached wherever it is, also once the tree's mount
//! namespace is gone), and pidfds of the tree's tasks once they exist.
//! Once the tree runs (its tasks let go), or crit's own rollback is
//! over, crit says "done" and reaps the janitor, which exits at once.
//! If the socket closes without that, crit is dead: the janitor undoes
//! what it was told, as [`super::rollback`] does (socket files, cgroup
//! values, cgroups once their tasks are gone, then mountpoints; never
//! what is now something else at a name), once every task has ended.
//!
//! crit lets the tasks go one by one, having said so ("releasing"). Killed
//! in between, it leaves those let go running and takes the others with
//! it: the janitor then waits for crit's end (when each of its threads
//! has sent its tracees their SIGKILL) and looks at the tasks. If every
//! one runs, crit had let them all go: the tree is whole and the janitor
//! leaves it. If any is ending, it ends the others too, then undoes the
//! rest: a restore gives the whole tree or nothing.
//!
//! Best effort: where crit cannot fork (threads already running) the
//! restore goes on without a janitor, as before.

use super::made::Entry;
use crate::sys::clone::{child_exit, fork_alone, ForkResult};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What crit tells the janitor.
#[derive(Serialize, Deserialize, Debug)]
enum Note {
    /// A socket file, with its directory's descriptor.
    File {
        name: Vec<u8>,
        dev: u64,
        ino: u64,
    },
    /// A socket file about to be bound, with its directory's descriptor.
    Binding {
        name: Vec<u8>,
    },
    /// What is at `name` about to be moved aside to `aside` (same
    /// directory, whose descriptor comes with the message).
    Aside {
        name: Vec<u8>,
        aside: Vec<u8>,
    },
    /// A mountpoint, with its directory's descriptor.
    Mountpoint {
        name: Vec<u8>,
        dev: u64,
        ino: u64,
    },
    CgroupDir(PathBuf),
    CgroupWrite {
        file: PathBuf,
        old: String,
    },
    /// Pidfds of the tree's live tasks, with the message, and their pids
    /// (host), in the same order.
    Tasks(Vec<u32>),
    /// crit starts letting the tasks go.
    Releasing,
    /// Copies of the tree's TCP connections, with the message.
    Connections,
    /// crit starts lifting the network lock of these connections.
    Unlocking(
        crate::model::netlock::Lock,
        Vec<crate::model::netlock::Conn>,
    ),
    /// A lock of the restore's (flock), with the message: held until
    /// the janitor has undone what it was told.
    Lock,
    Done,
}

struct Janitor {
    sock: OwnedFd,
    pid: i32,
}

static JANITOR: Mutex<Option<Janitor>> = Mutex::new(None);

/// Lets the janitor go ([`done`]) when the restore returns, whichever
/// way: only SIGKILL leaves it work to do.
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        done();
    }
}

/// Forks the janitor of this restore. Call before crit starts a thread.
/// Why there is none, if it could not be started.
pub fn start() -> Result<Guard, String> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (mine, its) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    let crit = std::process::id();
    match fork_alone().map_err(|e| e.to_string())? {
        ForkResult::Parent(pid) => {
            drop(its);
            if let Ok(mut j) = JANITOR.lock() {
                *j = Some(Janitor { sock: mine, pid });
            }
            Ok(Guard(()))
        }
        ForkResult::Child => {
            drop(mine);
            serve(its, crit)
        }
    }
}

/// The janitor's pid while it runs.
pub fn pid() -> Option<i32> {
    JANITOR.lock().ok()?.as_ref().map(|j| j.pid)
}

/// The restore needs no janitor any more (the tree runs, or crit's own
/// rollback is done): tells it so and reaps it.
pub fn done() {
    let Some(j) = JANITOR.lock().ok().and_then(|mut j| j.take()) else {
        return;
    };
    let _ = send(&j.sock, &Note::Done, None);
    drop(j.sock);
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(j.pid),
        Some(nix::sys::wait::WaitPidFlag::__WALL),
    );
}

/// A socket file the restore bound.
pub fn note_file(made: &Entry) {
    let (dev, ino) = made.id();
    let name = std::os::unix::ffi::OsStrExt::as_bytes(made.name()).to_vec();
    tell(&Note::File { name, dev, ino }, Some(made.parent()));
}

/// A socket file about to be bound at `at`. Should crit die before it
/// tells [`note_file`], the janitor removes a socket file at that name
/// that no live socket holds.
pub fn note_binding(at: &Path) {
    if let Some((dir, name)) = dir_and_name(at) {
        tell(&Note::Binding { name }, Some(dir.as_fd()));
    }
}

/// What is at `at` is about to be moved aside to `aside`, in the same
/// directory, and back after a bind. Should crit die in between, the
/// janitor moves it back (over a socket file no live socket holds).
pub fn note_aside(at: &Path, aside: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let (Some((dir, name)), Some(aside)) = (dir_and_name(at), aside.file_name()) else {
        return;
    };
    let aside = aside.as_bytes().to_vec();
    tell(&Note::Aside { name, aside }, Some(dir.as_fd()));
}

/// A mountpoint the restore made.
pub fn note_mountpoint(made: &Entry) {
    let (dev, ino) = made.id();
    let name = std::os::unix::ffi::OsStrExt::as_bytes(made.name()).to_vec();
    tell(&Note::Mountpoint { name, dev, ino }, Some(made.parent()));
}

/// A cgroup the restore made.
pub fn note_cgroup_dir(dir: &Path) {
    tell(&Note::CgroupDir(dir.to_path_buf()), None);
}

/// A value the restore wrote into an existing cgroup's `file`, which
/// held `old`.
pub fn note_cgroup_write(file: &Path, old: &str) {
    tell(
        &Note::CgroupWrite {
            file: file.to_path_buf(),
            old: old.to_string(),
        },
        None,
    );
}

/// The tree's live tasks (host pids), once they exist and are held:
/// while crit holds them they die with it, so the janitor knows whether
/// crit had let them go.
pub fn note_tasks(pids: &[u32]) {
    let opened: Vec<(u32, OwnedFd)> = pids
        .iter()
        .filter_map(|&p| Some((p, crate::sys::pidfd::pidfd_open(p as i32).ok()?)))
        .collect();
    let Ok(j) = JANITOR.lock() else {
        return;
    };
    let Some(j) = j.as_ref() else {
        return;
    };
    // As many descriptors a message as the janitor takes.
    for chunk in opened.chunks(16) {
        let Ok(data) = serde_json::to_vec(&Note::Tasks(chunk.iter().map(|t| t.0).collect())) else {
            return;
        };
        let borrowed: Vec<_> = chunk.iter().map(|t| t.1.as_fd()).collect();
        let _ = crate::sys::scm::send(j.sock.as_fd(), &data, &borrowed);
    }
}

/// crit is about to let the tasks go, one by one: from now on, if crit
/// dies before [`done`], the janitor makes the tree whole or nothing.
pub fn releasing() {
    tell(&Note::Releasing, None);
}

/// Copies of the tree's TCP connections (in repair mode). Should crit
/// die, the janitor puts those still out of it back into repair mode
/// before its copies, the last, close: so that no FIN goes out, and the
/// connection stays as the dump left it for the next restore.
pub fn note_connections(fds: &[BorrowedFd]) {
    let Ok(j) = JANITOR.lock() else {
        return;
    };
    let (Some(j), Ok(data)) = (j.as_ref(), serde_json::to_vec(&Note::Connections)) else {
        return;
    };
    for chunk in fds.chunks(16) {
        let _ = crate::sys::scm::send(j.sock.as_fd(), &data, chunk);
    }
}

/// crit is about to lift the lock of `conns` (rules of crit's network
/// namespace): should it die, the janitor locks them again.
pub fn note_unlocking(lock: &crate::model::netlock::Lock, conns: &[crate::model::netlock::Conn]) {
    tell(&Note::Unlocking(lock.clone(), conns.to_vec()), None);
}

/// Shares a lock of the restore (an flock'd descriptor) with the
/// janitor, so that a restore killed keeps the next one waiting until
/// its janitor is done: else that one could make the same mountpoints
/// (found there, not made by it) and see the janitor remove them under
/// its mounts.
pub fn hold(lock: BorrowedFd) {
    let Ok(j) = JANITOR.lock() else {
        return;
    };
    if let (Some(j), Ok(data)) = (j.as_ref(), serde_json::to_vec(&Note::Lock)) {
        let _ = crate::sys::scm::send(j.sock.as_fd(), &data, &[lock]);
    }
}

fn tell(note: &Note, with: Option<BorrowedFd>) {
    if let Ok(j) = JANITOR.lock() {
        if let Some(j) = j.as_ref() {
            let _ = send(&j.sock, note, with);
        }
    }
}

fn send(sock: &OwnedFd, note: &Note, with: Option<BorrowedFd>) -> std::io::Result<()> {
    let data = serde_json::to_vec(note).map_err(std::io::Error::other)?;
    let fds: Vec<_> = with.into_iter().collect();
    crate::sys::scm::send(sock.as_fd(), &data, &fds)
}

/// The directory of `at` (O_PATH) and the name in it.
fn dir_and_name(at: &Path) -> Option<(OwnedFd, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let (dir, name) = (at.parent()?, at.file_name()?);
    let dir = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    Some((dir, name.as_bytes().to_vec()))
}

/// The janitor: collects notes until "done" (exits) or the end of the
/// socket (undoes them, then exits). `crit` is crit's pid. Never returns.
fn serve(sock: OwnedFd, crit: u32) -> ! {
    // Before crit could be gone: if it is already, the pid may be another
    // process's by now, and crit is not our parent any more.
    let crit = crate::sys::pidfd::pidfd_open(crit as i32)
        .ok()
        .filter(|_| nix::unistd::getppid().as_raw() as u32 == crit);
    // Out of crit's session and process group (a signal to the group
    // that kills crit must not take the janitor), holding nothing of
    // crit's but its socket: whoever reads crit's output sees its end
    // when crit ends.
    let _ = nix::unistd::setsid();
    // (If crit ran with stdio closed, a kept descriptor may be one of 0-2.)
    let mut keep: Vec<u32> = [sock.as_fd()]
        .into_iter()
        .chain(crit.as_ref().map(|c| c.as_fd()))
        .map(|fd| std::os::fd::AsRawFd::as_raw_fd(&fd) as u32)
        .collect();
    keep.sort();
    let mut from = 3;
    for &k in keep.iter().filter(|&&k| k >= 3) {
        if k > from {
            let _ = crate::sys::fdops::close_range(from, k - 1);
        }
        from = k + 1;
    }
    let _ = crate::sys::fdops::close_range(from, u32::MAX);
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in (0..3).filter(|fd| !keep.contains(fd)) {
            let _ =
                crate::sys::fdops::dup_to(std::os::fd::AsRawFd::as_raw_fd(&null), fd as i32, false);
        }
    }
    // A pidfd per task of a large tree.
    crate::sys::nofile::raise();
    let mut notes: Vec<(Note, Option<OwnedFd>)> = Vec::new();
    let mut tasks: Vec<(u32, OwnedFd)> = Vec::new();
    let mut releasing = false;
    let mut conns: Vec<OwnedFd> = Vec::new();
    let mut unlocking: Vec<(
        crate::model::netlock::Lock,
        Vec<crate::model::netlock::Conn>,
    )> = Vec::new();
    // Held until the janitor exits.
    let mut _locks: Vec<OwnedFd> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match crate::sys::scm::recv(sock.as_fd(), &mut buf) {
            Ok((0, _)) => break,
            Ok((n, fds)) => match serde_json::from_slice::<Note>(&buf[..n]) {
                Ok(Note::Done) => child_exit(0),
                Ok(Note::Tasks(pids)) => tasks.extend(pids.into_iter().zip(fds)),
                Ok(Note::Releasing) => releasing = true,
                Ok(Note::Connections) => conns.extend(fds),
                Ok(Note::Unlocking(l, c)) => unlocking.push((l, c)),
                Ok(Note::Lock) => _locks.extend(fds),
                Ok(note) => notes.push((note, fds.into_iter().next())),
                Err(_) => {}
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Descriptors cut off (none left to take them): that message
            // is lost, not the others.
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {}
            Err(_) => break,
        }
    }
    if releasing {
        // crit died while it let the tasks go: those it still held die
        // with it, and the others, let go, run. Half a tree is no
        // restore: unless every task runs, all of them end.
        if let Some(c) = &crit {
            end_by(c, Instant::now() + Duration::from_secs(10));
        }
        if some_dying(&tasks) {
            end_all(&tasks);
        } else {
            child_exit(0)
        }
    }
    let until = Instant::now() + Duration::from_secs(10);
    if tasks.iter().all(|(_, t)| end_by(t, until)) {
        // Our copies of the connections are the last: silent when they
        // close, and locked as the dump left them.
        for c in &conns {
            let _ = crate::sys::tcp_repair::set_repair(c.as_fd(), true);
        }
        for (lock, c) in &unlocking {
            let _ = lock.relock(c);
        }
        drop(conns);
        undo(notes);
    }
    child_exit(0)
}

/// Whether the process behind pidfd `p` has ended by `until`. A process
/// ends once all its threads have exited; for crit, each thread that
/// traced tasks has by then sent them their SIGKILL (PTRACE_O_EXITKILL).
fn end_by(p: &OwnedFd, until: Instant) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let ms =
            PollTimeout::try_from(left.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::ZERO);
        let mut fds = [PollFd::new(p.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return true,
        }
    }
}

/// Ends every task and whatever they forked since they were let go: each
/// is stopped first (a stopped task forks no more), its children looked
/// up once it is, and stopped in turn; then all are killed.
fn end_all(tasks: &[(u32, OwnedFd)]) {
    use crate::sys::pidfd::{pidfd_open, pidfd_send_signal};
    let mut seen: std::collections::HashSet<u32> = tasks.iter().map(|t| t.0).collect();
    let mut found: Vec<OwnedFd> = Vec::new();
    let mut look: Vec<u32> = tasks.iter().map(|t| t.0).collect();
    for (_, t) in tasks {
        let _ = pidfd_send_signal(t, libc::SIGSTOP);
    }
    let until = Instant::now() + Duration::from_secs(2);
    while let Some(p) = look.pop() {
        // Once stopped (or gone), its list of children is final.
        while !stopped_or_gone(p) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        for c in crate::sys::procfs::children(p).unwrap_or_default() {
            if seen.insert(c) {
                if let Ok(fd) = pidfd_open(c as i32) {
                    let _ = pidfd_send_signal(&fd, libc::SIGSTOP);
                    found.push(fd);
                    look.push(c);
                }
            }
        }
    }
    for t in tasks.iter().map(|t| &t.1).chain(&found) {
        let _ = pidfd_send_signal(t, libc::SIGKILL);
    }
}

/// Whether every thread of `pid` is stopped, dead or gone.
fn stopped_or_gone(pid: u32) -> bool {
    let Ok(tids) = crate::sys::procfs::tids(pid as i32) else {
        return true;
    };
    tids.iter().all(|&t| {
        crate::sys::procfs::thread_state(pid as i32, t)
            .map_or(true, |s| matches!(s, 'T' | 't' | 'Z' | 'X'))
    })
}

/// Whether a task of the tree is ending (ended, killed or exiting), as
/// the tasks crit still held are once crit has died. Looked at a few
/// times over 50 ms: a task between taking its SIGKILL and exiting
/// shows neither for a moment.
fn some_dying(tasks: &[(u32, OwnedFd)]) -> bool {
    let ended = |t: &OwnedFd| end_by(t, Instant::now());
    for round in 0..5 {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        // A pid read after its task was reaped may name another process,
        // whose "no" the second look at the pidfd overrules.
        let dying = |(pid, t): &(u32, OwnedFd)| {
            ended(t) || crate::sys::procfs::dying(*pid as i32).unwrap_or(true) || ended(t)
        };
        if tasks.iter().any(dying) {
            return true;
        }
    }
    false
}

fn bytes_path(b: &[u8]) -> &Path {
    Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b))
}

/// Removes the socket file `name` in `dir` if no socket is bound to it
/// (a datagram socket's connect is refused). A name too long to reach
/// through /proc/self/fd is reached from the working directory, which is
/// then changed: the janitor's alone.
fn remove_dead_socket(dir: &OwnedFd, name: &[u8]) {
    use nix::sys::socket::UnixAddr;
    use nix::sys::stat::{fstatat, SFlag};
    let name = bytes_path(name);
    let Ok(st) = fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) else {
        return;
    };
    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFSOCK {
        return;
    }
    let via = Path::new("/proc/self/fd")
        .join(std::os::fd::AsRawFd::as_raw_fd(dir).to_string())
        .join(name);
    let addr = match UnixAddr::new(&via) {
        Ok(a) => Ok(a),
        Err(_) => nix::unistd::fchdir(dir).and_then(|()| UnixAddr::new(name)),
    };
    let dead = addr.and_then(|a| super::unix::addr::bound_at(&a)) == Ok(false);
    // Only the file looked at: not one bound there since.
    let same = fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|n| n.st_ino == st.st_ino && n.st_dev == st.st_dev);
    if dead && same {
        let _ = nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    }
}

/// crit's rollback, from the notes: socket files first (also one crit
/// was binding, and what a bind had moved aside), then the values
/// written into cgroups, the cgroups made (children first, once
/// the dying tasks have left them), the mountpoints made (children
/// first).
fn undo(notes: Vec<(Note, Option<OwnedFd>)>) {
    let entry = |fd: Option<OwnedFd>, name: &[u8], dev: u64, ino: u64| {
        let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
        fd.map(|fd| Entry::from_parts(fd, name.to_os_string(), dev, ino))
    };
    let (mut files, mut writes, mut dirs, mut points) = (vec![], vec![], vec![], vec![]);
    let (mut bindings, mut asides) = (vec![], vec![]);
    for (note, fd) in notes {
        match note {
            Note::Binding { name } => bindings.extend(fd.map(|d| (d, name))),
            Note::Aside { name, aside } => asides.extend(fd.map(|d| (d, name, aside))),
            Note::File { name, dev, ino } => files.extend(entry(fd, &name, dev, ino)),
            Note::Mountpoint { name, dev, ino } => points.extend(entry(fd, &name, dev, ino)),
            Note::CgroupDir(d) => dirs.push(d),
            Note::CgroupWrite { file, old } => writes.push((file, old)),
            _ => {}
        }
    }
    for f in &files {
        let _ = f.remove_as();
    }
    // Bound or about to be, when crit died: only a socket file left
    // without its socket goes.
    for (dir, name) in &bindings {
        remove_dead_socket(dir, name);
    }
    for (dir, name, aside) in &asides {
        use nix::fcntl::{renameat2, RenameFlags};
        let here = |n: &[u8]| {
            nix::sys::stat::fstatat(dir, bytes_path(n), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok()
        };
        if here(aside) {
            remove_dead_socket(dir, name);
            let _ = renameat2(
                dir,
                bytes_path(aside),
                dir,
                bytes_path(name),
                RenameFlags::RENAME_NOREPLACE,
            );
        }
    }
    let _ = super::cgroups::undo(super::cgroups::Made {
        dirs: Vec::new(),
        writes,
    });
    // The tasks die with crit, a large one in a while: its cgroup and its
    // mount namespace stay busy until then, and while that namespace
    // lives a mountpoint's directory, reached from it, shows what is
    // mounted there instead of the mountpoint.
    let until = Instant::now() + Duration::from_secs(10);
    let busy = |e: &std::io::Error| e.raw_os_error() == Some(libc::EBUSY);
    for d in dirs.iter().rev() {
        while std::fs::remove_dir(d).is_err_and(|e| busy(&e)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    use nix::errno::Errno;
    for p in points.iter().rev() {
        while matches!(p.remove_as(), Err(Errno::EBUSY | Errno::ESTALE)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_of(p: &Path) -> OwnedFd {
        dir_and_name(&p.join("x")).unwrap().0
    }

    #[test]
    fn a_socket_file_left_without_its_socket_goes_and_a_live_one_stays() {
        let d = tempfile::tempdir().unwrap();
        let (dead, live) = (d.path().join("dead.sock"), d.path().join("live.sock"));
        drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
        let _live = std::os::unix::net::UnixListener::bind(&live).unwrap();
        std::fs::write(d.path().join("plain"), b"x").unwrap();
        let notes = ["dead.sock", "live.sock", "plain", "absent"]
            .into_iter()
            .map(|n| {
                let name = n.as_bytes().to_vec();
                (Note::Binding { name }, Some(dir_of(d.path())))
            })
            .collect();
        undo(notes);
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(d.path().join("plain").exists());
    }

    #[test]
    fn what_was_moved_aside_comes_back_over_a_dead_socket() {
        let d = tempfile::tempdir().unwrap();
        let (at, aside) = (d.path().join("s"), d.path().join("s.crit-aside"));
        std::fs::write(&aside, b"theirs").unwrap();
        drop(std::os::unix::net::UnixListener::bind(&at).unwrap());
        let note = Note::Aside {
            name: b"s".to_vec(),
            aside: b"s.crit-aside".to_vec(),
        };
        undo(vec![(note, Some(dir_of(d.path())))]);
        assert_eq!(std::fs::read(&at).unwrap(), b"theirs");
        assert!(!aside.exists());
    }

    #[test]
    fn ending_a_tree_ends_what_its_tasks_forked() {
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 100 & sleep 100 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(sh.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let child: i32 = line.trim().parse().unwrap();
        let fd = crate::sys::pidfd::pidfd_open(child).unwrap();
        let pid = sh.id();
        end_all(&[(pid, crate::sys::pidfd::pidfd_open(pid as i32).unwrap())]);
        let _ = sh.wait();
        assert!(end_by(&fd, Instant::now() + Duration::from_secs(5)));
    }
}
