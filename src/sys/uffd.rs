//! Write tracking without soft-dirty: userfaultfd write-protection in
//! async mode, read back with the `PAGEMAP_SCAN` ioctl (Linux 6.7+).
//!
//! A userfaultfd belongs to the address space of the task that made it,
//! but its ioctls work from any process holding the descriptor: the dump
//! makes one inside the task (an injected `userfaultfd` call), takes a
//! copy with pidfd_getfd and closes the task's, so that crit holds the
//! only reference. In async mode a write to a protected page is resolved
//! by the kernel at once (no message, no wait): the page just loses its
//! protection, which `PAGEMAP_SCAN` reports as `PAGE_IS_WRITTEN`. When the
//! last descriptor closes, the kernel drops every registration and every
//! protection, so a dump that dies leaves nothing behind.
//!
//! The constants are the kernel's uapi (linux/userfaultfd.h, linux/fs.h);
//! Debian's headers predate them.

use super::err;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

const UFFD_API: u64 = 0xAA;
/// Faults on write-protected pages resolved by the kernel itself.
pub const FEATURE_WP_ASYNC: u64 = 1 << 15;
/// Pages never touched count as protected too (a first write is seen).
pub const FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
/// `userfaultfd` flag: only faults from user mode (what any user may ask).
pub const USER_MODE_ONLY: u64 = 1;

const REGISTER_MODE_WP: u64 = 1 << 1;
const WRITEPROTECT_MODE_WP: u64 = 1;

const fn iowr(ty: u64, nr: u64, size: u64) -> u64 {
    (3 << 30) | (size << 16) | (ty << 8) | nr
}
const UFFDIO_API: u64 = iowr(0xAA, 0x3F, 24);
const UFFDIO_REGISTER: u64 = iowr(0xAA, 0x00, 32);
const UFFDIO_UNREGISTER: u64 = (2 << 30) | (16 << 16) | (0xAA << 8) | 0x01;
const UFFDIO_WRITEPROTECT: u64 = iowr(0xAA, 0x06, 24);
const PAGEMAP_SCAN: u64 = iowr(b'f' as u64, 16, 96);

/// `PAGEMAP_SCAN` flag: write-protect the pages that match.
const PM_SCAN_WP_MATCHING: u64 = 1;
/// `PAGEMAP_SCAN` flag: fail (EPERM) on a mapping not registered for
/// async write-protection, instead of skipping it silently (which would
/// read as "nothing written").
const PM_SCAN_CHECK_WPASYNC: u64 = 2;
/// Page category: written since it was last write-protected.
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;

#[repr(C)]
struct Api {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct Register {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct Range {
    start: u64,
    len: u64,
}

#[repr(C)]
struct WriteProtect {
    start: u64,
    len: u64,
    mode: u64,
}

#[repr(C)]
struct ScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// One userfaultfd, held by crit, for another task's address space.
pub struct Uffd(OwnedFd);

fn ioctl<T>(fd: &impl AsRawFd, req: u64, arg: &mut T, what: &str) -> io::Result<i64> {
    // SAFETY: every request used here takes a pointer to the #[repr(C)]
    // struct of the uapi that `T` mirrors (sizes encoded in `req`), which
    // lives for the whole call; the kernel writes only inside it.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as libc::c_ulong, arg as *mut T) };
    if r < 0 {
        return Err(err::last(what));
    }
    Ok(r as i64)
}

impl Uffd {
    /// Takes a userfaultfd descriptor (a copy of the task's) and enables
    /// async write-protection on it (`UFFDIO_API`). The kernel refuses
    /// when it lacks the features: the error says so.
    pub fn new(fd: OwnedFd) -> io::Result<Uffd> {
        let mut a = Api {
            api: UFFD_API,
            features: FEATURE_WP_ASYNC | FEATURE_WP_UNPOPULATED,
            ioctls: 0,
        };
        ioctl(&fd, UFFDIO_API, &mut a, "UFFDIO_API (async write-protect)")?;
        Ok(Uffd(fd))
    }

