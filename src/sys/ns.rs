//! Namespaces: a task's namespace files, and work done inside other
//! namespaces on a thread of crit's own.
//!
//! setns() moves only the calling thread into uts, ipc, net, mnt (once
//! the thread has its own fs struct) and cgroup namespaces, so crit does
//! such work on a fresh thread and the rest of crit never leaves its own
//! namespaces.

use super::err;
use nix::sched::CloneFlags;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// /proc/PID/ns/`name`, opened.
pub fn open(pid: i32, name: &str) -> io::Result<OwnedFd> {
    std::fs::File::open(format!("/proc/{pid}/ns/{name}"))
        .map(OwnedFd::from)
        .map_err(|e| io::Error::new(e.kind(), format!("pid {pid}: open ns/{name}: {e}")))
}

/// /proc/PID/task/TID/ns/`name` (one thread's namespace), opened.
pub fn open_task(pid: i32, tid: i32, name: &str) -> io::Result<OwnedFd> {
    std::fs::File::open(format!("/proc/{pid}/task/{tid}/ns/{name}"))
        .map(OwnedFd::from)
        .map_err(|e| io::Error::new(e.kind(), format!("tid {tid}: open ns/{name}: {e}")))
}

/// The kind of the namespace behind `fd`, as its CLONE_NEW* flag
/// (`NS_GET_NSTYPE`, Linux 4.11); an error for a file that is no
/// namespace.
pub fn kind_of(fd: impl AsFd) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703; // _IO(0xb7, 0x3)
                                                 // SAFETY: the ioctl takes no argument and only reads the descriptor.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), NS_GET_NSTYPE) };
    if r < 0 {
        return Err(err::os(
            "ioctl(NS_GET_NSTYPE)",
            io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    Ok(r as u64)
}

/// Moves the calling thread into the namespace behind `fd` (a CLONE_NEW*
/// flag in `flag`). A mount namespace needs the thread's own fs struct:
/// it is unshared first.
pub fn enter(fd: BorrowedFd, flag: u64) -> io::Result<()> {
    let flags = CloneFlags::from_bits_retain(flag as i32);
    if flags.contains(CloneFlags::CLONE_NEWNS) {
        nix::sched::unshare(CloneFlags::CLONE_FS)
            .map_err(|e| err::os("unshare(CLONE_FS)", e as i32))?;
    }
    nix::sched::setns(fd, flags).map_err(|e| err::os(format!("setns({flag:#x})"), e as i32))
}

/// Makes new namespaces (CLONE_NEW* `flags`) for the calling thread; a
/// new time namespace is for its children only.
pub fn unshare(flags: u64) -> io::Result<()> {
    let mut f = CloneFlags::from_bits_retain(flags as i32);
    if f.contains(CloneFlags::CLONE_NEWNS) {
        f |= CloneFlags::CLONE_FS;
    }
    nix::sched::unshare(f).map_err(|e| err::os(format!("unshare({flags:#x})"), e as i32))
}

/// Runs `f` on a new thread that first enters each namespace of `ns`
/// (file, CLONE_NEW* flag). Returns what `f` returns.
pub fn run_in<T: Send>(ns: &[(BorrowedFd, u64)], f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        super::thread::scoped(s, || {
            for (fd, flag) in ns {
                enter(fd.as_fd(), *flag)?;
            }
            Ok(f())
        })?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace worker thread panicked")))
    })
}

/// The calling thread's host and domain names (its uts namespace's).
pub fn uts_names() -> io::Result<(String, String)> {
    let u = nix::sys::utsname::uname().map_err(|e| err::os("uname", e as i32))?;
    Ok((
        u.nodename().to_string_lossy().into_owned(),
        u.domainname().to_string_lossy().into_owned(),
    ))
}

/// Sets the calling thread's host and domain names.
pub fn set_uts_names(node: &str, domain: &str) -> io::Result<()> {
    nix::unistd::sethostname(node).map_err(|e| err::os("sethostname", e as i32))?;
    // SAFETY: the pointer and length describe `domain`'s bytes, which
    // outlive the call; the kernel copies them.
    let r = unsafe { libc::setdomainname(domain.as_ptr().cast(), domain.len()) };
    if r != 0 {
        return Err(err::last("setdomainname"));
    }
    Ok(())
}
