//! Bytes queued in the tree's pty pairs, dumped as CRIU 4.2 dumps them:
//! once everything else is collected, each end of a pair both of whose
//! ends the tree holds is read out (at most 16 KiB per end, CRIU's bound;
//! in canonical mode only whole lines), and tty-data.img gets one entry
//! per end that had bytes for its reader, `tty_id` being the end's
//! tty-info id. A master in packet mode gives a status byte before each
//! read's bytes: CRIU 4.2 keeps it in the image, and so does crit
//! (restore drops the first byte). Restore queues the bytes again
//! through the other end.
//!
//! Reading is destructive: where the tree runs on (`--leave-running`, or
//! a dump that fails after the read) the bytes are queued again before
//! the tree is let go ([`Requeue::put_back`]), so its tasks find them as
//! they were. Bytes past the bound stay in the pty and are named on
//! stderr; so does a partial line of a canonical slave, unnamed (the
//! kernel counts only whole lines there).

use super::context::DumpCtx;
use crate::error::Result;
use crate::image::pb;
use crate::model::tty::{info_id, master_info_id};
use crate::sys::tty;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

/// The most bytes read out of one end (CRIU's buffer).
pub const BOUND: usize = 16384;

/// One pair's bytes, with crit's copies of its ends to queue them again.
struct Pair {
    index: u32,
    master: OwnedFd,
    slave: OwnedFd,
    /// Read from the master (the slave's output).
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
            let mut note = |end: &str, n: usize, r: std::io::Result<()>| {
                if let Err(e) = r {
                    warnings.push(format!(
                        "pty {}: {n} byte(s) read out of its {end} could not be queued again: {e}",
                        p.index
                    ));
                }
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
/// `back` too. Ends whose peer is outside the tree keep their bytes; any
/// that has some is named on stderr.
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
                left_queued(ctx, index, pid, fd, "");
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
        let read = |f: &OwnedFd, (pid, fd): (i32, i32)| {
            tty::read_queued(f.as_fd(), BOUND).map_err(|source| {
                crate::error::Error::from(super::error::DumpError::TtyState { pid, fd, source })
            })
        };
        // As CRIU writes them: a packet-mode master's reads with their
        // status bytes; the bytes to queue again without.
        let reads = read(&master, m)?;
        let (raw_master, for_master) = (
            reads.concat(),
            reads
                .iter()
                .flat_map(|r| &r[usize::from(packet).min(r.len())..])
                .copied()
                .collect::<Vec<u8>>(),
        );
        let slave_read = read(&slave, s).map(|r| r.concat());
        let for_slave = slave_read.as_ref().cloned().unwrap_or_default();
        let pair = Pair {
            index,
            master,
            slave,
            for_master,
            for_slave,
        };
        // Kept first: what was read must be queued again should the dump
        // fail (here, or later).
        if let Ok(mut p) = back.0.lock() {
            p.push(pair);
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
        left_queued(ctx, index, m.0, m.1, " beyond 16 KiB");
        left_queued(ctx, index, s.0, s.1, " beyond 16 KiB");
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
            "pty {index}: {n} byte(s) queued for its {end} (pid {pid} fd {fd}){why} are not dumped"
        ));
    }
}
