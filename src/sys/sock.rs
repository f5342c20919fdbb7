//! Socket calls whose std/nix forms hand back raw descriptors.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// `accept4(fd, NULL, NULL, SOCK_CLOEXEC)` as an owned descriptor.
pub fn accept(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: accept4 with null address pointers writes no memory; the
    // returned descriptor is new and owned by nobody else.
    let r = unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// A copy of fd `fd` that a child process inherits (no close-on-exec),
/// numbered 10 or above.
pub fn dup_inheritable(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD creates a new descriptor we own; the source is
    // only read.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD, 10) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is fresh and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Takes fd number `fd`, handed to this process on its command line
/// (`--notify-fd`), as its own, and marks it close-on-exec so that no
/// program crit starts keeps it open.
pub fn take_handed(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_SETFD only changes the flag of an fd number (EBADF if it
    // is not open); nothing is read or written through it.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the number is open (above) and the command line gave it to
    // this process to own; nothing else in crit refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new owned copy of an fd number the caller was handed (`--inherit-fd`).
pub fn dup_raw(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor we own; the source
    // is only read.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is fresh and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// The inode number of the socket or file behind `fd`.
pub fn inode_of(fd: RawFd) -> io::Result<u64> {
    let p = format!("/proc/self/fd/{fd}");
    let m = std::fs::metadata(p)?;
    Ok(std::os::unix::fs::MetadataExt::ino(&m))
}

/// `listen(fd, backlog)` on an fd number the caller holds. On a socket
/// that already listens it only sets the backlog and takes the caller's
/// credentials for later clients (SO_PEERCRED).
pub fn listen_raw(fd: RawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: listen takes two integers and touches no memory of ours.
    if unsafe { libc::listen(fd, backlog) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits up to `timeout` for a connection on listener `fd` and accepts it
/// (close-on-exec); `None` if none came.
pub fn accept_wait(fd: RawFd, timeout: std::time::Duration) -> io::Result<Option<OwnedFd>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes exactly the one pollfd passed.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(None);
        }
        match accept(fd) {
            Ok(s) => return Ok(Some(s)),
            // Another holder of the listener took it first.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A new AF_PACKET socket of `ty` for `proto` (in network order, as
/// `socket(2)` takes it), close-on-exec.
pub fn packet_socket(ty: i32, proto: u16) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before it is owned.
    let fd = unsafe { libc::socket(libc::AF_PACKET, ty | libc::SOCK_CLOEXEC, i32::from(proto)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Binds packet socket `fd` to interface `ifindex` (0: every one),
/// keeping its protocol.
pub fn bind_packet(fd: RawFd, ifindex: i32) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_ll is valid.
    let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_ifindex = ifindex;
    // SAFETY: `a` is a live sockaddr_ll of the size passed.
    let r = unsafe {
        libc::bind(
            fd,
            &a as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new close-on-exec socket of `family`, `ty` and `proto` (any
/// protocol number: nix names only some).
pub fn socket(family: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before it is owned.
    let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
