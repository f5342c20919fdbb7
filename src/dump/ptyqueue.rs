//! Bytes queued in the tree's pty pairs, dumped in CRIU 4.2's
//! tty-data.img: once everything else is collected, each end of a pair
//! both of whose ends the tree holds is read out, and the image gets one
//! entry per end that had bytes for its reader, `tty_id` being the end's
//! tty-info id. Restore queues the bytes again through the other end.
//!
//! Reading is destructive: where the tree runs on (`--leave-running`, or
//! a dump that fails after the read) the bytes are queued again before
//! the tree is let go ([`Requeue::put_back`]). So that they come back in
//! their order, an end is read out whole (what the line discipline and
//! the kernel's buffers behind it hold; CRIU stops at 16 KiB, and what it
//! writes back then goes after what it left) or not at all:
//!
//! - the master's bytes (the slave's output) are read out whole. In
//!   packet mode each read starts with a status byte; the entry holds the
//!   first read's status byte and then the data, as CRIU's does for what
//!   one read gives (restore drops the first byte);
//! - a slave in canonical mode is not read: only whole lines come out of
//!   it, and one queued after a partial line, or an end of file typed
//!   ahead, would come back in another order or shape. Its bytes stay
//!   where they are: with `-R` the tasks find them as they were; for a
//!   killed tree they are named on stderr and lost;
//! - a slave in non-canonical mode (a shell's line editor, an editor) is
//!   read out whole.

use super::context::DumpCtx;
use crate::error::Result;
use crate::image::pb;
use crate::model::tty::{info_id, master_info_id};
use crate::sys::tty;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

/// The most bytes read out of one end: far above what a pty holds (4 KiB
/// in the line discipline, 64 KiB behind it); a bound for safety.
pub const BOUND: usize = 1 << 20;

/// One pair's bytes, with crit's copies of its ends to queue them again.
struct Pair {
    index: u32,
    master: OwnedFd,
    slave: OwnedFd,
    /// Read from the master (the slave's output), status bytes left out.
    for_master: Vec<u8>,
    /// Read from the slave (input typed into the master).
    for_slave: Vec<u8>,
}

/// What was read out of the tree's ptys, kept until the tree is let go.
#[derive(Default)]
pub struct Requeue(Mutex<Vec<Pair>>);

impl Requeue {
    /// Queues every pair's bytes again (once; the tree is still frozen):
    /// for a tree that runs on. Returns what could not be put back.
    pub fn put_back(&self) -> Vec<String> {
        let pairs = match self.0.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return Vec::new(),
        };
        let mut warnings = Vec::new();
        for p in pairs {
            let mut note = |end: &str, n: usize, r: std::io::Result<usize>| {
                let why = match r {
                    Ok(done) if done == n => return,
                    Ok(done) => format!("{} did not fit", n - done),
                    Err(e) => format!("{n} could not be queued again: {e}"),
                };
                warnings.push(format!(
                    "pty {}: of {n} byte(s) read out of its {end}, {why}",
                    p.index
                ));
            };
            if !p.for_master.is_empty() {
                let r = tty::requeue_output(p.slave.as_fd(), &p.for_master);
                note("master", p.for_master.len(), r);
            }
            if !p.for_slave.is_empty() {
                let r = tty::requeue_input(p.master.as_fd(), p.slave.as_fd(), &p.for_slave);
                note("slave", p.for_slave.len(), r);
            }
        }
        warnings
    }
}

/// Reads out the bytes queued in every pty pair the tree holds both ends
/// of into tty-data.img's entries (`ctx.files.tty_data`), keeping them in
/// `back` too. Ends whose peer is outside the tree, and canonical
/// slaves, keep their bytes; any that has some is named on stderr.
pub fn read_out(ctx: &mut DumpCtx, back: &Requeue) -> Result<()> {
    // CRIU's order: pairs last seen first, in each the end seen first.
    let mut order: Vec<(u32, bool)> = Vec::new();
    for t in &ctx.files.ttys {
        if let Some(p) = &t.pty {
            if !order.iter().any(|&(i, _)| i == p.index) {
                order.push((p.index, t.id & 1 == 1));
            }
        }
    }
    order.reverse();
    for (index, master_first) in order {
        let m = ctx.files.tty_holders.get(&master_info_id(index)).copied();
        let s = ctx.files.tty_holders.get(&info_id(index)).copied();
        let (Some(m), Some(s)) = (m, s) else {
            for (pid, fd) in m.into_iter().chain(s) {
                left_queued(ctx, index, pid, fd, "its other end is outside the tree");
            }
            continue;
        };
        let packet = ctx
            .files
            .ttys
            .iter()
            .any(|t| t.id == master_info_id(index) && t.packet_mode);
        let master = ctx.frozen.getfd(m.0, m.1)?;
        let slave = ctx.frozen.getfd(s.0, s.1)?;
        let fail = |(pid, fd): (i32, i32)| {
            move |source| {
                crate::error::Error::from(super::error::DumpError::TtyState { pid, fd, source })
            }
        };
        let canonical = tty::termios(slave.as_fd()).map_err(fail(s))?.lflag & libc::ICANON != 0;
        let reads = tty::read_queued(master.as_fd(), BOUND).map_err(fail(m))?;
        let skip = usize::from(packet);
        let for_master: Vec<u8> = reads
            .iter()
            .flat_map(|r| &r[skip.min(r.len())..])
            .copied()
            .collect();
        // As CRIU's entry for one read: its status byte, then the data.
        let raw_master = match (packet, reads.first()) {
            (true, Some(r)) if !for_master.is_empty() => [&r[..1], &for_master[..]].concat(),
            _ => for_master.clone(),
        };
        let slave_read = match canonical {
            true => Ok(Vec::new()),
            false => tty::read_queued(slave.as_fd(), BOUND)
                .map(|r| r.concat())
                .map_err(fail(s)),
        };
        let for_slave = slave_read.as_ref().cloned().unwrap_or_default();
        // Kept first: what was read must be queued again should the dump
        // fail (here, or later).
        if let Ok(mut p) = back.0.lock() {
            p.push(Pair {
                index,
                master,
                slave,
                for_master,
                for_slave,
            });
        }
        let for_slave = slave_read?;
        let mut ends = [
            (master_info_id(index), &raw_master),
            (info_id(index), &for_slave),
        ];
        if !master_first {
            ends.reverse();
        }
        for (id, data) in ends {
            if !data.is_empty() {
                ctx.files.tty_data.push(pb::TtyDataEntry {
                    tty_id: id,
                    data: data.clone(),
                });
            }
        }
        left_queued(ctx, index, m.0, m.1, "more than crit reads");
        let why = match canonical {
            true => "whole lines for a canonical reader, left in place",
            false => "more than crit reads",
        };
        left_queued(ctx, index, s.0, s.1, why);
    }
    Ok(())
}

/// Names on stderr the bytes still queued for the reader of `pid`'s fd
/// `fd`, an end of pty `index`: they are not dumped (`why` says why).
fn left_queued(ctx: &DumpCtx, index: u32, pid: i32, fd: i32, why: &str) {
    let Ok(copy) = ctx.frozen.getfd(pid, fd) else {
        return;
    };
    if let Ok(n @ 1..) = tty::queued(copy.as_fd()) {
        let end = match ctx.files.tty_holders.get(&master_info_id(index)) {
            Some(&h) if h == (pid, fd) => "master",
            _ => "slave",
        };
        ctx.log.warn(&format!(
            "pty {index}: {n} byte(s) queued for its {end} (pid {pid} fd {fd}) are not dumped ({why})"
        ));
    }
}
