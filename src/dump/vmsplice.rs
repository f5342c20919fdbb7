//! One copy of each page. The task puts its own pages into pipes
//! (`vmsplice`, injected: a pipe then holds references to the task's
//! pages, not copies of them) and the page writers splice each pipe into
//! the pages file at its place ([`super::pages`]): the pages are copied
//! once, into the file, where reading them with process_vm_readv and
//! writing them out copies them twice.
//!
//! The pipes are made in the task (`pipe2`, so that any task can make
//! them, whoever runs crit), crit takes their read ends (`pidfd_getfd`)
//! and makes them 1 MiB (the default `pipe-max-size`: more would need
//! CAP_SYS_RESOURCE), and the task's ends are closed again in the same
//! run of calls that fills them: the task's descriptors are as they were
//! before this returns, also when it fails. The tree is frozen until the
//! writers are done, so the pages do not change meanwhile.
//!
//! Where a step fails for a batch (the task is at its descriptor limit, a
//! pipe could not be made large enough, `vmsplice` moved less than all),
//! that batch has no pipe and the writers read it with process_vm_readv.

use crate::sys::inject::Injector;
use crate::sys::pidfd;
use nix::fcntl::{fcntl, FcntlArg};
use std::collections::HashSet;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Bytes one pipe holds, and so one batch.
pub const PIPE_BYTES: usize = 1 << 20;
/// Pipes made per run of injected calls.
pub const PER_RUN: usize = 64;
const SPLICE_F_NONBLOCK: u64 = 2;

/// Puts the pages of each batch (address, length pieces, at most
/// [`PIPE_BYTES`] and 256 pieces in all) into a pipe of its own; returns
/// each batch's pipe (read end, in crit) or None for batches left to
/// process_vm_readv. Each run notes in `made` the descriptors it makes in
/// the task before it is over.
pub fn fill(
    inj: &mut Injector,
    pid: i32,
    batches: &[&[(u64, usize)]],
    made: &Made,
) -> Vec<Option<OwnedFd>> {
    let Ok(pidfd) = pidfd::pidfd_open(pid) else {
        return batches.iter().map(|_| None).collect();
    };
    let mut out = Vec::with_capacity(batches.len());
    for group in batches.chunks(PER_RUN) {
        let _run = InProgress::begin(made);
        match fill_some(inj, &pidfd, group, made) {
            Ok(pipes) => out.extend(pipes),
            // The task's state is back as it was; the rest is copied.
            Err(_) => break,
        }
    }
    out.resize_with(batches.len(), || None);
    out
}

/// The descriptors runs of [`fill`] made in a task (each closed again in
/// its run), for a listing of the task's descriptors taken meanwhile on
/// another thread: the task is frozen, so its own are listed all along,
/// and anything else listed is one of these.
#[derive(Default)]
pub struct Made {
    fds: Mutex<HashSet<i32>>,
    /// A run stopped before it knew the numbers of what it made.
    unknown: AtomicBool,
    /// Runs begun, and runs over (their descriptors noted).
    begun: AtomicU64,
    over: AtomicU64,
}

impl Made {
    /// Once every run begun before this call is over: the descriptors
    /// made so far, or None if some run could not tell what it made.
    pub fn settled(&self) -> Option<MutexGuard<'_, HashSet<i32>>> {
        let begun = self.begun.load(Ordering::SeqCst);
        // At most one run (a few milliseconds) is in progress.
        while self.over.load(Ordering::SeqCst) < begun {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        match self.unknown.load(Ordering::SeqCst) {
            true => None,
            false => Some(self.fds.lock().unwrap_or_else(|e| e.into_inner())),
        }
    }

    fn note(&self, fds: impl Iterator<Item = i32>) {
        self.fds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(fds);
    }
}

/// A run of [`fill`] in progress: over when dropped.
struct InProgress<'a>(&'a Made);

