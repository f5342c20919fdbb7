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
//! Lazy pages (post-copy restore) use the same descriptors the classic
//! way: mappings registered for missing pages, whose faults a daemon
//! reads as messages and resolves by copying the page in
//! ([`Uffd::copy`]), with events for what the task does meanwhile
//! (fork, mremap, munmap, madvise).
//!
//! The constants are the kernel's uapi (linux/userfaultfd.h, linux/fs.h);
//! Debian's headers predate them.

use super::err;
use super::pmscan;
pub use super::pmscan::PAGE_IS_WRITTEN;
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
/// The events a lazy-pages daemon follows (CRIU's set).
pub const FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const FEATURE_EVENT_REMAP: u64 = 1 << 2;
pub const FEATURE_EVENT_REMOVE: u64 = 1 << 3;
pub const FEATURE_EVENT_UNMAP: u64 = 1 << 6;

const REGISTER_MODE_MISSING: u64 = 1;
const EVENT_PAGEFAULT: u8 = 0x12;
const EVENT_FORK: u8 = 0x13;
const EVENT_REMAP: u8 = 0x14;
const EVENT_REMOVE: u8 = 0x15;
const EVENT_UNMAP: u8 = 0x16;
/// Bytes of one `struct uffd_msg`.
const MSG_LEN: usize = 32;

const REGISTER_MODE_WP: u64 = 1 << 1;
const WRITEPROTECT_MODE_WP: u64 = 1;

const fn iowr(ty: u64, nr: u64, size: u64) -> u64 {
    (3 << 30) | (size << 16) | (ty << 8) | nr
}
const UFFDIO_API: u64 = iowr(0xAA, 0x3F, 24);
const UFFDIO_REGISTER: u64 = iowr(0xAA, 0x00, 32);
const UFFDIO_UNREGISTER: u64 = (2 << 30) | (16 << 16) | (0xAA << 8) | 0x01;
const UFFDIO_WRITEPROTECT: u64 = iowr(0xAA, 0x06, 24);
const UFFDIO_COPY: u64 = iowr(0xAA, 0x03, 40);
const UFFDIO_ZEROPAGE: u64 = iowr(0xAA, 0x04, 32);
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
struct Copy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

#[repr(C)]
struct ZeroPage {
    start: u64,
    len: u64,
    mode: u64,
    zeropage: i64,
}

/// What a userfaultfd reports (`struct uffd_msg`).
#[derive(Debug)]
pub enum Event {
    /// A missing page at this address was touched.
    Fault(u64),
    /// The task forked: the child's descriptor (now crit's).
    Fork(OwnedFd),
    /// mremap moved `len` bytes from `from` to `to`.
    Remap { from: u64, to: u64, len: u64 },
    /// madvise(DONTNEED) or similar dropped `[start, end)`.
    Remove { start: u64, end: u64 },
    /// munmap of `[start, end)`.
    Unmap { start: u64, end: u64 },
}

#[repr(C)]
struct WriteProtect {
    start: u64,
    len: u64,
    mode: u64,
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

    /// Takes a userfaultfd descriptor and enables the events of a
    /// lazy-pages daemon (`features`, some of the FEATURE_EVENT_*).
    pub fn with_events(fd: OwnedFd, features: u64) -> io::Result<Uffd> {
        let mut a = Api {
            api: UFFD_API,
            features,
            ioctls: 0,
        };
        ioctl(&fd, UFFDIO_API, &mut a, "UFFDIO_API (lazy pages)")?;
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
        self.register(start, len, REGISTER_MODE_WP)
    }

    /// Registers `[start, start+len)` for missing pages: a touch of a
    /// page not there waits for [`Uffd::copy`] or [`Uffd::zero`].
    pub fn register_missing(&self, start: u64, len: u64) -> io::Result<()> {
        self.register(start, len, REGISTER_MODE_MISSING)
    }

