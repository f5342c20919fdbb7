//! Surviving the death of `crit dump` itself. The CLI runs the dump in a
//! worker process (the same binary, with a hidden `--worker PPID` option)
//! and waits for it. If the visible `crit dump` process is killed (even by
//! SIGKILL), the worker notices at its next checkpoint (between injected
//! calls, tasks, page batches and images), stops, removes its images and
//! resumes the tree: the tree never stays frozen or half-injected because
//! crit was killed. The worker ignores SIGINT, SIGTERM, SIGHUP, SIGQUIT
//! and SIGTSTP, so Ctrl-C on the terminal (which signals the whole job)
//! stops it the same way. (Killing the worker itself with SIGKILL in the middle
//! of an injected call is the one case this cannot cover.)

use super::error::DumpError;
use crate::error::Result;
use std::sync::atomic::{AtomicI32, Ordering};

static PARENT: AtomicI32 = AtomicI32::new(0);

/// Marks this process as the worker of `parent`.
pub fn set_parent(parent: i32) {
    PARENT.store(parent, Ordering::Relaxed);
}

/// Fails once the `crit dump` process that started this worker is gone.
pub fn check() -> Result<()> {
    let p = PARENT.load(Ordering::Relaxed);
    if p != 0 && nix::unistd::getppid().as_raw() != p {
        return Err(DumpError::Cancelled { parent: p }.into());
    }
    Ok(())
}

/// Runs the dump in a worker process and returns its exit status: what
/// the CLI does. `args` are the dump's own command-line arguments.
pub fn run_in_worker(args: &[String]) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("crit: cannot find the crit binary to run the dump: {e}");
            return 1;
        }
    };
    let me = std::process::id().to_string();
    let st = std::process::Command::new(exe)
        .args(args)
        .arg("--worker")
        .arg(&me)
        .status();
    match st {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("crit: cannot start the dump worker: {e}");
            1
        }
    }
}
