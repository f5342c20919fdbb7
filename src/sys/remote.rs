//! Memory of another process.
//!
//! [`read`], [`write`] and the vectored forms use `process_vm_readv` /
//! `process_vm_writev`: no ptrace stop is needed, only ptrace-attach
//! permission (root has it). `pid` may be any thread id of the process.
//! They respect the target's page protections: they cannot write to a
//! read-only mapping nor read a `PROT_NONE` one; [`mem_write`] and
//! [`mem_read`] go through `/proc/PID/mem`, which can (as a debugger
//! does), e.g. to patch text.
//!
//! Partial transfers: the kernel stops at the first page it cannot access.
//! Every function here resumes after a short transfer until either all is
//! done or no progress is possible, and then reports how many bytes, from
//! the start (in the order the ranges are given), were transferred:
//! `Ok(n)` with `n` short means that byte `n` could not be accessed. An
//! error is returned only when nothing at all was transferred (or for a
//! fault of our own buffers, which cannot happen with safe slices).

use std::fs::OpenOptions;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::unix::fs::FileExt;

use libc::{c_void, iovec};

use super::err;

/// At most this many iovecs go into one `process_vm_*` call (the kernel's
/// `UIO_MAXIOV`), on each side.
pub const IOV_MAX: usize = 1024;

/// A range of the target's address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteIoVec {
    pub base: u64,
    pub len: usize,
}

#[derive(Clone, Copy)]
enum Dir {
    Read,
    Write,
}

/// One `process_vm_*` call.
///
/// # Safety
/// Each local iovec must describe memory of ours that is live for the call
/// and, for `Dir::Read`, writable and not aliased by any live reference
/// other than the one it was made from.
unsafe fn pvm(dir: Dir, pid: i32, local: &[iovec], remote: &[iovec]) -> isize {
    let (lp, ln) = (local.as_ptr(), local.len() as libc::c_ulong);
    let (rp, rn) = (remote.as_ptr(), remote.len() as libc::c_ulong);
    // SAFETY: both iovec arrays are live slices of the given lengths; the
    // caller guarantees the local buffers they describe; the kernel checks
    // the remote addresses itself.
    unsafe {
        match dir {
            Dir::Read => libc::process_vm_readv(pid, lp, ln, rp, rn, 0),
            Dir::Write => libc::process_vm_writev(pid, lp, ln, rp, rn, 0),
        }
    }
}

/// A cursor into a list of (ptr, len) pieces.
struct Cursor<'a> {
    pieces: &'a [(usize, usize)],
    idx: usize,
    off: usize,
}

impl Cursor<'_> {
    fn skip_empty(&mut self) {
        while self.idx < self.pieces.len() && self.off >= self.pieces[self.idx].1 {
            self.idx += 1;
            self.off = 0;
        }
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 && self.idx < self.pieces.len() {
            let left = self.pieces[self.idx].1 - self.off;
            if n < left {
                self.off += n;
                return;
            }
            n -= left;
            self.idx += 1;
            self.off = 0;
        }
        self.skip_empty();
    }

    /// Up to IOV_MAX iovecs from the cursor, and their total.
    fn take(&self, limit: usize) -> (Vec<iovec>, usize) {
        let mut v = Vec::new();
        let mut total = 0usize;
        let (mut i, mut off) = (self.idx, self.off);
        while i < self.pieces.len() && v.len() < IOV_MAX && total < limit {
            let (p, l) = self.pieces[i];
            let len = (l - off).min(limit - total);
            if len > 0 {
                v.push(iovec {
                    iov_base: (p + off) as *mut c_void,
                    iov_len: len,
                });
                total += len;
            }
            i += 1;
            off = 0;
        }
        (v, total)
    }

    fn done(&self) -> bool {
        self.idx >= self.pieces.len()
    }
}

/// Trims an iovec list to `total` bytes.
fn trim(v: &mut Vec<iovec>, total: usize) {
    let mut acc = 0usize;
    let mut keep = 0usize;
    for io in v.iter_mut() {
        if acc >= total {
            break;
        }
        if acc + io.iov_len > total {
            io.iov_len = total - acc;
        }
        acc += io.iov_len;
        keep += 1;
    }
    v.truncate(keep);
}

/// The engine under every transfer. `local` pieces must be memory of ours
/// valid for `dir` (see `pvm`).
fn transfer(
    dir: Dir,
    pid: i32,
    local: &[(usize, usize)],
    remote: &[(usize, usize)],
) -> io::Result<usize> {
    let mut lc = Cursor {
        pieces: local,
        idx: 0,
        off: 0,
    };
    let mut rc = Cursor {
        pieces: remote,
        idx: 0,
        off: 0,
    };
    lc.skip_empty();
    rc.skip_empty();
    let mut done = 0usize;
    let name = match dir {
        Dir::Read => "process_vm_readv",
        Dir::Write => "process_vm_writev",
    };
    while !lc.done() && !rc.done() {
        let (mut rv, rtotal) = rc.take(usize::MAX);
        let (mut lv, ltotal) = lc.take(rtotal);
        let total = rtotal.min(ltotal);
        trim(&mut rv, total);
        trim(&mut lv, total);
        // SAFETY: the local iovecs point into `local`, which the public
        // callers build from slices borrowed (mutably for reads) for the
        // whole call; lengths never exceed those slices.
        let r = unsafe { pvm(dir, pid, &lv, &rv) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if done > 0 && e.raw_os_error() == Some(libc::EFAULT) {
                return Ok(done);
            }
            let at = rv.first().map(|v| v.iov_base as u64).unwrap_or(0);
            return Err(err::context(format_args!("{name} pid {pid} at {at:#x}"), e));
        }
        let n = r as usize;
        if n == 0 {
            if done == 0 {
                let at = rv.first().map(|v| v.iov_base as u64).unwrap_or(0);
                return Err(err::os(
                    format_args!("{name} pid {pid} at {at:#x}"),
                    libc::EFAULT,
                ));
            }
            return Ok(done);
        }
        done += n;
        lc.advance(n);
        rc.advance(n);
    }
    Ok(done)
}