    fn register(&self, start: u64, len: u64, mode: u64) -> io::Result<()> {
        let mut r = Register {
            start,
            len,
            mode,
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

    /// Copies `data` (whole pages) to `dst` of the registered address
    /// space and wakes whoever waits there. Returns the bytes copied,
    /// which a concurrent change of the mappings may cut short (EAGAIN)
    /// or make none (ENOENT: the mapping is gone; EEXIST: the page is
    /// there already).
    pub fn copy(&self, dst: u64, data: &[u8]) -> io::Result<u64> {
        let mut c = Copy {
            dst,
            src: data.as_ptr() as u64,
            len: data.len() as u64,
            mode: 0,
            copy: 0,
        };
        match ioctl(
            &self.0,
            UFFDIO_COPY,
            &mut c,
            &format!("UFFDIO_COPY {dst:#x}"),
        ) {
            Ok(_) => Ok(data.len() as u64),
            Err(_) if c.copy > 0 => Ok(c.copy as u64),
            Err(e) => Err(e),
        }
    }

    /// Maps zero pages at `[start, start+len)` (pages the dump did not
    /// hold) and wakes whoever waits there; errors as [`Uffd::copy`].
    pub fn zero(&self, start: u64, len: u64) -> io::Result<u64> {
        let mut z = ZeroPage {
            start,
            len,
            mode: 0,
            zeropage: 0,
        };
        let what = format!("UFFDIO_ZEROPAGE {start:#x}+{len:#x}");
        match ioctl(&self.0, UFFDIO_ZEROPAGE, &mut z, &what) {
            Ok(_) => Ok(len),
            Err(_) if z.zeropage > 0 => Ok(z.zeropage as u64),
            Err(e) => Err(e),
        }
    }

    /// The messages waiting (none if none: the descriptor is
    /// non-blocking), or None once the address space is gone (the
    /// task exited).
    pub fn events(&self) -> io::Result<Option<Vec<Event>>> {
        let mut buf = [0u8; MSG_LEN * 16];
        let n = match nix::unistd::read(&self.0, &mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN) => return Ok(Some(Vec::new())),
            Err(e) => return Err(err::os(format_args!("reading a userfaultfd"), e as i32)),
        };
        let mut out = Vec::new();
        for m in buf[..n].chunks_exact(MSG_LEN) {
            let u = |i: usize| u64::from_ne_bytes(m[i..i + 8].try_into().unwrap_or([0; 8]));
            match m[0] {
                // pagefault: flags at 8, address at 16.
                EVENT_PAGEFAULT => out.push(Event::Fault(u(16))),
                EVENT_FORK => {
                    let fd = i32::from_ne_bytes(m[8..12].try_into().unwrap_or([0; 4]));
                    // SAFETY: the kernel installed this descriptor in our
                    // table for this message; nothing else owns it.
                    out.push(Event::Fork(unsafe {
                        std::os::fd::FromRawFd::from_raw_fd(fd)
                    }));
                }
                EVENT_REMAP => out.push(Event::Remap {
                    from: u(8),
                    to: u(16),
                    len: u(24),
                }),
                EVENT_REMOVE => out.push(Event::Remove {
                    start: u(8),
                    end: u(16),
                }),
                EVENT_UNMAP => out.push(Event::Unmap {
                    start: u(8),
                    end: u(16),
                }),
                _ => {}
            }
        }
        Ok(Some(out))
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

    /// Whether the address space this userfaultfd was made in is gone
    /// (its task exec'd or exited): the kernel then answers any call on
    /// it with ESRCH. Asked with a write-protect of one low page, which
    /// changes nothing where no registered mapping is (ENOENT) and at
    /// worst protects a page of ours (its next write is then copied).
    pub fn mm_gone(&self) -> bool {
        self.protect(0x10000, 4096)
            .is_err_and(|e| super::err::errno_of(&e) == Some(libc::ESRCH))
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

impl From<Uffd> for OwnedFd {
    fn from(u: Uffd) -> OwnedFd {
        u.0
    }
}

/// The pages of `[start, end)` written since they were last protected,
/// as address ranges, protecting them again in the same walk (so that
/// nothing written during the scan is lost). `pagemap` is the task's
/// `/proc/PID/pagemap`. Fails with EPERM when part of the range is not
/// registered for async write-protection (a mapping made, replaced or
/// moved since): the caller must then count all of it as written.
pub fn scan_written(pagemap: &File, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
    let q = pmscan::Query {
        flags: pmscan::WP_MATCHING | pmscan::CHECK_WPASYNC,
        all: PAGE_IS_WRITTEN,
        shown: PAGE_IS_WRITTEN,
        ..Default::default()
    };
    Ok(pmscan::scan(pagemap, start, end, q)?
        .into_iter()
        .map(|r| (r.start, r.end))
        .collect())
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
