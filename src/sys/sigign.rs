//! Ignoring the signals a terminal or a supervisor sends, for the dump
//! worker: it must only stop at a point where the tree can be let go.

use nix::sys::signal::{signal, SigHandler, Signal};

/// Sets SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP and SIGPIPE to
/// SIG_IGN in the calling process.
pub fn ignore_stop_signals() -> std::io::Result<()> {
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGTSTP,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code, so nothing can run in
        // signal context; the previous disposition is not used.
        unsafe { signal(s, SigHandler::SigIgn) }.map_err(std::io::Error::from)?;
    }
    Ok(())
}
