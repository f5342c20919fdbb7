//! One open file description into files.img, by kind. Kinds whose state
//! /proc/PID/fdinfo shows (eventfd, epoll, timerfd, signalfd, inotify)
//! are read from there; sockets go to [`super::sockets`].

use super::context::DumpCtx;
use super::error::DumpError;
use super::fdscan::{Fd, Kind};
use super::files::*;
use super::procfs::fdinfo_field;
use crate::error::Result;
use crate::image::pb;

/// The fdinfo type of a descriptor (refusing unsupported kinds).
pub fn file_type(ctx: &mut DumpCtx, pid: i32, fd: &Fd) -> Result<i32> {
    Ok(match &fd.kind {
        Kind::Path { .. } => FD_REG,
        Kind::Fifo { .. } => FD_FIFO,
        Kind::Pipe(_) => FD_PIPE,
        Kind::Socket(ino) => ctx.socks.fd_type(pid, fd.fd, *ino)?,
        Kind::Eventfd => FD_EVENTFD,
        Kind::Eventpoll => FD_EVENTPOLL,
        Kind::Timerfd => FD_TIMERFD,
        Kind::Signalfd => FD_SIGNALFD,
        Kind::Inotify => FD_INOTIFY,
        Kind::Fanotify => FD_FANOTIFY,
        Kind::Memfd { .. } => FD_MEMFD,
        Kind::Pidfd => FD_PIDFD,
        Kind::Tty { path } => super::tty::file_type(ctx, pid, fd, path)?,
        Kind::Other(what) => {
            return Err(DumpError::FdKind {
                pid,
                fd: fd.fd,
                link: what.clone(),
            }
            .into())
        }
    })
}

fn field<'a>(pid: i32, fd: &'a Fd, key: &'static str) -> Result<&'a str> {
    fdinfo_field(&fd.info, key).ok_or_else(|| {
        DumpError::FdinfoMissing {
            pid,
            fd: fd.fd,
            key,
        }
        .into()
    })
}

fn hex(pid: i32, fd: &Fd, v: &str) -> Result<u64> {
    u64::from_str_radix(v.trim(), 16).map_err(|_| {
        DumpError::FdinfoValue {
            pid,
            fd: fd.fd,
            value: v.to_string(),
        }
        .into()
    })
}

/// A line of the fdinfo of `fd` (an epoll's or inotify's: `kind`) that
/// does not parse.
fn bad_line(pid: i32, fd: &Fd, kind: &'static str, line: &str) -> DumpError {
    DumpError::FdinfoLine {
        pid,
        fd: fd.fd,
        kind,
        line: line.to_string(),
    }
}

/// Key:value pairs of one fdinfo line like "tfd: 8 events: 19 data: 7".
fn pairs(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let toks: Vec<&str> = line.split_whitespace().collect();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        if let Some((k, v)) = t.split_once(':') {
            if v.is_empty() {
                if let Some(n) = toks.get(i + 1) {
                    out.push((k.to_string(), n.to_string()));
                    i += 2;
                    continue;
                }
            } else {
                out.push((k.to_string(), v.to_string()));
            }
        }
        i += 1;
    }
    out
}

fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

