//! Ptys again. A pty slave the tree held whose master was outside it (a
//! container's console, dumped with orphan_pts_master) comes back as a
//! new pty of the same index in the same devpts: crit opens that
//! devpts' `ptmx` until the kernel hands out the index (a devpts this
//! restore mounted starts at 0), unlocks it, opens the slave by its
//! path, sets its owner, mode, settings and size as dumped, and hands
//! the master to whoever restores (the RPC client's orphan-pts-master
//! notification, or `--console-socket`), as CRIU does. The session leader
//! makes the slave its controlling terminal again (child.rs), and crit
//! sets its foreground group once every group exists (task.rs).
//!
//! A bind mount of one pty of a devpts (runc binds pts/0 onto
//! /dev/console) needs the pty before it can be made: the mount builder
//! makes it right after the devpts ([`Masters::make_for_binds`]) and the
//! slave's files take that master.

use super::error::FileError;
use crate::action::Notifier;
use crate::error::Result;
use crate::image::pb;
use crate::model::tty::termios_of;
use crate::sys::tty;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How many ptys of lower index may be open in between when looking for
/// an index (CRIU's bound too).
const SEARCH: u32 = 32;

/// Masters made ahead of their slaves' files, by (devpts directory as
/// the tree sees it, index).
#[derive(Default)]
pub struct Masters(Mutex<HashMap<(PathBuf, u32), OwnedFd>>);

impl Masters {
    /// Right after devpts `dir` (`seen_as` in the tree) is mounted: the
    /// ptys `indexes` that bind mounts of it show.
    pub fn make_for_binds(&self, dir: &Path, seen_as: &Path, indexes: &[u32]) -> Result<()> {
        for &i in indexes {
            let m = open_index(dir, i).map_err(|why| super::ns::NsError::Mount {
                mountpoint: seen_as.display().to_string(),
                fstype: "devpts".into(),
                why: format!("pty {i} for a bind mount of it: {why}"),
            })?;
            if let Ok(mut made) = self.0.lock() {
                made.insert((seen_as.to_path_buf(), i), m);
            }
        }
        Ok(())
    }

    fn take(&self, dir: &Path, index: u32) -> Option<OwnedFd> {
        self.0.lock().ok()?.remove(&(dir.to_path_buf(), index))
    }
}

/// Opens `dir/ptmx` until it gives pty `index`; why not, if it cannot.
fn open_index(dir: &Path, index: u32) -> std::result::Result<OwnedFd, String> {
    let ptmx = dir.join("ptmx");
    let fail = |why: String| format!("{}: {why}", ptmx.display());
    // Lower ones stay open while looking, so the kernel moves on.
    let mut lower = Vec::new();
    loop {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&ptmx)
            .map_err(|e| fail(e.to_string()))?;
        let got = tty::pty_index(f.as_fd()).map_err(|e| fail(e.to_string()))?;
        if got == index {
            return Ok(f.into());
        }
        if got > index || lower.len() as u32 >= SEARCH {
            return Err(fail(format!(
                "the kernel gave index {got}: {index} is taken"
            )));
        }
        lower.push(f);
    }
}

/// The tty-info of a TTY file entry, checked to be a pty slave whose
/// master is not in the images.
fn slave_info<'p>(
    plan: &'p super::plan::Plan,
    pid: u32,
    fd: u32,
    tty: &pb::TtyFileEntry,
) -> Result<(&'p pb::TtyInfoEntry, u32)> {
    let bad = |why: &str| FileError::TtyImage {
        pid,
        fd,
        why: why.to_string(),
    };
    let info = plan
        .ttys
        .get(&tty.tty_info_id)
        .ok_or_else(|| bad("its tty-info entry is missing"))?;
    let index = match (info.r#type == pb::TtyType::Pty as i32, &info.pty) {
        (true, Some(p)) => p.index,
        _ => return Err(bad("not a pty (only ptys are restored)").into()),
    };
    if info.id & 1 == 1 || plan.ttys.contains_key(&(info.id | 1)) {
        return Err(bad("a pty pair inside the tree (not supported by crit restore)").into());
    }
    Ok((info, index))
}

