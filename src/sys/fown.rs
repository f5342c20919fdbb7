//! The owner of an open file (F_GETOWN_EX, F_GETOWNER_UIDS, F_GETSIG):
//! who gets SIGIO/SIGURG for it, read through any descriptor of it.

use nix::libc;
use std::os::fd::{AsRawFd, BorrowedFd};

const F_GETOWN_EX: libc::c_int = 16;
const F_GETOWNER_UIDS: libc::c_int = 17;
const F_GETSIG: libc::c_int = 11;

/// The owner of an open file: pid (0 if none), its type (F_OWNER_TID = 0,
/// F_OWNER_PID = 1, F_OWNER_PGRP = 2), the uid and euid it was set with,
/// and the signal sent (0: SIGIO).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    pub pid: i32,
    pub pid_type: i32,
    pub uid: u32,
    pub euid: u32,
    pub signum: i32,
}

/// Reads the owner of the file behind `fd`.
pub fn owner(fd: BorrowedFd) -> std::io::Result<Owner> {
    let mut o = Owner::default();
    // SAFETY: F_GETSIG takes no argument.
    let sig = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) };
    if sig < 0 {
        return Err(std::io::Error::last_os_error());
    }
    o.signum = sig;
    // struct f_owner_ex { int type; pid_t pid; }
    let mut ex = [0i32; 2];
    // SAFETY: F_GETOWN_EX writes one struct f_owner_ex (two ints) to the
    // live buffer passed.
    if unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, ex.as_mut_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if ex[1] == 0 {
        return Ok(o);
    }
    o.pid_type = ex[0];
    o.pid = ex[1];
    let mut uids = [0u32; 2];
    // SAFETY: F_GETOWNER_UIDS writes two uid_t to the live buffer passed.
    if unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWNER_UIDS, uids.as_mut_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    o.uid = uids[0];
    o.euid = uids[1];
    Ok(o)
}
