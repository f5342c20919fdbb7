//! kcmp(2): whether two processes share a kernel object (an open file, an
//! address space, a descriptor table, fs info, signal handlers).

/// The kinds of object kcmp compares (KCMP_* in linux/kcmp.h).
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    File = 0,
    Vm = 1,
    Files = 2,
    Fs = 3,
    Sighand = 4,
}

/// Compares an object of `pid1` with one of `pid2`. For [`Kind::File`],
/// `idx1` and `idx2` are descriptor numbers. Returns the kernel's
/// ordering: 0 when both are the same object.
pub fn kcmp(pid1: i32, pid2: i32, kind: Kind, idx1: u64, idx2: u64) -> std::io::Result<i32> {
    // SAFETY: kcmp takes only integers and touches no memory of ours.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_kcmp,
            pid1 as nix::libc::c_long,
            pid2 as nix::libc::c_long,
            kind as nix::libc::c_long,
            idx1 as nix::libc::c_ulong,
            idx2 as nix::libc::c_ulong,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as i32)
    }
}

/// How the object of `pid1` compares with the one of `pid2` in the
/// kernel's order, which stays the same for the life of both objects.
pub fn order(
    pid1: i32,
    pid2: i32,
    kind: Kind,
    idx1: u64,
    idx2: u64,
) -> std::io::Result<std::cmp::Ordering> {
    use std::cmp::Ordering::*;
    match kcmp(pid1, pid2, kind, idx1, idx2)? {
        0 => Ok(Equal),
        1 => Ok(Less),
        2 => Ok(Greater),
        r => Err(std::io::Error::other(format!("kcmp gave no order ({r})"))),
    }
}

/// True when the two objects are the same.
pub fn same(pid1: i32, pid2: i32, kind: Kind, idx1: u64, idx2: u64) -> std::io::Result<bool> {
    kcmp(pid1, pid2, kind, idx1, idx2).map(|r| r == 0)
}

/// struct kcmp_epoll_slot of linux/kcmp.h.
#[repr(C)]
struct EpollSlot {
    efd: u32,
    tfd: u32,
    toff: u32,
}

const KCMP_EPOLL_TFD: nix::libc::c_long = 7;

/// Whether descriptor `fd` of `pid` is the file that `pid`'s epoll `efd`
/// watches as its `toff`-th target registered under descriptor number
/// `tfd` (an epoll keys a target by file and number, and the number may
/// since have been closed or reused). Not open `fd` is false.
pub fn is_epoll_target(pid: i32, fd: i32, efd: i32, tfd: i32, toff: u32) -> std::io::Result<bool> {
    let slot = EpollSlot {
        efd: efd as u32,
        tfd: tfd as u32,
        toff,
    };
    // SAFETY: the kernel only reads `slot`, which lives across the call.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_kcmp,
            pid as nix::libc::c_long,
            pid as nix::libc::c_long,
            KCMP_EPOLL_TFD,
            fd as nix::libc::c_ulong,
            &slot as *const EpollSlot as nix::libc::c_ulong,
        )
    };
    if r >= 0 {
        return Ok(r == 0);
    }
    match std::io::Error::last_os_error() {
        e if e.raw_os_error() == Some(nix::libc::EBADF) => Ok(false),
        e => Err(e),
    }
}
