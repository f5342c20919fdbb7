//! The `PAGEMAP_SCAN` ioctl of /proc/PID/pagemap (Linux 6.7+): which
//! pages of a range are present, swapped, file-backed, the zero page or
//! written, as ranges of pages alike, in one call where reading pagemap
//! takes eight bytes per page. The constants are the kernel's uapi
//! (linux/fs.h); Debian's headers predate them.

use super::err;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

const fn iowr(ty: u64, nr: u64, size: u64) -> u64 {
    (3 << 30) | (size << 16) | (ty << 8) | nr
}
const PAGEMAP_SCAN: u64 = iowr(b'f' as u64, 16, 96);

/// Flag: write-protect the pages that match.
pub const WP_MATCHING: u64 = 1;
/// Flag: fail (EPERM) on a mapping not registered for async
/// write-protection, instead of skipping it silently.
pub const CHECK_WPASYNC: u64 = 2;

/// Page categories.
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
pub const PAGE_IS_FILE: u64 = 1 << 2;
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
/// A guard page (`MADV_GUARD_INSTALL`), reported since Linux 6.16;
/// older kernels refuse the bit (EINVAL).
pub const PAGE_IS_GUARD: u64 = 1 << 8;

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

/// Pages `[start, end)` alike in the categories asked for.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

/// Which pages a scan reports: those with every category of `all`, at
/// least one of `any` (unless 0), after flipping the categories of
/// `inverted`; each region says which of `shown` its pages have.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query {
    pub flags: u64,
    pub inverted: u64,
    pub all: u64,
    pub any: u64,
    pub shown: u64,
}

/// The regions of `[start, end)` that match `q`, in address order, those
/// that touch and are alike merged. `pagemap` is the task's
/// /proc/PID/pagemap. Kernels before 6.7 answer ENOTTY.
pub fn scan(pagemap: &File, start: u64, end: u64, q: Query) -> io::Result<Vec<Region>> {
    let mut out: Vec<Region> = Vec::new();
    let mut vec = vec![Region::default(); 512];
    let mut at = start;
    while at < end {
        let mut a = ScanArg {
            size: std::mem::size_of::<ScanArg>() as u64,
            flags: q.flags,
            start: at,
            end,
            walk_end: 0,
            vec: vec.as_mut_ptr() as u64,
            vec_len: vec.len() as u64,
            max_pages: 0,
            category_inverted: q.inverted,
            category_mask: q.all,
            category_anyof_mask: q.any,
            return_mask: q.shown,
        };
        // SAFETY: PAGEMAP_SCAN takes a pointer to the uapi's struct
        // pm_scan_arg, which `ScanArg` mirrors (size in the request and in
        // `size`); the kernel writes `walk_end` there and at most
        // `vec_len` regions into `vec`, which both outlive the call.
        let r = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN as libc::c_ulong, &mut a) };
        if r < 0 {
            return Err(err::last(format!("PAGEMAP_SCAN {at:#x}-{end:#x}")));
        }
        for r in &vec[..(r as usize).min(vec.len())] {
            match out.last_mut() {
                Some(l) if l.end == r.start && l.categories == r.categories => l.end = r.end,
                _ => out.push(*r),
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
