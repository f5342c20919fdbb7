//! Ptys again, made by crit before any task exists.
//!
//! - A pty pair inside the tree (a task held its master: tmux, script,
//!   sshd) comes back as a pty of the same index ([`open_pairs`]): crit
//!   opens the master's path (`/dev/ptmx`, or a devpts' `ptmx`) until
//!   the kernel hands out the index, unlocks it, sets its settings, size
//!   and packet mode, opens every slave file by its path, sets the
//!   slave's owner, mode, settings and size, and locks it again if it was.
//!   The tasks inherit the ends.
//! - A pty slave whose master was outside the tree (a container's
//!   console, dumped with orphan_pts_master) comes back as a new pty of
//!   the same index in the same devpts ([`open_slave`]), its master
//!   handed to whoever restores (the RPC client's orphan-pts-master
//!   notification, or `--console-socket`), as CRIU does.
//!
//! - The bytes queued in a pair at dump (tty-data.img) are queued again
//!   through the other end once the pair is set up ([`requeue`]).
//!
//! Either way a session leader makes the pty its controlling terminal
//! again before it forks its children (child.rs), and crit sets its
//! foreground group once every group exists (task.rs). An index taken on
//! this machine fails the restore, naming it, before any task exists.
//!
//! A bind mount of one pty of a devpts (runc binds pts/0 onto
//! /dev/console) needs the pty before it can be made: the mount builder
//! makes it right after the devpts ([`Masters::make_for_binds`]) and the
//! slave's files take that master.

