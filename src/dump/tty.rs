//! Terminals the tree holds. With `--shell-job` a terminal is the
//! caller's and goes in as a plain file (restore puts the job on its
//! own). Otherwise crit dumps what a container has: the slave end of a
//! pty whose master is outside the tree (runc keeps it and hands it to
//! the manager's console socket), when asked with `--orphan-pts-master`
//! (CRIU's RPC option of that name, which runc always sets). It goes in
//! as CRIU writes it: a REG entry for the slave's path, a TTY entry
//! naming it, and the terminal's state in tty-info.img (settings, size,
//! session and foreground group). A pty pair inside the tree, and other
//! terminals, are refused.

use super::context::DumpCtx;
use super::error::DumpError;
use super::fdscan::Fd;
use super::files::{reg_entry, FD_REG, FD_TTY};
use crate::error::Result;
use crate::image::pb;
use crate::model::tty::{info_id, pts_index, termios_entry};
use crate::sys::tty;
use std::os::fd::AsFd;

/// Major numbers of Unix98 pty masters.
const PTM_MAJORS: std::ops::RangeInclusive<u64> = 128..=135;

/// What kind of terminal device `rdev` is, for the dump.
fn is_pty_master(rdev: u64) -> bool {
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    PTM_MAJORS.contains(&major) || (major == 5 && minor == 2)
}

/// A device number as /proc/PID/stat's tty_nr shows it (the kernel's
/// new_encode_dev).
fn stat_encoding(rdev: u64) -> u32 {
    let (major, minor) = (
        nix::sys::stat::major(rdev) as u32,
        nix::sys::stat::minor(rdev) as u32,
    );
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Checks that terminal fd `fd` of `pid` can be dumped and says how: as
/// a plain file (a shell job's) or as a pty slave (TTY).
pub fn file_type(ctx: &DumpCtx, pid: i32, fd: &Fd, path: &str) -> Result<i32> {
    if ctx.opts.shell_job {
        return Ok(FD_REG);
    }
    if is_pty_master(fd.st.rdev) {
        return Err(DumpError::PtyMaster { pid, fd: fd.fd }.into());
    }
    // Only a pty's slave, and only when asked.
    let Some(index) = pts_index(fd.st.rdev).filter(|_| ctx.opts.orphan_pts_master) else {
        return Err(DumpError::Terminal {
            pid,
            fd: fd.fd,
            path: path.to_string(),
        }
        .into());
    };
    // As CRIU: restore hands over one master, so one pty at most.
    if let Some(other) = ctx.files.ttys.iter().find_map(|t| {
        let i = t.pty.as_ref().map_or(index, |p| p.index);
        (i != index).then_some(i)
    }) {
        return Err(DumpError::TwoPtys {
            pid,
            fd: fd.fd,
            index,
            other,
        }
        .into());
    }
    Ok(FD_TTY)
}

/// Writes the entries of pty slave fd `fd` of `pid` (file id `id`), and
/// the pty's tty-info entry the first time it is seen.
pub fn dump_slave(ctx: &mut DumpCtx, pid: i32, fd: &Fd, id: u32, path: &str) -> Result<()> {
    let index = pts_index(fd.st.rdev).unwrap_or(0);
    let tty_info_id = info_id(index);
    if !ctx.files.ttys.iter().any(|t| t.id == tty_info_id) {
        let info = info_entry(ctx, pid, fd, index)?;
        ctx.files.ttys.push(info);
    }
    let regf_id = ctx.files.new_id();
    let mut reg = reg_entry(regf_id, path, &fd.st, fd.flags, 0);
    reg.fown = fd.fown;
    reg.mnt_id = ctx.ns.mnt_id_of(fd.mnt_id);
    ctx.files.push(FD_REG, regf_id, |e| e.reg = Some(reg));
    ctx.files.push(FD_TTY, id, |e| {
        e.tty = Some(pb::TtyFileEntry {
            id,
            tty_info_id,
            flags: fd.flags,
            fown: fd.fown,
            regf_id: Some(regf_id),
        })
    });
    Ok(())
}

/// The pty's state, read through crit's copy of the fd; its session and
/// foreground group from the task of the tree it is the controlling
/// terminal of (in the tree's pids).
fn info_entry(ctx: &DumpCtx, pid: i32, fd: &Fd, index: u32) -> Result<pb::TtyInfoEntry> {
    let copy = ctx.frozen.getfd(pid, fd.fd)?;
    let f = copy.as_fd();
    let fail = |source| DumpError::TtyState {
        pid,
        fd: fd.fd,
        source,
    };
    let termios = tty::termios(f).map_err(fail)?;
    let locked = tty::locked_termios(f).map_err(fail)?;
    let ws = tty::winsize(f).map_err(fail)?;
    let exclusive = tty::exclusive(f).map_err(fail)?;
    let nr = stat_encoding(fd.st.rdev);
    let (mut sid, mut pgrp) = (0, 0);
    if let Some(leader) = ctx
        .frozen
        .tasks
        .iter()
        .find(|t| t.stat.tty_nr == nr && t.pid == t.sid)
    {
        sid = ctx.ns.pids.get(leader.pid) as u32;
        pgrp = ctx.ns.pids.get(leader.stat.tpgid).max(0) as u32;
    } else if let Some(t) = ctx.frozen.tasks.iter().find(|t| t.stat.tty_nr == nr) {
        // Its session leader is outside the tree: the session cannot
        // come back around it.
        return Err(DumpError::TtySession {
            pid: t.pid,
            sid: t.sid,
            index,
        }
        .into());
    }
    Ok(pb::TtyInfoEntry {
        id: info_id(index),
        r#type: pb::TtyType::Pty as i32,
        locked: false,
        exclusive,
        packet_mode: false,
        sid,
        pgrp,
        rdev: fd.st.rdev as u32,
        termios: Some(termios_entry(&termios)),
        termios_locked: Some(termios_entry(&locked)),
        winsize: Some(pb::WinsizeEntry {
            ws_row: ws.row.into(),
            ws_col: ws.col.into(),
            ws_xpixel: ws.xpixel.into(),
            ws_ypixel: ws.ypixel.into(),
        }),
        pty: Some(pb::TtyPtyEntry { index }),
        dev: Some(fd.st.dev as u32),
        uid: Some(fd.st.uid),
        gid: Some(fd.st.gid),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pty_devices() {
        let d = nix::sys::stat::makedev;
        assert!(is_pty_master(d(5, 2)));
        assert!(is_pty_master(d(128, 7)));
        assert!(!is_pty_master(d(136, 0)));
        assert_eq!(stat_encoding(d(136, 0)), 34816);
    }
}
