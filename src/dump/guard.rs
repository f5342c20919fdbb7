//! Surviving the death of `crit dump` itself. The CLI runs the dump in a
//! worker process (the same binary, with a hidden `--worker PPID` option)
//! and waits for it. If the visible `crit dump` process is killed (even by
//! SIGKILL), the worker notices at its next checkpoint (between injected
//! calls, tasks, page batches and images), stops, removes its images and
//! resumes the tree: the tree never stays frozen or half-injected because
//! crit was killed. The worker ignores SIGINT, SIGTERM, SIGHUP, SIGQUIT
//! and SIGTSTP, so Ctrl-C on the terminal (which signals the whole job)
//! stops it the same way.
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
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

static PARENT: AtomicI32 = AtomicI32::new(0);
/// The parent's command ("crit dump", "crit pre-dump"), for messages.
static COMMAND: OnceLock<&'static str> = OnceLock::new();

/// Marks this process as the worker of `parent`, running `command`.
pub fn set_parent(parent: i32, command: &'static str) {
    let _ = COMMAND.set(command);
    PARENT.store(parent, Ordering::Relaxed);
}

/// Fails once the `crit dump` process that started this worker is gone.
pub fn check() -> Result<()> {
    let p = PARENT.load(Ordering::Relaxed);
    if p != 0 && nix::unistd::getppid().as_raw() != p {
        return Err(DumpError::Cancelled {
            command: COMMAND.get().copied().unwrap_or("crit dump"),
            parent: p,
        }
        .into());
    }
    Ok(())
}

/// Runs the dump in a worker process and returns its exit status: what
/// the CLI does. `args` are the dump's own command-line arguments
/// (`what`: "dump" or "pre-dump", for messages), `pid` the tree's root
/// and `dir` the images directory.
pub fn run_in_worker(args: &[String], what: &str, pid: i32, dir: &std::path::Path) -> i32 {
    let dir_existed = dir.exists();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            crate::detach::say(&format!(
                "crit: cannot find the crit binary to run the dump: {e}"
            ));
            return 1;
        }
    };
    let me = std::process::id().to_string();
    // A process group of its own: a signal to `crit dump`'s group (kill
    // -9 -PGID, a supervisor's group kill) ends `crit dump`, and the
    // worker, which it does not reach, lets the tree go at its next
    // checkpoint instead of dying between injected calls.
    use std::os::unix::process::CommandExt;
    let st = std::process::Command::new(exe)
        .args(args)
        .arg("--worker")
        .arg(&me)
        .process_group(0)
        .status();
    match st {
        Ok(s) => match s.code() {
            Some(code) => code,
            None => {
                worker_killed(&s, what, pid, dir, dir_existed);
                1
            }
        },
        Err(e) => {
            crate::detach::say(&format!("crit: cannot start the {what} worker: {e}"));
            1
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
