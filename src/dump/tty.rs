//! Terminals the tree holds, as CRIU 4.2 writes them: for each pty end
//! a REG entry with its path (`/dev/ptmx`, `/dev/pts/N`), a TTY entry
//! naming it (`regf_id`) that the fds point at, and the end's state in
//! tty-info.img (id `index << 1` for a slave, `| 1` for a master:
//! settings, locked settings, size, owner, session and foreground group,
//! and on a master the lock and packet mode).
//!
//! - A pty pair inside the tree (tmux, screen, script, sshd: a task holds
//!   the master, a task of the tree the slave) is dumped whole, with or
//!   without `--shell-job`; restore makes a pty of the same index again.
//! - A slave whose master is outside: with `--shell-job` it is the
//!   caller's terminal and goes in as a plain file (restore puts the job
//!   on its own); with `--orphan-pts-master` (CRIU's RPC option, which
//!   runc always sets: a container's console) as a pty slave, one at
//!   most, as restore hands one master over.
//! - Other terminals are refused, and so is a pty whose session leader
//!   is outside the tree.
//!
//! Bytes queued in a pair's ends go into tty-data.img once everything
//! else is collected ([`super::ptyqueue`]).

use super::context::DumpCtx;
use super::error::DumpError;
use super::fdscan::Fd;
use super::files::{reg_entry, FD_REG, FD_TTY};
use super::procfs::{self, fdinfo_field};
use crate::error::Result;
use crate::image::pb;
use crate::model::tty::{info_id, master_info_id, pts_index, pts_rdev, termios_entry};
use crate::sys::tty;
use std::collections::HashSet;
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

/// Which end of which pty a terminal fd is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Master(u32),
    /// `paired`: a task of the tree holds its master.
    Slave {
        index: u32,
        paired: bool,
    },
    /// Not a pty (a console, a serial line, /dev/tty).
    Other,
}

/// The index of the pty whose master is `pid`'s fd `fd`: from its
/// fdinfo (`info`, "tty-index:"), else asked of a copy (TIOCGPTN).
fn master_index(ctx: &DumpCtx, pid: i32, fd: i32, info: &str) -> Result<u32> {
    if let Some(i) = fdinfo_field(info, "tty-index").and_then(|v| v.parse().ok()) {
        return Ok(i);
    }
    let copy = ctx.frozen.getfd(pid, fd)?;
    tty::pty_index(copy.as_fd()).map_err(|source| DumpError::TtyState { pid, fd, source }.into())
}

/// The indexes of the ptys whose master a task of the tree holds, looked
/// for once (at the first terminal met: a tree without one pays nothing).
fn masters<'c>(ctx: &'c mut DumpCtx) -> Result<&'c HashSet<u32>> {
    if ctx.files.pty_masters.is_none() {
        let mut found = HashSet::new();
        for t in ctx.frozen.tasks.iter().filter(|t| !t.zombie) {
            for n in super::fdscan::list(t.pid)? {
                let at = |what: String| procfs::path(t.pid, &what);
                let proc_err = |path, source| DumpError::Proc {
                    pid: t.pid,
                    path,
                    source,
                };
                let m = std::fs::metadata(at(format!("fd/{n}")))
                    .map_err(|e| proc_err(at(format!("fd/{n}")), e))?;
                let chr = std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type());
                if !chr || !is_pty_master(std::os::unix::fs::MetadataExt::rdev(&m)) {
                    continue;
                }
                let info = std::fs::read_to_string(at(format!("fdinfo/{n}")))
                    .map_err(|e| proc_err(at(format!("fdinfo/{n}")), e))?;
                found.insert(master_index(ctx, t.pid, n, &info)?);
            }
        }
        ctx.files.pty_masters = Some(found);
    }
    Ok(ctx.files.pty_masters.get_or_insert_with(HashSet::new))
}

fn end_of(ctx: &mut DumpCtx, pid: i32, fd: &Fd) -> Result<End> {
    if is_pty_master(fd.st.rdev) {
        return Ok(End::Master(master_index(ctx, pid, fd.fd, &fd.info)?));
    }
    match pts_index(fd.st.rdev) {
        Some(index) => {
            let paired = masters(ctx)?.contains(&index);
            Ok(End::Slave { index, paired })
        }
        None => Ok(End::Other),
    }
}

