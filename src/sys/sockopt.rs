//! Raw integer socket options, for the ones nix has no typed wrapper for
//! (SO_PEEK_OFF, SO_NO_CHECK, SO_BUF_LOCK, ...).

use nix::libc;
use std::os::fd::{AsRawFd, BorrowedFd};

/// getsockopt(fd, level, name) of an int-sized option.
pub fn get_int(fd: BorrowedFd, level: i32, name: i32) -> std::io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`, which is an
    // int the size we pass; `fd` is a live descriptor for the call.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &mut v as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v)
}

/// setsockopt(fd, level, name) of an int-sized option.
pub fn set_int(fd: BorrowedFd, level: i32, name: i32, v: i32) -> std::io::Result<()> {
    // SAFETY: the kernel reads sizeof(int) bytes from `v`.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &v as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// getsockopt of a struct timeval option (SO_SNDTIMEO, SO_RCVTIMEO): (sec, usec).
pub fn get_timeval(fd: BorrowedFd, level: i32, name: i32) -> std::io::Result<(u64, u64)> {
    let mut v = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &mut v as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((v.tv_sec as u64, v.tv_usec as u64))
}

/// getsockopt of a byte-string option (SO_BINDTODEVICE), up to 64 bytes.
pub fn get_bytes(fd: BorrowedFd, level: i32, name: i32) -> std::io::Result<Vec<u8>> {
    let mut v = [0u8; 64];
    let mut len = v.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            v.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v[..(len as usize).min(v.len())].to_vec())
}

/// setsockopt of an option given as raw bytes (a struct laid out by the
/// caller, such as `packet_mreq`).
pub fn set_bytes(fd: BorrowedFd, level: i32, name: i32, v: &[u8]) -> std::io::Result<()> {
    // SAFETY: the kernel reads at most `v.len()` bytes from `v`.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            v.as_ptr() as *const libc::c_void,
            v.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