/// Writes the files.img entry (and data images) of a new open file.
pub fn dump_fd(ctx: &mut DumpCtx, pid: i32, fd: &Fd, id: u32) -> Result<()> {
    // The owner matters for O_ASYNC files (SIGIO) and sockets (SIGURG);
    // sockets read it from the copy they make anyway. A leased file's
    // owner gets the lease-break signal (the kernel sets O_ASYNC on it);
    // its contents are read through the copy.
    const O_ASYNC: u32 = 0o20000;
    let leased = super::locks::shows_lease(&fd.info);
    let mut owned;
    let fd = if (fd.flags & O_ASYNC != 0 || leased) && !matches!(fd.kind, Kind::Socket(_)) {
        let copy = std::fs::File::from(ctx.frozen.getfd(pid, fd.fd)?);
        owned = fd.clone();
        owned.fown = fown_of(pid, fd.fd, std::os::fd::AsFd::as_fd(&copy))?;
        if leased {
            owned.copy = Some(std::sync::Arc::new(copy));
        }
        // Read through crit's copy: the owner is in crit's pids.
        if owned.fown.pid != 0 {
            owned.fown.pid = ctx.ns.pids.get(owned.fown.pid as i32) as u32;
        }
        &owned
    } else {
        fd
    };
    let mnt = ctx.ns.mnt_id_of(fd.mnt_id);
    let files = &mut ctx.files;
    match &fd.kind {
        Kind::Path { path, deleted } => files.reg_fd(pid, fd, id, path, *deleted, mnt),
        Kind::Tty { path } => super::tty::dump_fd(ctx, pid, fd, id, path, mnt),
        Kind::Pipe(ino) => files.pipe_fd(ctx.frozen, pid, fd, id, *ino, false),
        Kind::Fifo { .. } => files.pipe_fd(ctx.frozen, pid, fd, id, fd.st.ino, true),
        Kind::Eventfd => eventfd(files, pid, fd, id),
        Kind::Eventpoll => eventpoll(files, pid, fd, id),
        Kind::Timerfd => timerfd(files, pid, fd, id),
        Kind::Signalfd => signalfd(files, pid, fd, id),
        Kind::Inotify => inotify(files, pid, fd, id),
        Kind::Fanotify => fanotify(files, pid, fd, id),
        Kind::Memfd { name } => memfd(files, pid, fd, id, name),
        Kind::Pidfd => {
            let nspid = pidfd_target(ctx, pid, fd)?;
            ctx.files.push(FD_PIDFD, id, |e| {
                e.pidfd = Some(pb::PidfdEntry {
                    id,
                    ino: fd.st.ino as u32,
                    // pidfd_open's flags, as CRIU records them (it hands
                    // them to pidfd_open again): PIDFD_NONBLOCK alone.
                    flags: fd.flags & 0o4000,
                    nspid,
                    fown: fd.fown,
                })
            });
            Ok(())
        }
        Kind::Socket(ino) => {
            let (fr, opts) = (ctx.frozen, ctx.opts);
            ctx.socks.dump_fd(
                fr,
                super::sockets::HeldSocket { pid, fd, id },
                *ino,
                &mut ctx.files,
                opts,
            )
        }
        Kind::Other(_) => Ok(()),
    }
}

/// The process a pidfd names, as the tree sees it. A restore opens it
/// again by that pid, so it must be a task of the tree (its fdinfo's
/// "Pid:" is 0 outside crit's pid namespace), or -1 once the process is
/// reaped, which CRIU records as is (a restore then names a process of
/// its own that has exited). A thread's pidfd (PIDFD_THREAD) is refused.
fn pidfd_target(ctx: &DumpCtx, pid: i32, fd: &Fd) -> Result<i32> {
    const PIDFD_THREAD: u32 = 0o200; // O_EXCL
    let host: i32 = field(pid, fd, "Pid")?.trim().parse().unwrap_or(0);
    let why = if fd.flags & PIDFD_THREAD != 0 {
        Some("of a thread (PIDFD_THREAD)".to_string())
    } else if host == -1 {
        return Ok(-1);
    } else if !ctx.frozen.tasks.iter().any(|t| t.pid == host) {
        Some(format!("of pid {host}, outside the dumped tree"))
    } else {
        None
    };
    match why {
        Some(why) => Err(DumpError::Pidfd {
            pid,
            fd: fd.fd,
            why,
        }
        .into()),
        None => Ok(ctx.ns.pids.get(host)),
    }
}

fn eventfd(files: &mut FileTable, pid: i32, fd: &Fd, id: u32) -> Result<()> {
    let counter = hex(pid, fd, field(pid, fd, "eventfd-count")?)?;
    // Recent kernels show EFD_SEMAPHORE in fdinfo (older ones do not,
    // and the flag then goes unseen, as in CRIU); see EFD_SEMAPHORE_MARK.
    let semaphore = fdinfo_field(&fd.info, "eventfd-semaphore").is_some_and(|v| v.trim() == "1");
    files.push(FD_EVENTFD, id, |e| {
        e.efd = Some(pb::EventfdFileEntry {
            id,
            flags: match semaphore {
                true => fd.flags | crate::model::file::EFD_SEMAPHORE_MARK,
                false => fd.flags,
            },
            fown: fd.fown,
            counter,
        })
    });
    Ok(())
}