fn remote_pieces(remote: &[RemoteIoVec]) -> Vec<(usize, usize)> {
    remote.iter().map(|r| (r.base as usize, r.len)).collect()
}

/// Reads `buf.len()` bytes at `addr` of process `pid`. Returns how many
/// were read (short only if the memory at `addr + n` is inaccessible).
pub fn read(pid: i32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let local = [(buf.as_mut_ptr() as usize, buf.len())];
    transfer(Dir::Read, pid, &local, &[(addr as usize, buf.len())])
}

/// Like [`read`], but a short read is an error naming the address.
pub fn read_exact(pid: i32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    let n = read(pid, addr, buf)?;
    if n < buf.len() {
        return Err(err::os(
            format_args!(
                "process_vm_readv pid {pid}: only {n} of {} bytes at {addr:#x}",
                buf.len()
            ),
            libc::EFAULT,
        ));
    }
    Ok(())
}

/// Writes `buf` at `addr` of process `pid`. Returns how many bytes were
/// written (short only if the memory at `addr + n` is not writable).
pub fn write(pid: i32, addr: u64, buf: &[u8]) -> io::Result<usize> {
    let local = [(buf.as_ptr() as usize, buf.len())];
    transfer(Dir::Write, pid, &local, &[(addr as usize, buf.len())])
}

/// Like [`write`], but a short write is an error naming the address.
pub fn write_all(pid: i32, addr: u64, buf: &[u8]) -> io::Result<()> {
    let n = write(pid, addr, buf)?;
    if n < buf.len() {
        return Err(err::os(
            format_args!(
                "process_vm_writev pid {pid}: only {n} of {} bytes at {addr:#x}",
                buf.len()
            ),
            libc::EFAULT,
        ));
    }
    Ok(())
}

/// Scatter/gather read: the bytes of the `remote` ranges, in order, fill
/// the `local` buffers, in order (the two lists may be cut differently;
/// the shorter total bounds the transfer). Any number of ranges: they are
/// sent `IOV_MAX` per call, so copying many pages costs one syscall per
/// 1024 ranges. Returns the bytes read (see the module docs for short
/// counts).
pub fn read_vectored(
    pid: i32,
    local: &mut [IoSliceMut<'_>],
    remote: &[RemoteIoVec],
) -> io::Result<usize> {
    let lp: Vec<(usize, usize)> = local
        .iter_mut()
        .map(|s| (s.as_mut_ptr() as usize, s.len()))
        .collect();
    transfer(Dir::Read, pid, &lp, &remote_pieces(remote))
}

/// Scatter/gather write: the inverse of [`read_vectored`].
pub fn write_vectored(
    pid: i32,
    local: &[IoSlice<'_>],
    remote: &[RemoteIoVec],
) -> io::Result<usize> {
    let lp: Vec<(usize, usize)> = local
        .iter()
        .map(|s| (s.as_ptr() as usize, s.len()))
        .collect();
    transfer(Dir::Write, pid, &lp, &remote_pieces(remote))
}

/// Reads the `remote` ranges back to back into one buffer (what a dump of
/// many page runs wants). Returns the bytes read.
pub fn read_ranges(pid: i32, buf: &mut [u8], remote: &[RemoteIoVec]) -> io::Result<usize> {
    let local = [(buf.as_mut_ptr() as usize, buf.len())];
    transfer(Dir::Read, pid, &local, &remote_pieces(remote))
}

/// Writes one buffer, back to back, into the `remote` ranges (what a
/// restore of many page runs wants). Returns the bytes written.
pub fn write_ranges(pid: i32, buf: &[u8], remote: &[RemoteIoVec]) -> io::Result<usize> {
    let local = [(buf.as_ptr() as usize, buf.len())];
    transfer(Dir::Write, pid, &local, &remote_pieces(remote))
}

/// Writes through `/proc/PID/mem`: works on read-only and executable
/// mappings too (the kernel writes as a debugger, breaking COW: a private
/// file page written this way becomes an anonymous page of the target).
/// All of `buf` or an error.
pub fn mem_write(pid: i32, addr: u64, buf: &[u8]) -> io::Result<()> {
    let path = format!("/proc/{pid}/mem");
    let f = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| err::context(format_args!("open {path}"), e))?;
    f.write_all_at(buf, addr).map_err(|e| {
        err::context(
            format_args!(
                "write {} bytes at {addr:#x} of pid {pid} via {path}",
                buf.len()
            ),
            e,
        )
    })
}

/// Reads through `/proc/PID/mem`, as a debugger: also mappings the target
/// itself cannot read (e.g. `PROT_NONE` or execute-only). All of `buf` or
/// an error.
pub fn mem_read(pid: i32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    let path = format!("/proc/{pid}/mem");
    let f = OpenOptions::new()
        .read(true)
        .open(&path)
        .map_err(|e| err::context(format_args!("open {path}"), e))?;
    f.read_exact_at(buf, addr).map_err(|e| {
        err::context(
            format_args!(
                "read {} bytes at {addr:#x} of pid {pid} via {path}",
                buf.len()
            ),
            e,
        )
    })
}
