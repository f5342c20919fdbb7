//! Keeping the trackers between `crit pre-dump` and the dump that comes
//! next. Tracking lives as long as a userfaultfd descriptor does, and
//! each crit command is a process of its own: at its end `pre-dump`
//! hands its descriptors to a keeper, a small process of the same binary
//! (`crit __keep-tracking`, detached), which waits on an abstract unix
//! socket named after the images directory (its device and inode). The
//! next `pre-dump` or `dump` with `--prev-images-dir` that directory takes
//! them (SCM_RIGHTS; root or the keeper's own user only) and the keeper
//! exits. It also exits once every tracked task is gone (within a
//! second), and on `drop`. It runs in the directory, which keeps the
//! directory's inode number from going to another directory meanwhile.
//! Killing it ends the tracking (the next dump then says so).
//!
//! Wire: SOCK_SEQPACKET, one message per tracker (pid: i32 LE, start
//! time: u64 LE, whole next time: u8, its descriptor attached), then
//! `end`. Requests: `take`, `drop`.

use super::{Tracker, Trackers};
use crate::dump::error::DumpError;
use crate::error::Result;
use crate::sys::scm;
use nix::sys::socket::{
    bind, connect, getsockopt, listen, socket, socketpair, sockopt, AddressFamily, Backlog,
    SockFlag, SockType, UnixAddr,
};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

const END: &[u8] = b"end";

/// The keeper's name for images directory `dir`.
fn name(dir: &Path) -> std::io::Result<String> {
    let m = std::fs::metadata(dir)?;
    Ok(format!("crit-track:{}:{}", m.dev(), m.ino()))
}

fn err(dir: &Path, what: &'static str, e: impl Into<std::io::Error>) -> crate::error::Error {
    DumpError::FileOp {
        path: dir.to_path_buf(),
        what,
        source: e.into(),
    }
    .into()
}

fn seqpacket() -> std::io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

fn send_all(sock: impl AsFd + Copy, trackers: &Trackers) -> std::io::Result<()> {
    for t in trackers.iter() {
        let mut m = t.pid.to_le_bytes().to_vec();
        m.extend_from_slice(&t.start.to_le_bytes());
        m.push(u8::from(t.is_whole()));
        scm::send(sock, &m, &[t.fd()])?;
    }
    scm::send(sock, END, &[])
}

fn recv_all(sock: impl AsFd + Copy) -> std::io::Result<Trackers> {
    let mut out = Trackers::default();
    let mut buf = [0u8; 64];
    loop {
        let (n, mut fds) = scm::recv(sock, &mut buf)?;
        if &buf[..n] == END {
            return Ok(out);
        }
        let fd = fds.pop().filter(|_| n == 13).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "bad tracker message")
        })?;
        let pid = i32::from_le_bytes(buf[0..4].try_into().unwrap_or_default());
        let start = u64::from_le_bytes(buf[4..12].try_into().unwrap_or_default());
        match Tracker::adopt(pid, start, fd) {
            Ok(t) => {
                t.set_whole(buf[12] != 0);
                out.insert(t)
            }
            // The task exited since (a short-lived child): nothing to
            // track. A zombie not yet reaped says ESRCH, not ENOENT; it
            // must not cost the trackers of the live tasks.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Hands `trackers` to a new keeper for `dir` (see the module docs).
pub fn hand_off(dir: &Path, trackers: &Trackers) -> Result<()> {
    if trackers.is_empty() {
        return Ok(());
    }
    let n = name(dir).map_err(|e| err(dir, "keeping the memory trackers", e))?;
    let (mine, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| err(dir, "keeping the memory trackers: socketpair", e))?;
    let exe = std::env::current_exe().map_err(|e| err(dir, "finding the crit binary", e))?;
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new(exe)
        .arg("__keep-tracking")
        .arg(&n)
        .stdin(std::process::Stdio::from(theirs))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        // Its working directory holds the directory's inode while it
        // lives: once the directory is removed, a new one cannot get the
        // same device and inode, and so this keeper's name.
        .current_dir(dir)
        .spawn()
        .map_err(|e| err(dir, "starting the keeper of the memory trackers", e))?;
    let ready = send_all(&mine, trackers).and_then(|_| {
        let mut b = [0u8; 256];
        let (k, _) = scm::recv(&mine, &mut b)?;
        match &b[..k] {
            b"ok" => Ok(()),
            m => Err(std::io::Error::other(
                String::from_utf8_lossy(m).into_owned(),
            )),
        }
    });
    if let Err(e) = ready {
        let _ = child.kill();
        let _ = child.wait();
        return Err(err(dir, "starting the keeper of the memory trackers", e));
    }
    // The keeper runs on alone (its own process group); it is reaped by
    // init once this process is gone.
    Ok(())
}

/// How long a keeper may take to answer.
const ANSWER: Duration = Duration::from_secs(10);

/// Connects to the keeper named `n`, if there is one. Anyone may bind an
/// abstract name: a listener that is neither root nor this user is
/// refused, and one that does not answer in time is given up on.
fn connect_to(n: &str) -> std::io::Result<Option<OwnedFd>> {
    let s = seqpacket()?;
    let addr = UnixAddr::new_abstract(n.as_bytes())?;
    match connect(s.as_raw_fd(), &addr) {
        Ok(()) => {}
        Err(nix::errno::Errno::ECONNREFUSED) | Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let uid = getsockopt(&s, sockopt::PeerCredentials)?.uid();
    let me = nix::unistd::geteuid().as_raw();
    if uid != 0 && uid != me {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("@{n} is held by uid {uid}, not by a keeper of crit's"),
        ));
    }
    let t = nix::sys::time::TimeVal::new(ANSWER.as_secs() as i64, 0);
    nix::sys::socket::setsockopt(&s, sockopt::ReceiveTimeout, &t)?;
    Ok(Some(s))
}