fn eventpoll(files: &mut FileTable, pid: i32, fd: &Fd, id: u32) -> Result<()> {
    let mut tfds = fd
        .info
        .lines()
        .filter(|l| l.starts_with("tfd:"))
        .map(|l| epoll_target(pid, fd, l))
        .collect::<Result<Vec<_>>>()?;
    for i in 0..tfds.len() {
        // The toff-th target registered under its number (kcmp's slot).
        let toff = tfds[..i].iter().filter(|t| t.tfd == tfds[i].tfd).count() as u32;
        tfds[i].tfd = epoll_target_fd(pid, fd, &tfds[i], toff)?;
    }
    files.push(FD_EVENTPOLL, id, |e| {
        e.epfd = Some(pb::EventpollFileEntry {
            id,
            flags: fd.flags,
            fown: fd.fown,
            tfd: tfds,
        })
    });
    Ok(())
}

/// One "tfd:" line of an epoll's fdinfo.
fn epoll_target(pid: i32, fd: &Fd, l: &str) -> Result<pb::EventpollTfdEntry> {
    let p = pairs(l);
    let num = |k: &str, radix: u32| -> Result<u64> {
        get(&p, k)
            .and_then(|v| u64::from_str_radix(v, radix).ok())
            .ok_or_else(|| bad_line(pid, fd, "epoll", l).into())
    };
    Ok(pb::EventpollTfdEntry {
        id: 0,
        tfd: num("tfd", 10)? as u32,
        events: num("events", 16)? as u32,
        data: num("data", 16)?,
        dev: Some(num("sdev", 16)? as u32),
        inode: Some(num("ino", 16)?),
        pos: Some(num("pos", 10).unwrap_or(0)),
    })
}

/// The descriptor of `pid` to record for an epoll target: an epoll keys
/// a target by file and descriptor number, and the number may since have
/// been closed or given to another file (a restore registering that
/// number would then fail, or watch the wrong file). As CRIU does, the
/// number is checked with kcmp, and where it no longer holds the file
/// another descriptor of the task that does is recorded instead.
fn epoll_target_fd(pid: i32, ep: &Fd, t: &pb::EventpollTfdEntry, toff: u32) -> Result<u32> {
    let is = |cand: i32| {
        crate::sys::kcmp::is_epoll_target(pid, cand, ep.fd, t.tfd as i32, toff).map_err(|source| {
            DumpError::Fd {
                pid,
                fd: ep.fd,
                what: "kcmp of an epoll target",
                source,
            }
        })
    };
    if is(t.tfd as i32)? {
        return Ok(t.tfd);
    }
    for cand in super::fdscan::list(pid)? {
        if is(cand)? {
            return Ok(cand as u32);
        }
    }
    Err(DumpError::EpollTargetGone {
        pid,
        fd: ep.fd,
        tfd: t.tfd,
        ino: t.inode.unwrap_or(0),
    }
    .into())
}

fn timerfd(files: &mut FileTable, pid: i32, fd: &Fd, id: u32) -> Result<()> {
    let clockid: u32 = field(pid, fd, "clockid")?.parse().unwrap_or(0);
    let ticks: u64 = field(pid, fd, "ticks")?.parse().unwrap_or(0);
    let settime_flags = u32::from_str_radix(field(pid, fd, "settime flags")?, 8).unwrap_or(0);
    let pair = |k: &'static str| -> Result<(u64, u64)> {
        let v = field(pid, fd, k)?;
        let v = v.trim_start_matches('(').trim_end_matches(')');
        let (a, b) = v.split_once(',').ok_or_else(|| DumpError::TimerfdValue {
            pid,
            fd: fd.fd,
            key: k,
            value: v.to_string(),
        })?;
        Ok((a.trim().parse().unwrap_or(0), b.trim().parse().unwrap_or(0)))
    };
    let (vsec, vnsec) = pair("it_value")?;
    let (isec, insec) = pair("it_interval")?;
    files.push(FD_TIMERFD, id, |e| {
        e.tfd = Some(pb::TimerfdEntry {
            id,
            flags: fd.flags,
            fown: fd.fown,
            clockid,
            ticks,
            settime_flags,
            vsec,
            vnsec,
            isec,
            insec,
        })
    });
    Ok(())
}

