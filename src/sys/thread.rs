//! Starting threads without a panic: the standard library's `spawn`
//! panics when the kernel refuses a thread (EAGAIN under a cgroup's
//! pids limit or RLIMIT_NPROC, which a container's restore may run
//! under). These return the refusal as an error instead.

use std::io;
use std::thread::{Builder, JoinHandle, Scope, ScopedJoinHandle};

const WHAT: &str = "starting a thread (a pids limit of the cgroup, or RLIMIT_NPROC?)";

fn refused(e: io::Error) -> io::Error {
    super::err::os(WHAT, super::err::errno_of(&e).unwrap_or(libc::EAGAIN))
}

/// `std::thread::spawn`, failing instead of panicking.
pub fn spawn<F, T>(f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().spawn(f).map_err(refused)
}

/// `Scope::spawn`, failing instead of panicking.
pub fn scoped<'scope, 'env, F, T>(
    s: &'scope Scope<'scope, 'env>,
    f: F,
) -> io::Result<ScopedJoinHandle<'scope, T>>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    Builder::new().spawn_scoped(s, f).map_err(refused)
}