/// Checks that terminal fd `fd` of `pid` can be dumped and says how: as
/// a pty end (TTY) or as a plain file (a shell job's terminal).
pub fn file_type(ctx: &mut DumpCtx, pid: i32, fd: &Fd, path: &str) -> Result<i32> {
    let index = match end_of(ctx, pid, fd)? {
        End::Master(_) | End::Slave { paired: true, .. } => return Ok(FD_TTY),
        _ if ctx.opts.shell_job => return Ok(FD_REG),
        // A slave whose master is outside, and only when asked.
        End::Slave { index, .. } if ctx.opts.orphan_pts_master => index,
        _ => {
            return Err(DumpError::Terminal {
                pid,
                fd: fd.fd,
                path: path.to_string(),
            }
            .into())
        }
    };
    // As CRIU: restore hands over one master, so one such pty at most.
    let masters = masters(ctx)?.clone();
    if let Some(other) = ctx.files.ttys.iter().find_map(|t| {
        let i = t.pty.as_ref().map_or(index, |p| p.index);
        (i != index && !masters.contains(&i)).then_some(i)
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

/// Writes the entries of terminal fd `fd` of `pid` (file id `id`, at
/// `path`, on mount `mnt`) as [`file_type`] decided.
pub fn dump_fd(
    ctx: &mut DumpCtx,
    pid: i32,
    fd: &Fd,
    id: u32,
    path: &str,
    mnt: Option<i32>,
) -> Result<()> {
    match end_of(ctx, pid, fd)? {
        End::Master(index) => dump_end(ctx, pid, fd, id, path, index, true),
        End::Slave { index, paired } if paired || !ctx.opts.shell_job => {
            dump_end(ctx, pid, fd, id, path, index, false)
        }
        // --shell-job: the terminal is the caller's; restore reopens it.
        _ => ctx.files.reg_fd(pid, fd, id, path, false, mnt),
    }
}

/// The REG and TTY entries of one end of pty `index`, and its tty-info
/// entry the first time that end is seen.
fn dump_end(
    ctx: &mut DumpCtx,
    pid: i32,
    fd: &Fd,
    id: u32,
    path: &str,
    index: u32,
    master: bool,
) -> Result<()> {
    let tty_info_id = match master {
        true => master_info_id(index),
        false => info_id(index),
    };
    if !ctx.files.ttys.iter().any(|t| t.id == tty_info_id) {
        let info = info_entry(ctx, pid, fd, index, master)?;
        ctx.files.ttys.push(info);
        ctx.files.tty_holders.insert(tty_info_id, (pid, fd.fd));
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

/// One end's state, read through crit's copy of the fd; the pty's
/// session and foreground group from the task of the tree it is the
/// controlling terminal of (in the tree's pids), which is what TIOCGSID
/// and TIOCGPGRP tell on either end.
fn info_entry(
    ctx: &DumpCtx,
    pid: i32,
    fd: &Fd,
    index: u32,
    master: bool,
) -> Result<pb::TtyInfoEntry> {
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
    let (pty_locked, packet_mode) = match master {
        true => (
            tty::pty_locked(f).map_err(fail)?,
            tty::packet_mode(f).map_err(fail)?,
        ),
        false => (false, false),
    };
    let nr = stat_encoding(pts_rdev(index));
    let (mut sid, mut pgrp) = (0, 0);
    if let Some(leader) = ctx
        .frozen
        .tasks
        .iter()
        .find(|t| t.stat.tty_nr == nr && t.pid == t.sid)
    {
        // Restore makes the pty the leader's controlling terminal through
        // a descriptor of its own (crit restore cannot yet open one for
        // it): refused here, while the tree still runs.
        if !holds_pty(leader.pid, index) {
            let pid = leader.pid;
            return Err(DumpError::PtyLeaderNoFd { pid, index }.into());
        }
        sid = ctx.ns.pids.get(leader.pid) as u32;
        pgrp = ctx.ns.pids.get(leader.stat.tpgid).max(0) as u32;
    } else if let Some(t) = ctx.frozen.tasks.iter().find(|t| t.stat.tty_nr == nr) {
        // Its session leader is outside the tree: the session cannot
        // come back around it.
        let (pid, sid) = (t.pid, t.sid);
        return Err(match master || masters_known(ctx, index) {
            true => DumpError::PtySession { pid, sid, index },
            false => DumpError::TtySession { pid, sid, index },
        }
        .into());
    }
    Ok(pb::TtyInfoEntry {
        id: match master {
            true => master_info_id(index),
            false => info_id(index),
        },
        r#type: pb::TtyType::Pty as i32,
        locked: pty_locked,
        exclusive,
        packet_mode,
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

/// Whether task `pid` holds a descriptor on either end of pty `index`.
fn holds_pty(pid: i32, index: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    super::fdscan::list(pid)
        .unwrap_or_default()
        .into_iter()
        .any(|n| {
            let Ok(m) = std::fs::metadata(procfs::path(pid, &format!("fd/{n}"))) else {
                return false;
            };
            if pts_index(m.rdev()) == Some(index) {
                return true;
            }
            is_pty_master(m.rdev())
                && std::fs::read_to_string(procfs::path(pid, &format!("fdinfo/{n}")))
                    .ok()
                    .and_then(|i| fdinfo_field(&i, "tty-index").and_then(|v| v.parse().ok()))
                    == Some(index)
        })
}

/// Whether a task of the tree holds pty `index`'s master (as far as
/// [`masters`] has looked).
fn masters_known(ctx: &DumpCtx, index: u32) -> bool {
    ctx.files
        .pty_masters
        .as_ref()
        .is_some_and(|m| m.contains(&index))
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
        assert_eq!(stat_encoding(pts_rdev(300)), stat_encoding(d(137, 44)));
    }
}