fn signalfd(files: &mut FileTable, pid: i32, fd: &Fd, id: u32) -> Result<()> {
    let sigmask = hex(pid, fd, field(pid, fd, "sigmask")?)?;
    files.push(FD_SIGNALFD, id, |e| {
        e.sgfd = Some(pb::SignalfdEntry {
            id,
            flags: fd.flags,
            fown: fd.fown,
            sigmask,
        })
    });
    Ok(())
}

fn inotify(files: &mut FileTable, pid: i32, fd: &Fd, id: u32) -> Result<()> {
    let wds = fd
        .info
        .lines()
        .filter(|l| l.starts_with("inotify "))
        .map(|l| inotify_watch(pid, fd, l))
        .collect::<Result<Vec<_>>>()?;
    files.push(FD_INOTIFY, id, |e| {
        e.ify = Some(pb::InotifyFileEntry {
            id,
            flags: fd.flags,
            fown: fd.fown,
            wd: wds,
        })
    });
    Ok(())
}

/// One "inotify " line of an inotify's fdinfo: a watch and its file
/// handle.
fn inotify_watch(pid: i32, fd: &Fd, l: &str) -> Result<pb::InotifyWdEntry> {
    let p = pairs(l);
    let h = |k: &str| -> Result<u64> {
        get(&p, k)
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .ok_or_else(|| bad_line(pid, fd, "inotify", l).into())
    };
    let wd: u32 = get(&p, "wd").and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(pb::InotifyWdEntry {
        id: 0,
        i_ino: h("ino")?,
        mask: h("mask")? as u32,
        ignored_mask: h("ignored_mask")? as u32,
        s_dev: h("sdev")? as u32,
        wd,
        f_handle: file_handle(&p, h("sdev")? as u32, &h)?,
    })
}

/// The file handle an fsnotify mark's fdinfo line shows (fhandle-bytes,
/// fhandle-type, f_handle), with the path it opens to now.
fn file_handle(
    p: &[(String, String)],
    sdev: u32,
    h: &dyn Fn(&str) -> Result<u64>,
) -> Result<pb::FhEntry> {
    let bytes = h("fhandle-bytes")? as u32;
    let htype = h("fhandle-type")? as u32;
    let raw = get(p, "f_handle").unwrap_or("");
    let mut hb: Vec<u8> = (0..raw.len() / 2)
        .filter_map(|i| u8::from_str_radix(&raw[2 * i..2 * i + 2], 16).ok())
        .collect();
    hb.resize(128, 0);
    let handle: Vec<u64> = hb
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    Ok(pb::FhEntry {
        bytes,
        r#type: htype,
        path: watch_path(sdev, htype, &hb[..(bytes as usize).min(128)]),
        handle,
        mnt_id: None,
    })
}

