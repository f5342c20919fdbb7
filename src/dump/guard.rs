//! Surviving the death of `crit dump` itself. The CLI runs the dump in a
//! worker process (the same binary, with a hidden `--worker PPID,FD`
//! option) and waits for it. The worker holds the reading end of a pipe
//! whose writing end only `crit dump` has, and looks at it at every
//! checkpoint (between injected calls, tasks, page batches and images):
//! if `crit dump` is gone (even by SIGKILL) the pipe reads end-of-file,
//! and the worker stops, removes its images and resumes the tree: the
//! tree never stays frozen or half-injected because crit was killed.
//!
//! SIGINT, SIGTERM, SIGHUP and SIGQUIT to `crit dump` (Ctrl-C on the
//! terminal, a supervisor's TERM) are caught: `crit dump` writes the
//! signal's number into the pipe, the worker stops the same way at its
//! next checkpoint, and `crit dump` returns only once the worker has let
//! the tree go (exit status 1, the worker naming the signal), so that
//! the next command of a script finds the tree running. The worker
//! itself ignores those signals and SIGTSTP.
//!
//! The worker runs in a process group of its own, so a signal to the
//! group of `crit dump` (a SIGKILL to the job, a supervisor killing a
//! process group) reaches only `crit dump`, and the worker lets the tree
//! go as above. Killing the worker itself (SIGKILL to its pid, or to
//! every process of a cgroup) is the one case this cannot cover: the
//! kernel releases its tracees at once, and a thread caught between an
//! injected call's setup and its end resumes with the injection's
//! registers and signal mask (it may die). `crit dump` then says so, with
//! the state of the tree, and removes what the worker wrote.

use super::error::DumpError;
use crate::error::Result;
use nix::sys::signal::{SigSet, Signal};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

/// What the hidden `--worker` option carries: the pid of the `crit dump`
/// that waits, and the descriptor of the pipe it signals through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerOf {
    pub parent: i32,
    pub cancel_fd: i32,
}

impl std::str::FromStr for WorkerOf {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("{s:?}: expected PPID,FD");
        let (p, f) = s.split_once(',').ok_or_else(bad)?;
        Ok(WorkerOf {
            parent: p.parse().map_err(|_| bad())?,
            cancel_fd: f.parse().map_err(|_| bad())?,
        })
    }
}

static PARENT: AtomicI32 = AtomicI32::new(0);
static CANCEL_FD: AtomicI32 = AtomicI32::new(-1);
/// The parent's command ("crit dump", "crit pre-dump"), for messages.
static COMMAND: OnceLock<&'static str> = OnceLock::new();
/// Why the worker stops, once known: `None` when `crit dump` is gone,
/// else the signal it was asked to stop by. Kept, so that every later
/// checkpoint (of any thread) fails the same way.
static STOPPED: OnceLock<Option<String>> = OnceLock::new();

/// Marks this process as the worker of `w.parent`, running `command`.
pub fn set_parent(w: WorkerOf, command: &'static str) {
    let _ = COMMAND.set(command);
    // Not for the processes the worker starts (action scripts, keeper).
    let _ = crate::sys::fdops::set_cloexec(w.cancel_fd, true);
    CANCEL_FD.store(w.cancel_fd, Ordering::Relaxed);
    PARENT.store(w.parent, Ordering::Relaxed);
}

/// Fails once the `crit dump` process that started this worker is gone
/// or has asked it to stop.
pub fn check() -> Result<()> {
    let p = PARENT.load(Ordering::Relaxed);
    if p == 0 {
        return Ok(());
    }
    let command = COMMAND.get().copied().unwrap_or("crit dump");
    let why = match STOPPED.get() {
        Some(w) => w,
        None => match asked_to_stop(CANCEL_FD.load(Ordering::Relaxed)) {
            Some(w) => STOPPED.get_or_init(|| w),
            None => return Ok(()),
        },
    };
    Err(match why {
        None => DumpError::Cancelled { command, parent: p },
        Some(signal) => DumpError::Interrupted {
            command,
            signal: signal.clone(),
        },
    }
    .into())
}

/// Looks at the pipe from `crit dump` without waiting: `Some(None)` if
/// it is closed (`crit dump` is gone), `Some(Some(signal))` if it sent a
/// signal's number, `None` if nothing came.
fn asked_to_stop(fd: i32) -> Option<Option<String>> {
    let mut b = [0u8; 1];
    match crate::sys::fdops::read_ready(fd, &mut b) {
        Ok(None) => None,
        Ok(Some(0)) | Err(_) => Some(None),
        Ok(Some(_)) => Some(Some(signal_name(i32::from(b[0])))),
    }
}

fn signal_name(n: i32) -> String {
    Signal::try_from(n).map_or_else(|_| format!("signal {n}"), |s| s.as_str().to_string())
}

/// The signals `crit dump` passes on to its worker instead of dying:
/// those it was not started ignoring (a blocked signal is queued even
/// when ignored, so `nohup crit dump` would otherwise stop at a hangup).
fn interrupts() -> SigSet {
    let mut m = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        if !crate::sys::sigign::is_ignored(s) {
            m.add(s);
        }
    }
    m
}

