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