impl<'a> InProgress<'a> {
    fn begin(m: &'a Made) -> InProgress<'a> {
        m.begun.fetch_add(1, Ordering::SeqCst);
        InProgress(m)
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.over.fetch_add(1, Ordering::SeqCst);
    }
}

/// One run: a pipe per batch of `group`.
fn fill_some(
    inj: &mut Injector,
    pidfd: &OwnedFd,
    group: &[&[(u64, usize)]],
    noted: &Made,
) -> io::Result<Vec<Option<OwnedFd>>> {
    // Scratch: the pipes' fd pairs, then each batch's iovecs.
    let fds_len = group.len() * 8;
    let iov_len: usize = group.iter().map(|b| b.len() * 16).sum();
    let base = inj.ensure_scratch(fds_len + iov_len)?;
    let pipe2 = group
        .iter()
        .enumerate()
        .map(|(k, _)| (libc::SYS_pipe2, [base + 8 * k as u64, 0, 0, 0, 0, 0]))
        .collect::<Vec<_>>();
    let unknown = || noted.unknown.store(true, Ordering::SeqCst);
    let made = inj.syscalls(&pipe2).inspect_err(|_| unknown())?;
    let mut raw = vec![0u8; fds_len];
    inj.read_scratch(0, &mut raw).inspect_err(|_| {
        if made.contains(&0) {
            unknown()
        }
    })?;
    // The task's fds of each pipe that was made: (read, write).
    let ends: Vec<Option<(i32, i32)>> = made
        .iter()
        .enumerate()
        .map(|(k, &r)| {
            let at = |i: usize| i32::from_ne_bytes(raw[i..i + 4].try_into().unwrap_or([0; 4]));
            (r == 0).then(|| (at(8 * k), at(8 * k + 4)))
        })
        .collect();
    noted.note(ends.iter().flatten().flat_map(|&(r, w)| [r, w]));
    // The task's ends are closed in the run that fills the pipes (after
    // the vmsplices), or in one of their own should that run not happen.
    let close: Vec<(i64, [u64; 6])> = ends
        .iter()
        .flatten()
        .flat_map(|&(r, w)| [r, w])
        .map(|fd| (libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]))
        .collect();
    let (filled, closed) = match take_and_fill(inj, pidfd, group, &ends, base, fds_len, &close) {
        Ok(r) => r,
        Err(e) => {
            let _ = inj.syscalls(&close);
            return Err(e);
        }
    };
    if let Some(&r) = closed.iter().find(|&&r| r < 0) {
        return Err(io::Error::from_raw_os_error(-r as i32));
    }
    Ok(filled)
}

/// Takes the read ends of the made pipes into crit, sizes them, and has
/// the task vmsplice each batch into its pipe, then make the `close`
/// calls; returns the pipes and the results of the closes.
fn take_and_fill(
    inj: &mut Injector,
    pidfd: &OwnedFd,
    group: &[&[(u64, usize)]],
    ends: &[Option<(i32, i32)>],
    base: u64,
    fds_len: usize,
    close: &[(i64, [u64; 6])],
) -> io::Result<(Vec<Option<OwnedFd>>, Vec<i64>)> {
    let mut mine: Vec<Option<OwnedFd>> = Vec::with_capacity(group.len());
    for (b, e) in group.iter().zip(ends) {
        let want: usize = b.iter().map(|p| p.1).sum();
        let fd = e.and_then(|(r, _)| pidfd::pidfd_getfd(pidfd, r).ok());
        let sized = fd.filter(|fd| {
            fcntl(fd, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES as i32))
                .is_ok_and(|got| got as usize >= want)
        });
        mine.push(sized);
    }
    let mut iov = Vec::new();
    let mut calls = Vec::new();
    let mut which = Vec::new();
    for (k, b) in group.iter().enumerate() {
        let (Some(_), Some((_, w))) = (&mine[k], ends[k]) else {
            continue;
        };
        let at = base + (fds_len + iov.len()) as u64;
        for &(addr, len) in b.iter() {
            iov.extend_from_slice(&addr.to_ne_bytes());
            iov.extend_from_slice(&(len as u64).to_ne_bytes());
        }
        calls.push((
            libc::SYS_vmsplice,
            [w as u64, at, b.len() as u64, SPLICE_F_NONBLOCK, 0, 0],
        ));
        which.push(k);
    }
    if calls.is_empty() {
        let closed = inj.syscalls(close)?;
        return Ok((mine.into_iter().map(|_| None).collect(), closed));
    }
    crate::sys::remote::write_all(inj.tid(), base + fds_len as u64, &iov)?;
    let n = calls.len();
    calls.extend_from_slice(close);
    let mut moved = inj.syscalls(&calls)?;
    let closed = moved.split_off(n);
    let mut out: Vec<Option<OwnedFd>> = (0..group.len()).map(|_| None).collect();
    for (&k, &r) in which.iter().zip(&moved) {
        let want: usize = group[k].iter().map(|p| p.1).sum();
        if r >= 0 && r as usize == want {
            out[k] = mine[k].take();
        }
    }
    Ok((out, closed))
}