/// Takes the trackers kept for `dir`; None when no keeper has them.
pub fn take(dir: &Path) -> Result<Option<Trackers>> {
    let n = name(dir).map_err(|e| err(dir, "previous images", e))?;
    let Some(s) = connect_to(&n).map_err(|e| err(dir, "asking for the memory trackers", e))? else {
        return Ok(None);
    };
    scm::send(&s, b"take", &[]).map_err(|e| err(dir, "asking for the memory trackers", e))?;
    let t = recv_all(&s).map_err(|e| err(dir, "taking the memory trackers", e))?;
    Ok(Some(t))
}

/// Ends the keeper of `dir` if there is one (its trackers are dropped).
pub fn drop_kept(dir: &Path) {
    if let Ok(Some(s)) = name(dir).and_then(|n| connect_to(&n)) {
        let _ = scm::send(&s, b"drop", &[]);
        let mut b = [0u8; 8];
        let _ = scm::recv(&s, &mut b);
    }
}

/// The keeper itself (`crit __keep-tracking NAME`): its stdin is the
/// socket its trackers come on. Returns the exit status.
pub fn serve(n: &str) -> i32 {
    // A worker that started it ignores TERM and INT (see guard); the
    // keeper is ended by them.
    if crate::sys::sigign::default_stop_signals().is_err() {
        return 1;
    }
    let stdin = std::io::stdin();
    let parent = stdin.as_fd();
    let trackers = match recv_all(parent) {
        Ok(t) => t,
        Err(_) => return 1,
    };
    let listener = match listen_on(n) {
        Ok(l) => l,
        Err(e) => {
            let _ = scm::send(parent, format!("binding {n}: {e}").as_bytes(), &[]);
            return 1;
        }
    };
    if scm::send(parent, b"ok", &[]).is_err() {
        return 1;
    }
    let me = nix::unistd::geteuid().as_raw();
    loop {
        let alive = trackers
            .iter()
            .any(|t| crate::dump::procfs::start_time(t.pid) == Some(t.start));
        if !alive {
            return 0;
        }
        let c = match crate::sys::sock::accept_wait(listener.as_raw_fd(), Duration::from_secs(1)) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(_) => return 1,
        };
        let uid = getsockopt(&c, sockopt::PeerCredentials).map(|c| c.uid());
        if !matches!(uid, Ok(u) if u == 0 || u == me) {
            continue;
        }
        let mut b = [0u8; 16];
        match scm::recv(&c, &mut b) {
            Ok((4, _)) if &b[..4] == b"take" => {
                return i32::from(send_all(&c, &trackers).is_err());
            }
            Ok((4, _)) if &b[..4] == b"drop" => {
                let _ = scm::send(&c, b"ok", &[]);
                return 0;
            }
            _ => continue,
        }
    }
}

/// Binds and listens on the abstract name `n`; a keeper left from an
/// earlier pre-dump into the same directory is told to go first.
fn listen_on(n: &str) -> std::io::Result<OwnedFd> {
    let addr = UnixAddr::new_abstract(n.as_bytes())?;
    for _ in 0..2 {
        let s = seqpacket()?;
        match bind(s.as_raw_fd(), &addr) {
            Ok(()) => {
                listen(&s, Backlog::new(8)?)?;
                return Ok(s);
            }
            Err(nix::errno::Errno::EADDRINUSE) => {
                if let Some(old) = connect_to(n)? {
                    let _ = scm::send(&old, b"drop", &[]);
                    let mut b = [0u8; 8];
                    let _ = scm::recv(&old, &mut b);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(std::io::Error::from_raw_os_error(libc::EADDRINUSE))
}