/// A fanotify group, as CRIU records it: its init flags and event flags
/// ("fanotify flags:"), then its marks on inodes (with a file handle) and
/// on mounts (with the mountpoint). Marks on a whole filesystem
/// (FAN_MARK_FILESYSTEM) have no place in CRIU's images and are refused;
/// queued events are dropped, as CRIU drops them.
fn fanotify(files: &mut FileTable, pid: i32, fd: &Fd, id: u32) -> Result<()> {
    let mut e = pb::FanotifyFileEntry {
        id,
        flags: fd.flags,
        fown: fd.fown,
        ..Default::default()
    };
    for l in fd.info.lines().filter(|l| l.starts_with("fanotify ")) {
        let p = pairs(l);
        let h = |k: &str| -> Result<u64> {
            get(&p, k)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .ok_or_else(|| bad_line(pid, fd, "fanotify", l).into())
        };
        if get(&p, "flags").is_some() {
            e.faflags = h("flags")? as u32;
            e.evflags = h("event-flags")? as u32;
            continue;
        }
        // Its id stays 0 in files.img, as CRIU leaves it.
        let mut m = pb::FanotifyMarkEntry {
            mflags: h("mflags")? as u32,
            mask: h("mask")? as u32,
            ignored_mask: h("ignored_mask")? as u32,
            ..Default::default()
        };
        if get(&p, "ino").is_some() {
            m.r#type = pb::MarkType::Inode as i32;
            m.s_dev = h("sdev")? as u32;
            m.ie = Some(pb::FanotifyInodeMarkEntry {
                i_ino: h("ino")?,
                f_handle: file_handle(&p, m.s_dev, &h)?,
            });
        } else if get(&p, "mnt_id").is_some() {
            let mnt_id = h("mnt_id")? as u32;
            let (path, s_dev) = mount_of(pid, mnt_id).ok_or(DumpError::FdinfoLine {
                pid,
                fd: fd.fd,
                kind: "fanotify (its mount is not in the task's mountinfo)",
                line: l.to_string(),
            })?;
            m.r#type = pb::MarkType::Mount as i32;
            m.s_dev = s_dev;
            m.me = Some(pb::FanotifyMountMarkEntry {
                mnt_id,
                path: Some(path),
            });
        } else {
            return Err(DumpError::FdinfoLine {
                pid,
                fd: fd.fd,
                kind: "fanotify (a mark on a whole filesystem, which CRIU's images cannot hold)",
                line: l.to_string(),
            }
            .into());
        }
        e.mark.push(m);
    }
    files.push(FD_FANOTIFY, id, |f| f.ffy = Some(e));
    Ok(())
}

/// The mountpoint of mount `mnt_id` of task `pid`, and its device in the
/// kernel's encoding (major << 20 | minor): from crit's own mountinfo
/// when the task shares crit's mounts (a chrooted task's shows paths
/// from its root), else from the task's (its own mount namespace, whose
/// paths the restore takes from the tree's root).
fn mount_of(pid: i32, mnt_id: u32) -> Option<(String, u32)> {
    let find = |info: String| {
        info.lines().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() < 5 || f[0].parse::<u32>().ok()? != mnt_id {
                return None;
            }
            let (major, minor) = f[2].split_once(':')?;
            let dev = (major.parse::<u32>().ok()? << 20) | minor.parse::<u32>().ok()?;
            Some((unescape(f[4]), dev))
        })
    };
    let mine = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(find);
    mine.or_else(|| {
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .ok()
            .and_then(find)
    })
}

/// A mountinfo path with its octal escapes (space, tab, newline,
/// backslash) decoded.
fn unescape(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (b[i], oct) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn memfd(files: &mut FileTable, pid: i32, fd: &Fd, id: u32, name: &str) -> Result<()> {
    let link = format!("/proc/{pid}/fd/{}", fd.fd);
    let seals = super::mm::memfd_seals(&link);
    let inode_id = files.memfd_inode(name, &fd.st, seals, &link);
    files.push(FD_MEMFD, id, |e| {
        e.memfd = Some(pb::MemfdFileEntry {
            id,
            flags: fd.flags,
            pos: fd.pos,
            fown: fd.fown,
            inode_id,
        })
    });
    Ok(())
}

/// The path of an inotify watch's file, from its handle: opened on a
/// mount of its filesystem (device `sdev`, kernel form major << 20 |
/// minor) found in our mountinfo. None when it cannot be found.
fn watch_path(sdev: u32, htype: u32, handle: &[u8]) -> Option<String> {
    let (major, minor) = (sdev >> 20, sdev & 0xfffff);
    let want = format!("{major}:{minor}");
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for l in info.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() < 5 || f[2] != want {
            continue;
        }
        let mp = unescape(f[4]);
        let Ok(dir) = std::fs::File::open(&mp) else {
            continue;
        };
        use std::os::fd::AsFd;
        let Ok(fd) = crate::sys::fhandle::open_by_handle(dir.as_fd(), htype as i32, handle) else {
            continue;
        };
        use std::os::fd::AsRawFd;
        let p = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        return Some(p.to_string_lossy().into_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape("/mnt/a\\040b\\011c"), "/mnt/a b\tc");
        assert_eq!(unescape("/back\\134slash"), "/back\\slash");
        // Not an escape: kept as it is.
        assert_eq!(unescape("/x\\9y"), "/x\\9y");
    }
}