/// Opens TTY file `tty` of `pid` (at its `fd`): a new pty in the slave's
/// devpts, its master handed over. `made` holds the indexes handed over
/// already (a second file of the same pty opens the slave again).
pub fn open_slave(
    plan: &super::plan::Plan,
    (pid, fd): (u32, u32),
    tty: &pb::TtyFileEntry,
    notify: &Notifier,
    made: &mut Vec<u32>,
) -> Result<OwnedFd> {
    let (info, index) = slave_info(plan, pid, fd, tty)?;
    let reg = tty
        .regf_id
        .and_then(|r| plan.files.get(&r))
        .and_then(|f| f.reg.as_ref())
        .ok_or_else(|| FileError::TtyImage {
            pid,
            fd,
            why: "its path (regf_id) is missing".into(),
        })?;
    let path = Path::new(&reg.name);
    let dir = path.parent().unwrap_or(Path::new("/dev/pts"));
    let fail = |why: String| FileError::Pty {
        pid,
        fd,
        path: path.to_path_buf(),
        index,
        why,
    };
    if made.contains(&index) {
        return open_path(path, tty.flags).map_err(|e| fail(e.to_string()).into());
    }
    if !notify.takes_masters() {
        return Err(fail(
            "its master was outside the tree, and this restore has nowhere to hand a new one (restore through crit swrk with orphan_pts_master, or with --console-socket)".into(),
        )
        .into());
    }
    let master = match plan
        .ns
        .mounts
        .as_ref()
        .and_then(|m| m.ptys.take(dir, index))
    {
        Some(m) => m,
        None => open_index(dir, index).map_err(fail)?,
    };
    tty::set_pty_lock(master.as_fd(), false).map_err(|e| fail(e.to_string()))?;
    let slave = open_path(path, tty.flags).map_err(|e| fail(e.to_string()))?;
    set_state(&slave, info, reg.mode).map_err(|e| fail(e.to_string()))?;
    notify.hand_master(index, master.as_fd())?;
    made.push(index);
    Ok(slave)
}

fn open_path(path: &Path, flags: u32) -> std::io::Result<OwnedFd> {
    let acc = flags as i32 & libc::O_ACCMODE;
    let f = std::fs::OpenOptions::new()
        .read(acc != libc::O_WRONLY)
        .write(acc != libc::O_RDONLY)
        .custom_flags((flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND)) | libc::O_NOCTTY)
        .open(path)?;
    Ok(f.into())
}

/// Owner, mode, locked settings, settings and size, as dumped.
fn set_state(slave: &OwnedFd, info: &pb::TtyInfoEntry, mode: Option<u32>) -> std::io::Result<()> {
    let f = slave.as_fd();
    if let (Some(uid), Some(gid)) = (info.uid, info.gid) {
        nix::unistd::fchown(f, Some(uid.into()), Some(gid.into()))?;
    }
    if let Some(m) = mode {
        nix::sys::stat::fchmod(
            f,
            nix::sys::stat::Mode::from_bits_truncate((m & 0o7777) as _),
        )?;
    }
    let t = |e: &Option<pb::TermiosEntry>| e.as_ref().and_then(termios_of);
    if let Some(l) = t(&info.termios_locked) {
        // Locking needs CAP_SYS_ADMIN; already so is as good.
        if let Err(e) = tty::set_locked_termios(f, &l) {
            if tty::locked_termios(f).ok() != Some(l) {
                return Err(e);
            }
        }
    }
    if let Some(s) = t(&info.termios) {
        tty::set_termios(f, &s)?;
    }
    if let Some(w) = &info.winsize {
        tty::set_winsize(
            f,
            &tty::Winsize {
                row: w.ws_row as u16,
                col: w.ws_col as u16,
                xpixel: w.ws_xpixel as u16,
                ypixel: w.ws_ypixel as u16,
            },
        )?;
    }
    Ok(())
}
