//! Errors of the kernel layer.
//!
//! Every failing call in `crate::sys` returns a `std::io::Error` whose
//! message names the operation and the pid/tid concerned (e.g.
//! `PTRACE_SEIZE tid 4242: Operation not permitted (os error 1)`), and
//! whose `kind()` is the one of the underlying errno. The errno itself is
//! kept: [`errno_of`] returns it, so callers can still match on, say,
//! `ESRCH` or `EEXIST`.

use std::fmt;
use std::io;

/// The payload of an `io::Error` made by this module: a message plus the
/// errno it came from.
#[derive(Debug)]
pub struct SysError {
    /// The errno reported by the kernel (positive, e.g. `libc::ESRCH`).
    pub errno: i32,
    msg: String,
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for SysError {}

/// The errno behind an error from `crate::sys` (or any OS error), if any.
pub fn errno_of(e: &io::Error) -> Option<i32> {
    if let Some(n) = e.raw_os_error() {
        return Some(n);
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<SysError>())
        .map(|s| s.errno)
}

/// An error for `errno`, with `what` (which names the call and pid/tid)
/// in front of the system's description.
pub(crate) fn os(what: impl fmt::Display, errno: i32) -> io::Error {
    let base = io::Error::from_raw_os_error(errno);
    io::Error::new(
        base.kind(),
        SysError {
            errno,
            msg: format!("{what}: {base}"),
        },
    )
}

/// The current thread's errno as an error about `what`.
pub(crate) fn last(what: impl fmt::Display) -> io::Error {
    let errno = io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO);
    os(what, errno)
}

/// An error that has no errno (a protocol surprise, a refusal).
pub(crate) fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Adds context to an error while keeping its kind and errno.
pub(crate) fn context(what: impl fmt::Display, e: io::Error) -> io::Error {
    match errno_of(&e) {
        Some(n) => io::Error::new(
            e.kind(),
            SysError {
                errno: n,
                msg: format!("{what}: {e}"),
            },
        ),
        None => io::Error::new(e.kind(), format!("{what}: {e}")),
    }
}