    /// A descriptor on which [`Uffd::new`] already ran (handed over from
    /// another crit process).
    pub fn adopt(fd: OwnedFd) -> Uffd {
        Uffd(fd)
    }

    /// The descriptor, to hand over to another process.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.0.as_fd()
    }

    /// Registers `[start, start+len)` for write-protection. EBUSY: some
    /// mapping there has another userfaultfd (the task's own); EINVAL:
    /// a mapping that cannot be registered. Registering again what is
    /// already ours succeeds.
    pub fn register_wp(&self, start: u64, len: u64) -> io::Result<()> {
        let mut r = Register {
            start,
            len,
            mode: REGISTER_MODE_WP,
            ioctls: 0,
        };
        ioctl(
            &self.0,
            UFFDIO_REGISTER,
            &mut r,
            &format!("UFFDIO_REGISTER {start:#x}+{len:#x}"),
        )
        .map(|_| ())
    }

    /// Drops the registration of `[start, start+len)` (and its
    /// protections).
    pub fn unregister(&self, start: u64, len: u64) -> io::Result<()> {
        let mut r = Range { start, len };
        ioctl(
            &self.0,
            UFFDIO_UNREGISTER,
            &mut r,
            &format!("UFFDIO_UNREGISTER {start:#x}+{len:#x}"),
        )
        .map(|_| ())
    }

    /// Write-protects every page of `[start, start+len)` (registered).
    pub fn protect(&self, start: u64, len: u64) -> io::Result<()> {
        let mut w = WriteProtect {
            start,
            len,
            mode: WRITEPROTECT_MODE_WP,
        };
        ioctl(
            &self.0,
            UFFDIO_WRITEPROTECT,
            &mut w,
            &format!("UFFDIO_WRITEPROTECT {start:#x}+{len:#x}"),
        )
        .map(|_| ())
    }
}

/// The pages of `[start, end)` written since they were last protected,
/// as address ranges, protecting them again in the same walk (so that
/// nothing written during the scan is lost). `pagemap` is the task's
/// `/proc/PID/pagemap`. Fails with EPERM when part of the range is not
/// registered for async write-protection (a mapping made, replaced or
/// moved since): the caller must then count all of it as written.
pub fn scan_written(pagemap: &File, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut vec = vec![PageRegion::default(); 512];
    let mut at = start;
    while at < end {
        let mut a = ScanArg {
            size: std::mem::size_of::<ScanArg>() as u64,
            flags: PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
            start: at,
            end,
            walk_end: 0,
            vec: vec.as_mut_ptr() as u64,
            vec_len: vec.len() as u64,
            max_pages: 0,
            category_inverted: 0,
            category_mask: PAGE_IS_WRITTEN,
            category_anyof_mask: 0,
            return_mask: PAGE_IS_WRITTEN,
        };
        let n = ioctl(
            pagemap,
            PAGEMAP_SCAN,
            &mut a,
            &format!("PAGEMAP_SCAN {at:#x}-{end:#x}"),
        )? as usize;
        for r in &vec[..n.min(vec.len())] {
            match out.last_mut() {
                Some(l) if l.1 == r.start => l.1 = r.end,
                _ => out.push((r.start, r.end)),
            }
        }
        if a.walk_end <= at {
            return Err(err::os(
                format_args!("PAGEMAP_SCAN {at:#x}-{end:#x} made no progress"),
                libc::EIO,
            ));
        }
        at = a.walk_end;
    }
    Ok(out)
}

/// A userfaultfd for crit's own address space (`flags`: O_* and
/// [`USER_MODE_ONLY`]), to ask the kernel what it supports.
pub fn open_own(flags: u64) -> io::Result<OwnedFd> {
    // SAFETY: userfaultfd takes one integer and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_userfaultfd, flags as libc::c_long) };
    if r < 0 {
        return Err(err::last("userfaultfd"));
    }
    // SAFETY: the kernel just returned this new descriptor; nothing else
    // owns it.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(r as i32) })
}
