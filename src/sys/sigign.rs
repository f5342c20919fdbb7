//! Ignoring the signals a terminal or a supervisor sends, for the dump
//! and pre-dump workers: they must only stop at a point where the tree
//! can be let go.

use nix::sys::signal::{signal, SigHandler, Signal};

const STOP_SIGNALS: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGTSTP,
    Signal::SIGPIPE,
    // A worker runs in a process group of its own: as a background
    // group it would be stopped for writing to a TOSTOP terminal.
    Signal::SIGTTOU,
    Signal::SIGTTIN,
];

/// Sets SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGPIPE, SIGTTOU and
/// SIGTTIN to SIG_IGN in the calling process.
pub fn ignore_stop_signals() -> std::io::Result<()> {
    set_all(SigHandler::SigIgn)
}

/// Gives the same signals their default action again: for a process a
/// worker starts that must not inherit the worker's SIG_IGN (ignored
/// signals stay ignored across exec), such as the keeper of memory
/// trackers, which a TERM is to end.
pub fn default_stop_signals() -> std::io::Result<()> {
    set_all(SigHandler::SigDfl)
}

fn set_all(h: SigHandler) -> std::io::Result<()> {
    for s in STOP_SIGNALS {
        // SAFETY: SIG_IGN and SIG_DFL install no handler code, so nothing
        // can run in signal context; the previous disposition is not used.
        unsafe { signal(s, h) }.map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// Whether `sig` is set to SIG_IGN in this process (as `nohup` or a
/// shell's background job leaves SIGHUP or SIGINT): such a signal is
/// not one the user can send to stop a command.
pub fn is_ignored(sig: Signal) -> bool {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`,
    // which is valid for writing.
    let r = unsafe { libc::sigaction(sig as i32, std::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: sigaction filled `old` when it succeeded.
    r == 0 && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
}
