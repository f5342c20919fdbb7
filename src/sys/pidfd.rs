//! Process file descriptors.
//!
//! A pidfd names one process for good: unlike a pid it cannot be recycled
//! under us. [`pidfd_getfd`] duplicates a file descriptor of another
//! process into ours — the dump reads sockets, pipes and files this way
//! without any code running in the target.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use libc::c_long;

use super::err;

/// `pidfd_open(pid, 0)`: a close-on-exec pidfd for process `pid` (a
/// thread-group leader).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    pidfd_open_flags(pid, 0)
}

/// `pidfd_open(pid, flags)` (`flags`: 0 or PIDFD_NONBLOCK); close-on-exec.
fn pidfd_open_flags(pid: i32, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as c_long, flags as c_long) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(match flags {
            0 => err::context(format_args!("pidfd_open pid {pid}"), e),
            _ => err::context(format_args!("pidfd_open pid {pid} flags {flags:#o}"), e),
        });
    }
    // SAFETY: the kernel just returned this new descriptor; nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Pidfds of a process that has exited and been reaped, as a pidfd is
/// once its process is gone: one per entry of `flags` (pidfd_open's
/// flags), all naming the same process, close-on-exec. The process is a
/// child forked for the purpose, opened before it is reaped.
pub fn pidfds_of_reaped(flags: &[u32]) -> io::Result<Vec<OwnedFd>> {
    let pid = super::clone::fork_exiting()?;
    let fds: io::Result<Vec<OwnedFd>> = flags.iter().map(|&f| pidfd_open_flags(pid, f)).collect();
    // Reaped whatever happened: no zombie is left behind.
    let reaped = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
        .map_err(|e| err::os(format_args!("wait for pid {pid}"), e as i32));
    let fds = fds?;
    reaped?;
    Ok(fds)
}

/// `pidfd_getfd(pidfd, targetfd, 0)`: a copy, in our process, of the
/// target's descriptor `targetfd` (same open file description: shared
/// offset, status flags, socket). The copy is close-on-exec. Needs
/// ptrace-attach permission over the target; the target need not be
/// stopped.
pub fn pidfd_getfd(pidfd: impl AsFd, targetfd: i32) -> io::Result<OwnedFd> {
    let p = pidfd.as_fd().as_raw_fd();
    // SAFETY: pidfd_getfd takes three integers and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            p as c_long,
            targetfd as c_long,
            0 as c_long,
        )
    };
    if r < 0 {
        return Err(err::last(format_args!(
            "pidfd_getfd fd {targetfd} (pidfd {p})"
        )));
    }
    // SAFETY: the kernel just installed this new descriptor for us.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// [`pidfd_open`] + [`pidfd_getfd`]: a copy of fd `targetfd` of `pid`.
pub fn getfd(pid: i32, targetfd: i32) -> io::Result<OwnedFd> {
    let p = pidfd_open(pid)?;
    pidfd_getfd(&p, targetfd).map_err(|e| err::context(format_args!("pid {pid}"), e))
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`: like `kill` for the process
/// the pidfd names (never for a recycled pid).
pub fn pidfd_send_signal(pidfd: impl AsFd, sig: i32) -> io::Result<()> {
    let p = pidfd.as_fd().as_raw_fd();
    // SAFETY: a NULL siginfo is allowed; the rest are integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            p as c_long,
            sig as c_long,
            std::ptr::null::<libc::siginfo_t>(),
            0 as c_long,
        )
    };
    if r < 0 {
        return Err(err::last(format_args!(
            "pidfd_send_signal {sig} (pidfd {p})"
        )));
    }
    Ok(())
}

/// `process_mrelease(pidfd, 0)`: frees the memory of a process that is
/// dying of SIGKILL in the caller's context, alongside its own exit.
/// ESRCH once the process has let go of its memory itself.
pub fn process_mrelease(pidfd: impl AsFd) -> io::Result<()> {
    let p = pidfd.as_fd().as_raw_fd();
    // SAFETY: process_mrelease takes two integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_process_mrelease, p as c_long, 0 as c_long) };
    if r < 0 {
        return Err(err::last(format_args!("process_mrelease (pidfd {p})")));
    }
    Ok(())
}
