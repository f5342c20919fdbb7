//! Raw integer socket options, for the ones nix has no typed wrapper for
//! (SO_PEEK_OFF, SO_NO_CHECK, SO_BUF_LOCK, ...).

use nix::libc;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Raw sockets' option levels and names libc does not give: SOL_RAW and
/// ICMP_FILTER (IPv4), SOL_ICMPV6 and ICMPV6_FILTER, IPV6_HDRINCL.
pub const SOL_RAW: i32 = 255;
pub const SOL_ICMPV6: i32 = 58;
pub const ICMP_FILTER: i32 = 1;
pub const IPV6_HDRINCL: i32 = 36;

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

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// The classic BPF program attached to `fd` (SO_GET_FILTER), empty if
/// none (the kernel tells none for an eBPF program, SO_ATTACH_BPF).
pub fn get_filter(fd: BorrowedFd) -> std::io::Result<Vec<SockFilter>> {
    // SO_GET_FILTER counts in instructions, not bytes: asked with 0, it
    // tells how many there are.
    let mut n: libc::socklen_t = 0;
    // SAFETY: with a length of 0 the kernel writes nothing to the buffer.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            std::ptr::null_mut(),
            &mut n,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut raw = vec![
        libc::sock_filter {
            code: 0,
            jt: 0,
            jf: 0,
            k: 0
        };
        n as usize
    ];
    // SAFETY: `raw` holds `n` instructions, which is what the kernel
    // writes at most for a length of `n`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            raw.as_mut_ptr() as *mut libc::c_void,
            &mut n,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    raw.truncate(n as usize);
    Ok(raw
        .iter()
        .map(|f| SockFilter {
            code: f.code,
            jt: f.jt,
            jf: f.jf,
            k: f.k,
        })
        .collect())
}

/// Attaches classic BPF program `prog` to `fd` (SO_ATTACH_FILTER).
pub fn attach_filter(fd: BorrowedFd, prog: &[SockFilter]) -> std::io::Result<()> {
    let mut raw: Vec<libc::sock_filter> = prog
        .iter()
        .map(|f| libc::sock_filter {
            code: f.code,
            jt: f.jt,
            jf: f.jf,
            k: f.k,
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: raw.len() as u16,
        filter: raw.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `raw`, live for the call; the kernel
    // copies the program.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &fprog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
