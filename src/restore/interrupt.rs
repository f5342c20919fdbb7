//! Ctrl-C, SIGTERM, SIGHUP and SIGQUIT during a restore: blocked from the
//! start (every thread crit makes, and every task it forks until its
//! dumped signal mask is set, inherits that) and looked for at the
//! restore's checkpoints, so that a restore asked to stop fails there
//! and its rollback kills what it made and removes the files it bound,
//! instead of crit dying with the tree half made. Once the tree runs the
//! signals are let through again (one that came after the last check is
//! reported, not acted on). SIGKILL cannot be caught: a restore
//! killed so leaves its tasks to die with it (PR_SET_PDEATHSIG) but not
//! the socket files it bound.

use super::error::SetupError;
use crate::error::Result;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

const SIGNALS: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

pub struct Interrupts {
    fd: SignalFd,
    mask: SigSet,
}

fn set() -> SigSet {
    let mut m = SigSet::empty();
    for s in SIGNALS {
        m.add(s);
    }
    m
}

impl Interrupts {
    /// Blocks the signals in the calling thread (before it starts any
    /// other) and opens a descriptor that tells whether one came.
    pub fn block() -> Result<Interrupts> {
        let mask = set();
        let fail = |e: nix::Error| SetupError::Own {
            what: "blocking SIGINT and SIGTERM for the restore",
            source: e,
        };
        mask.thread_block().map_err(fail)?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(fail)?;
        Ok(Interrupts { fd, mask })
    }

    /// Fails if one of the signals came since the restore began.
    pub fn check(&self) -> Result<()> {
        match self.fd.read_signal() {
            Ok(Some(info)) => {
                let name = Signal::try_from(info.ssi_signo as i32)
                    .map_or_else(|_| info.ssi_signo.to_string(), |s| s.as_str().to_string());
                Err(SetupError::Interrupted { signal: name }.into())
            }
            _ => Ok(()),
        }
    }

    /// Lets the signals through again (their default action: the tree
    /// runs by then). One that came after the last check is taken here
    /// and returned, not acted on: the restore is done, and dying of it
    /// now would report a restored tree as a failure.
    pub fn release(self) -> Option<String> {
        let mut late = None;
        while let Ok(Some(info)) = self.fd.read_signal() {
            late = Some(
                Signal::try_from(info.ssi_signo as i32)
                    .map_or_else(|_| info.ssi_signo.to_string(), |s| s.as_str().to_string()),
            );
        }
        let _ = self.mask.thread_unblock();
        late
    }
}