/// Runs the dump in a worker process and returns its exit status: what
/// the CLI does. `args` are the dump's own command-line arguments
/// (`what`: "dump" or "pre-dump", for messages), `pid` the tree's root
/// and `dir` the images directory.
pub fn run_in_worker(args: &[String], what: &str, pid: i32, dir: &std::path::Path) -> i32 {
    match spawn_and_wait(args, what, pid, dir) {
        Ok(code) => code,
        Err(msg) => {
            crate::detach::say(&format!("crit: {msg}"));
            1
        }
    }
}

fn spawn_and_wait(
    args: &[String],
    what: &str,
    pid: i32,
    dir: &std::path::Path,
) -> std::result::Result<i32, String> {
    let dir_existed = dir.exists();
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the crit binary to run the {what}: {e}"))?;
    let (cancel_r, cancel_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot make the pipe to the {what} worker: {e}"))?;
    // Blocked before the worker exists, so that none is lost; the worker
    // starts with no signal blocked (the standard library's spawn clears
    // the mask).
    let signals = interrupts();
    let sigfd = signals
        .thread_block()
        .and_then(|()| {
            nix::sys::signalfd::SignalFd::with_flags(
                &signals,
                nix::sys::signalfd::SfdFlags::SFD_NONBLOCK
                    | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
            )
        })
        .map_err(|e| format!("cannot catch SIGINT and SIGTERM for the {what}: {e}"))?;
    // This process starts nothing else meanwhile: the reading end is
    // inheritable only for the spawn.
    crate::sys::fdops::set_cloexec(cancel_r.as_raw_fd(), false)
        .map_err(|e| format!("cannot pass the pipe to the {what} worker: {e}"))?;
    let me = std::process::id();
    // A process group of its own: a signal to `crit dump`'s group (kill
    // -9 -PGID, a supervisor's group kill) ends `crit dump`, and the
    // worker, which it does not reach, lets the tree go at its next
    // checkpoint instead of dying between injected calls.
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new(exe)
        .args(args)
        .arg("--worker")
        .arg(format!("{me},{}", cancel_r.as_raw_fd()))
        .process_group(0)
        .spawn();
    drop(cancel_r);
    let mut child = child.map_err(|e| format!("cannot start the {what} worker: {e}"))?;
    let signal = wait_passing_signals(&mut child, &sigfd, &cancel_w);
    let st = child
        .wait()
        .map_err(|e| format!("waiting for the {what} worker: {e}"))?;
    match st.code() {
        Some(0) => {
            if let Some(s) = signal {
                crate::detach::say(&format!(
                    "crit: {s} came when the {what} was done; the images are kept"
                ));
            }
            Ok(0)
        }
        Some(code) => Ok(code),
        None => {
            worker_killed(&st, what, pid, dir, dir_existed);
            Ok(1)
        }
    }
}

/// Waits until the worker `child` ends. A SIGINT, SIGTERM, SIGHUP or
/// SIGQUIT meanwhile is written into the pipe (`cancel`) for the worker
/// to stop at its next checkpoint; returns the name of the first one.
fn wait_passing_signals(
    child: &mut std::process::Child,
    sigfd: &nix::sys::signalfd::SignalFd,
    cancel: &OwnedFd,
) -> Option<String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut first = None;
    let Ok(pidfd) = crate::sys::pidfd::pidfd_open(child.id() as i32) else {
        // No pidfd: wait without passing signals on (they stay blocked;
        // the worker still stops if this process is killed).
        return None;
    };
    loop {
        let mut fds = [
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return first,
            Ok(_) => {}
        }
        let exited = fds[0].any().unwrap_or(true);
        while let Ok(Some(info)) = sigfd.read_signal() {
            let n = info.ssi_signo as i32;
            first.get_or_insert_with(|| signal_name(n));
            // The worker may be past its last checkpoint: then it
            // finishes, and nothing reads this.
            let _ = crate::sys::fdops::write_fd(cancel.as_raw_fd(), &[n as u8]);
        }
        if exited {
            return first;
        }
    }
}

/// The worker died by a signal: say so, and what became of the tree, and
/// remove what it wrote (it refuses a directory holding images, so every
/// image there is its own).
fn worker_killed(
    st: &std::process::ExitStatus,
    what: &str,
    pid: i32,
    dir: &std::path::Path,
    dir_existed: bool,
) {
    use std::os::unix::process::ExitStatusExt;
    let sig = st
        .signal()
        .and_then(|n| nix::sys::signal::Signal::try_from(n).ok())
        .map_or_else(|| "a signal".to_string(), |s| s.as_str().to_string());
    // A thread released mid-injection dies at once, if at all.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let tree = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s)
            if s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z')) =>
        {
            "has exited".to_string()
        }
        Ok(_) => "was released by the kernel and runs".to_string(),
        Err(_) => "is gone".to_string(),
    };
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n == super::precopy::ROUNDS {
                let _ = std::fs::remove_dir_all(e.path());
            } else if n.ends_with(".img") || n == "stats-dump" || n.starts_with(".crit-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if !dir_existed {
        let _ = std::fs::remove_dir(dir);
    }
    crate::detach::say(&format!(
        "crit: the {what} worker was killed by {sig}; no images were kept; the tree of pid {pid} {tree}"
    ));
}