use super::error::FileError;
use super::plan::Plan;
use super::reservoir::Reservoir;
use crate::action::Notifier;
use crate::error::Result;
use crate::image::pb;
use crate::model::tty::termios_of;
use crate::sys::tty;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
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
            let m = open_index(&dir.join("ptmx"), i).map_err(|why| super::ns::NsError::Mount {
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

/// Opens `ptmx` (read-write, not as a controlling terminal) until it
/// gives pty `index`; why not, if it cannot.
fn open_index(ptmx: &Path, index: u32) -> std::result::Result<OwnedFd, String> {
    let fail = |why: String| format!("{}: {why}", ptmx.display());
    // Lower ones stay open while looking, so the kernel moves on.
    let mut lower = Vec::new();
    loop {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(ptmx)
            .map_err(|e| fail(e.to_string()))?;
        let got = tty::pty_index(f.as_fd()).map_err(|e| fail(e.to_string()))?;
        if got == index {
            return Ok(f.into());
        }
        if got > index {
            return Err(fail(format!(
                "pty index {index} is taken on this machine (the kernel gave {got})"
            )));
        }
        if lower.len() as u32 >= SEARCH {
            return Err(fail(format!(
                "the kernel gave {got}: more than {SEARCH} free indexes below {index}"
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
    // Ptys whose master a task holds were made already (open_pairs).
    if info.id & 1 == 1 || plan.ttys.contains_key(&(info.id | 1)) {
        return Err(bad("the images record its master, which no task holds").into());
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
        None => open_index(&dir.join("ptmx"), index).map_err(fail)?,
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
    set_params(f, info)
}

/// Locked settings, settings and size, as dumped.
fn set_params(f: BorrowedFd, info: &pb::TtyInfoEntry) -> std::io::Result<()> {
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

/// One end of a pty a task holds: its file id, the first (pid, fd)
/// holding it, its TTY entry and its path (`regf_id`'s; CRIU's own
/// default without one).
struct End<'p> {
    id: u32,
    at: (u32, u32),
    tty: &'p pb::TtyFileEntry,
    path: PathBuf,
    mode: Option<u32>,
}

/// The ends of one pty the tasks hold.
#[derive(Default)]
struct Ends<'p> {
    masters: Vec<End<'p>>,
    slaves: Vec<End<'p>>,
}

/// Makes every pty whose master a task holds (a pair inside the tree:
/// tmux, script, sshd) before any task exists: its master from ptmx
/// until the kernel gives its index, unlocked, with its settings, size
/// and packet mode; every slave file by its path, the first with the
/// slave's owner, mode, settings and size; then exclusive mode and the
/// lock as dumped. The ends go into the reservoir by file id. A pty
/// whose index is taken here fails the restore, naming it, before any
/// task is forked (what was made is closed again).
pub fn open_pairs(plan: &Plan, res: &mut Reservoir) -> Result<()> {
    let mut ptys: BTreeMap<u32, Ends> = BTreeMap::new();
    let mut seen = HashSet::new();
    for t in plan.live() {
        for fd in &t.fds {
            if !seen.insert(fd.id) || res.by_id.contains_key(&fd.id) {
                continue;
            }
            let Some(tty) = plan.files.get(&fd.id).and_then(|f| f.tty.as_ref()) else {
                continue;
            };
            // Not a pty, or no tty-info: open_slave says what is wrong.
            let Some((index, master)) = plan
                .ttys
                .get(&tty.tty_info_id)
                .filter(|i| i.r#type == pb::TtyType::Pty as i32)
                .and_then(|i| Some((i.pty.as_ref()?.index, i.id & 1 == 1)))
            else {
                continue;
            };
            let reg = tty
                .regf_id
                .and_then(|r| plan.files.get(&r))
                .and_then(|f| f.reg.as_ref());
            let path = match (reg, master) {
                (Some(r), _) => PathBuf::from(&r.name),
                (None, true) => PathBuf::from("/dev/ptmx"),
                (None, false) => PathBuf::from(format!("/dev/pts/{index}")),
            };
            let end = End {
                id: fd.id,
                at: (t.pid, fd.fd),
                tty,
                path,
                mode: reg.and_then(|r| r.mode),
            };
            let e = ptys.entry(index).or_default();
            match master {
                true => e.masters.push(end),
                false => e.slaves.push(end),
            }
        }
    }
    let data = match ptys.is_empty() {
        true => HashMap::new(),
        false => queued_data(plan)?,
    };
    for (index, ends) in &ptys {
        if !ends.masters.is_empty() {
            make_pair(plan, res, *index, ends, &data)?;
        }
    }
    Ok(())
}

/// Makes pty `index`, whose master `ends` has, and its slaves.
fn make_pair(
    plan: &Plan,
    res: &mut Reservoir,
    index: u32,
    ends: &Ends,
    data: &HashMap<u32, Vec<u8>>,
) -> Result<()> {
    let m = &ends.masters[0];
    let (pid, fd) = m.at;
    let fail = |why: String| FileError::Pty {
        pid,
        fd,
        path: m.path.clone(),
        index,
        why,
    };
    if let Some(other) = ends.masters.get(1) {
        let (p, f) = other.at;
        return Err(fail(format!("pid {p} fd {f} holds another master of it")).into());
    }
    check_session(plan, index).map_err(fail)?;
    let minfo = plan
        .ttys
        .get(&m.tty.tty_info_id)
        .ok_or_else(|| fail("its tty-info entry is missing".into()))?;
    let sinfo = plan.ttys.get(&crate::model::tty::info_id(index));
    let sinfo = match (sinfo, ends.slaves.is_empty()) {
        (None, false) => return Err(fail("its slave's tty-info entry is missing".into()).into()),
        (s, _) => s,
    };
    // A bind mount of the slave made the master already (make_for_binds).
    let dir = ends.slaves.first().and_then(|s| s.path.parent());
    let made = dir.and_then(|d| plan.ns.mounts.as_ref()?.ptys.take(d, index));
    let master = match made {
        Some(f) => f,
        None => open_index(&m.path, index).map_err(fail)?,
    };
    let io = |e: std::io::Error| fail(e.to_string());
    let status = m.tty.flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND);
    crate::sys::fdops::set_status_flags(master.as_raw_fd(), status).map_err(io)?;
    tty::set_pty_lock(master.as_fd(), false).map_err(io)?;
    set_params(master.as_fd(), minfo).map_err(io)?;
    if minfo.packet_mode {
        tty::set_packet_mode(master.as_fd(), true).map_err(io)?;
    }
    let mut slaves = Vec::new();
    for s in &ends.slaves {
        let (pid, fd) = s.at;
        let fail = |e: std::io::Error| FileError::Pty {
            pid,
            fd,
            path: s.path.clone(),
            index,
            why: e.to_string(),
        };
        let f = open_path(&s.path, s.tty.flags).map_err(fail)?;
        if let Some(info) = sinfo.filter(|_| slaves.is_empty()) {
            set_state(&f, info, s.mode).map_err(fail)?;
        }
        slaves.push((s.id, f));
    }
    requeue(
        data,
        index,
        minfo.packet_mode,
        master.as_fd(),
        slaves.first().map(|(_, f)| f.as_fd()),
        &mut res.pty_warnings,
    );
    if let Some((_, f)) = slaves
        .first()
        .filter(|_| sinfo.is_some_and(|i| i.exclusive))
    {
        tty::set_exclusive(f.as_fd()).map_err(io)?;
    }
    if minfo.locked {
        tty::set_pty_lock(master.as_fd(), true).map_err(io)?;
    }
    res.by_id.insert(m.id, master);
    res.by_id.extend(slaves);
    res.ptys.push(index);
    Ok(())
}

/// tty-data.img: the bytes each pty end had queued for its reader at
/// dump, by the end's tty-info id (CRIU 4.2 writes it, and so does crit).
fn queued_data(plan: &Plan) -> Result<HashMap<u32, Vec<u8>>> {
    let path = plan.dir.join("tty-data.img");
    if !path.exists() {
        return Ok(HashMap::new());
    }
    let v: Vec<pb::TtyDataEntry> = crate::image::typed::read_all(&path, "TTY_DATA")?;
    Ok(v.into_iter().map(|d| (d.tty_id, d.data)).collect())
}

/// Queues pty `index`'s dumped bytes again, through the other end as
/// CRIU does: the master's through the slave, the slave's through the
/// master (see [`tty::requeue_output`] and [`tty::requeue_input`]). A
/// failure is a warning: a terminal never promised delivery.
fn requeue(
    data: &HashMap<u32, Vec<u8>>,
    index: u32,
    packet: bool,
    master: BorrowedFd,
    slave: Option<BorrowedFd>,
    warnings: &mut Vec<String>,
) {
    use crate::model::tty::{info_id, master_info_id};
    // A packet-mode master's bytes start with the status byte of the
    // dump's read (CRIU 4.2's images have it, crit's too): not data.
    let skip = usize::from(packet);
    let for_master = data
        .get(&master_info_id(index))
        .map(|d| &d[skip.min(d.len())..])
        .filter(|d| !d.is_empty());
    let for_slave = data.get(&info_id(index)).filter(|d| !d.is_empty());
    let Some(slave) = slave else {
        let n = for_master.map_or(0, <[u8]>::len) + for_slave.map_or(0, Vec::len);
        if n > 0 {
            warnings.push(format!(
                "tty-data.img: pty {index}: {n} byte(s) queued at dump are not put back (no task holds its slave)"
            ));
        }
        return;
    };
    let mut put = |end: &str, n: usize, r: std::io::Result<usize>| {
        let why = match r {
            Ok(done) if done == n => return,
            Ok(done) => format!("{} did not fit", n - done),
            Err(e) => format!("none put back: {e}"),
        };
        warnings.push(format!(
            "tty-data.img: pty {index}: of {n} byte(s) queued for its {end}, {why}"
        ));
    };
    if let Some(d) = for_master {
        put("master", d.len(), tty::requeue_output(slave, d));
    }
    if let Some(d) = for_slave {
        put("slave", d.len(), tty::requeue_input(master, slave, d));
    }
}

/// A pty that is a session's controlling terminal comes back as that
/// only through the session's leader, a task of the images holding one
/// of its ends (CRIU opens the slave by its path in the leader instead,
/// which crit does not).
fn check_session(plan: &Plan, index: u32) -> std::result::Result<(), String> {
    let (sid, _) = super::plan::pty_session(&plan.ttys, index);
    if sid == 0 {
        return Ok(());
    }
    match plan.live().find(|t| t.pid == sid) {
        None => Err(format!(
            "the controlling terminal of session {sid}, whose leader is not in the images"
        )),
        Some(t) if t.ctty.is_none_or(|c| c.index != index) => Err(format!(
            "the controlling terminal of session {sid}, whose leader holds no descriptor of it (not supported by crit restore)"
        )),
        Some(_) => Ok(()),
    }
}
