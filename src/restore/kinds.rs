//! The other file kinds crit dump supports, made in crit before the fork:
//! deleted ("ghost") files, memfds (and shared anonymous memory, which
//! CRIU 4.2 records as a memfd inode), eventfd, timerfd, signalfd,
//! inotify, inet sockets ([`super::inet`]), netlink sockets.
//! Epoll sets are filled later, inside the task (see [`super::child`]), so
//! that their targets are registered under the task's own fd numbers.

use super::error::{FileError, FileFault, On};
use super::plan::{read_pagemap, Plan};
use super::reservoir::Reservoir;
use super::Log;
use crate::error::{Error, Result};
use crate::image::entry::EntryReader;
use crate::image::pb;
use crate::image::typed::{read_all, Mapped};
use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};

fn reopen(fd: &OwnedFd, flags: u32, on: &On) -> Result<OwnedFd> {
    let acc = flags & 3;
    let mut o = std::fs::OpenOptions::new();
    match acc {
        0 => o.read(true),
        1 => o.write(true),
        _ => o.read(true).write(true),
    };
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, ((flags & 0o4000) | 0o2000000) as i32);
    let f = o
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|source| FileError::Io {
            on: on.clone(),
            what: "reopen",
            source,
        })?;
    Ok(f.into())
}

/// Deleted files: recreated from their ghost image, opened, unlinked again.
pub fn open_ghosts(plan: &Plan, res: &mut Reservoir) -> Result<()> {
    let p = plan.dir.join("remap-fpath.img");
    if !p.exists() {
        return Ok(());
    }
    for r in read_all::<pb::RemapFilePathEntry>(&p, "REMAP_FPATH")? {
        // 0 = LINKED, 1 = GHOST, 2 = PROCFS
        if r.remap_type.unwrap_or(1) != 1 {
            return Err(FileError::RemapType {
                id: r.orig_id,
                kind: r.remap_type.unwrap_or(0),
            }
            .into());
        }
        let Some(reg) = plan.files.get(&r.orig_id).and_then(|f| f.reg.as_ref()) else {
            continue;
        };
        let gp = plan.dir.join(format!("ghost-file-{}.img", r.remap_id));
        let img = Mapped::open(&gp)?;
        let head = ghost_head(&img)?;
        // At its own path if free, else next to it.
        let mut path = std::path::PathBuf::from(&reg.name);
        let mut k = 0;
        while path.exists() {
            k += 1;
            path = std::path::PathBuf::from(format!("{}.crit-ghost-{k}", reg.name));
        }
        // Its directory may be gone too: made for the while (as CRIU
        // does), removed with it.
        let made = missing_dirs(&path);
        let gone = || {
            let _ = match is_dir(&head) {
                true => std::fs::remove_dir(&path),
                false => std::fs::remove_file(&path),
            };
            for d in &made {
                let _ = std::fs::remove_dir(d);
            }
        };
        let undo = |e: Error| {
            gone();
            e
        };
        let io = |source| -> Error {
            FileError::IoArg {
                on: On::FileId(r.orig_id),
                what: "recreate deleted",
                arg: path.display().to_string(),
                source,
            }
            .into()
        };
        if let (false, Some(dir)) = (made.is_empty(), path.parent()) {
            std::fs::create_dir_all(dir).map_err(|e| undo(io(e)))?;
        }
        make_ghost(&path, &head, &img, &io).map_err(undo)?;
        let _ = std::fs::set_permissions(
            &path,
            std::os::unix::fs::PermissionsExt::from_mode(head.mode & 0o7777),
        );
        let _ = std::os::unix::fs::chown(&path, Some(head.uid), Some(head.gid));
        let mut rr = reg.clone();
        rr.name = path.display().to_string();
        rr.size = None;
        let opened = super::files::open_reg(&rr, 0);
        gone();
        res.by_id.insert(r.orig_id, opened?);
        res.ghosts.insert(r.orig_id);
    }
    Ok(())
}

/// The ancestors of `path` that do not exist, deepest first.
fn missing_dirs(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    path.ancestors()
        .skip(1)
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .map(|a| a.to_path_buf())
        .collect()
}

fn is_dir(head: &pb::GhostFileEntry) -> bool {
    head.mode & libc::S_IFMT == libc::S_IFDIR
}

/// Creates a ghost at `path` (which is free): a device node of the
/// recorded device (CRIU's ghost of a deleted node: rdev, no contents),
/// an empty directory (a removed cwd), or a regular file holding what
/// ghost image `img` holds; `io` describes a failed call.
fn make_ghost(
    path: &std::path::Path,
    head: &pb::GhostFileEntry,
    img: &Mapped,
    io: &dyn Fn(std::io::Error) -> Error,
) -> Result<()> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let kind = SFlag::from_bits_truncate(head.mode & libc::S_IFMT);
    if let (Some(rdev), true) = (head.rdev, kind == SFlag::S_IFCHR || kind == SFlag::S_IFBLK) {
        let perm = Mode::from_bits_truncate(head.mode & 0o7777);
        return mknod(path, kind, perm, u64::from(rdev)).map_err(|e| io(e.into()));
    }
    if is_dir(head) {
        return std::fs::create_dir(path).map_err(io);
    }
    let f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    fill_ghost(&f, img, io)
}

/// The head of ghost image `img` (an image without one reads as an
/// empty file).
fn ghost_head(img: &Mapped) -> Result<pb::GhostFileEntry> {
    let mut src = img.source();
    let mut rd = EntryReader::expect(&mut src, "GHOST_FILE")?;
    Ok(match rd.next_entry()? {
        Some(e) => e.decode()?,
        None => Default::default(),
    })
}

/// Writes the bytes of ghost image `img` into `f`: the data after the
/// head, or, with `chunks` (CRIU writes them for files of 12 KiB and
/// more), each chunk at its offset, so the holes between stay holes,
/// then the recorded size. Piece by piece from the mapped image: a big
/// ghost is never copied into crit's heap.
fn fill_ghost(f: &std::fs::File, img: &Mapped, io: &dyn Fn(std::io::Error) -> Error) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut src = img.source();
    let mut rd = EntryReader::expect(&mut src, "GHOST_FILE")?;
    let Some(e) = rd.next_entry()? else {
        return Ok(());
    };
    let head: pb::GhostFileEntry = e.decode()?;
    f.write_all_at(e.raw_payload, 0).map_err(io)?;
    if !head.chunks.unwrap_or(false) {
        return Ok(());
    }
    while let Some(e) = rd.next_entry()? {
        let c: pb::GhostChunkEntry = e.decode()?;
        f.write_all_at(e.raw_payload, c.off).map_err(io)?;
    }
    if let Some(size) = head.size {
        f.set_len(size).map_err(io)?;
    }
    Ok(())
}

/// Memfd inodes (with their contents), then one open file per memfd file
/// entry, and the memfds VMAs map.
pub fn open_memfds(plan: &Plan, res: &mut Reservoir) -> Result<()> {
    let p = plan.dir.join("memfd.img");
    if !p.exists() {
        return Ok(());
    }
    let mut inodes: HashMap<u64, OwnedFd> = HashMap::new();
    for m in read_all::<pb::MemfdInodeEntry>(&p, "MEMFD_INODE")? {
        let on = On::Memfd {
            name: m.name.clone(),
            inode: m.inode_id,
        };
        let io = |what| {
            let on = on.clone();
            move |source| FileError::Io { on, what, source }
        };
        // CRIU and crit dump shared anonymous memory as a memfd named
        // "/dev/zero" (sealed against sealing, as such memory is); it comes
        // back as shared anonymous memory, not as a memfd, so the task's
        // maps read `/dev/zero (deleted)` again.
        let anon = m.name == "/dev/zero" && m.seals == 1 && m.size > 0;
        let sealing = !anon && (m.seals & !1 != 0 || m.seals == 0);
        let fd = if anon {
            crate::sys::mmap::anon_shared_fd(m.size).map_err(io("shared anonymous memory"))?
        } else {
            let name = std::ffi::CString::new(m.name.as_bytes()).unwrap_or_default();
            let mut fl = nix::sys::memfd::MFdFlags::MFD_CLOEXEC;
            if sealing {
                fl |= nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING;
            }
            let fd = nix::sys::memfd::memfd_create(name.as_c_str(), fl).map_err(|source| {
                FileError::Nix {
                    on: on.clone(),
                    what: "memfd_create",
                    source,
                }
            })?;
            crate::sys::fdops::ftruncate(fd.as_raw_fd(), m.size).map_err(io("ftruncate"))?;
            fd
        };
        if fill_shared(plan, u64::from(m.shmid), &fd, &on)? && !anon {
            crate::sys::fdops::ftruncate(fd.as_raw_fd(), m.size).map_err(io("ftruncate"))?;
        }
        if sealing && m.seals != 0 {
            crate::sys::fdops::add_seals(fd.as_raw_fd(), m.seals as i32).map_err(io("seals"))?;
        }
        inodes.insert(m.inode_id, fd);
    }
    for f in plan.files.values() {
        let Some(m) = &f.memfd else { continue };
        let ino = inodes
            .get(&u64::from(m.inode_id))
            .ok_or(FileError::Refused {
                on: On::FileId(f.id),
                why: FileFault::NoMemfdInode(m.inode_id),
            })?;
        let on = On::MemfdFile(f.id);
        let fd = reopen(ino, m.flags, &on)?;
        if m.pos != 0 {
            let plain = |source| FileError::IoOn {
                on: on.clone(),
                source,
            };
            let mut file = std::fs::File::from(fd.try_clone().map_err(plain)?);
            file.seek(SeekFrom::Start(m.pos)).map_err(plain)?;
        }
        res.by_id.insert(f.id, fd);
        res.vma_files.insert(f.id, reopen(ino, 2, &on)?);
    }
    res.keep.extend(inodes.into_values());
    Ok(())
}

/// Shared anonymous memory recorded by shmid: one object per shmid, sized
/// to cover every mapping of it, filled from `pagemap-shmem-SHMID.img`.
pub fn open_anon_shared(plan: &Plan, res: &mut Reservoir) -> Result<()> {
    let mut size: std::collections::BTreeMap<u64, u64> = Default::default();
    for t in plan.live() {
        for v in t.mm.vmas.iter().filter(|v| super::files::is_anon_shared(v)) {
            let e = size.entry(v.shmid).or_default();
            *e = (*e).max(v.pgoff + (v.end - v.start));
        }
    }
    for (shmid, len) in size {
        let on = On::Shared(shmid);
        let fd =
            crate::sys::mmap::anon_shared_fd(len).map_err(|source| FileError::SharedObject {
                on: on.clone(),
                len,
                source,
            })?;
        fill_shared(plan, shmid, &fd, &on)?;
        res.shm_files.insert(shmid, fd);
    }
    Ok(())
}

/// Fills shared object `fd` (a memfd, or shared anonymous memory) from
/// `pagemap-shmem-SHMID.img` if the dump wrote one: each run of pages
/// the images hold goes at its offset. Returns whether there was one.
fn fill_shared(plan: &Plan, shmid: u64, fd: &OwnedFd, on: &On) -> Result<bool> {
    let pm = plan.dir.join(format!("pagemap-shmem-{shmid}.img"));
    if !pm.exists() {
        return Ok(false);
    }
    let (pages_id, entries) = read_pagemap(&pm, Vec::new())?;
    let pages = Mapped::open(&plan.dir.join(format!("pages-{pages_id}.img")))?;
    let bytes = pages.bytes();
    let plain = |source| FileError::IoOn {
        on: on.clone(),
        source,
    };
    let short = || FileError::PagesShort {
        on: on.clone(),
        pages_id,
    };
    let mut f = std::fs::File::from(fd.try_clone().map_err(plain)?);
    let mut off = 0usize;
    for e in entries {
        if e.flags.unwrap_or(4) & 4 == 0 {
            continue;
        }
        // Checked: a damaged entry's page count must not wrap around.
        let len = e
            .nr_pages
            .unwrap_or(u64::from(e.compat_nr_pages))
            .checked_mul(4096)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(short)?;
        let chunk = off
            .checked_add(len)
            .and_then(|end| bytes.get(off..end))
            .ok_or_else(short)?;
        f.seek(SeekFrom::Start(e.vaddr)).map_err(plain)?;
        f.write_all(chunk).map_err(|source| FileError::Io {
            on: on.clone(),
            what: "fill",
            source,
        })?;
        off += len;
    }
    Ok(true)
}

/// eventfd, timerfd, signalfd, inotify, inet and netlink sockets.
pub fn open_misc(plan: &Plan, opts: &super::Options, res: &mut Reservoir, log: &Log) -> Result<()> {
    let used: std::collections::HashSet<u32> = plan
        .tasks
        .iter()
        .flat_map(|t| t.fds.iter().map(|f| f.id))
        .chain(plan.in_flight_only())
        .collect();
    let mut repaired = Vec::new();
    for (pass, f) in [0, 1]
        .into_iter()
        .flat_map(|p| plan.files.values().map(move |f| (p, f)))
    {
        if res.by_id.contains_key(&f.id) || !used.contains(&f.id) {
            continue;
        }
        let id = f.id;
        let fd: Option<OwnedFd> = if let Some(e) = &f.efd {
            use nix::sys::eventfd::{EfdFlags, EventFd};
            let mut fl =
                EfdFlags::from_bits_truncate((e.flags & 0o4000) as i32 | libc::EFD_CLOEXEC);
            if e.flags & crate::model::file::EFD_SEMAPHORE_MARK != 0 {
                fl |= EfdFlags::EFD_SEMAPHORE;
            }
            // The counter may exceed 32 bits: written, not given at creation.
            let fd: OwnedFd = EventFd::from_value_and_flags(0, fl)
                .map_err(|source| FileError::Nix {
                    on: On::FileId(id),
                    what: "eventfd",
                    source,
                })?
                .into();
            if e.counter != 0 {
                crate::sys::fdops::write_fd(fd.as_raw_fd(), &e.counter.to_ne_bytes()).map_err(
                    |source| FileError::IoArg {
                        on: On::FileId(id),
                        what: "eventfd counter",
                        arg: e.counter.to_string(),
                        source,
                    },
                )?;
            }
            Some(fd)
        } else if let Some(t) = &f.tfd {
            Some(timerfd(t, id)?)
        } else if let Some(s) = &f.sgfd {
            let fl = (s.flags & 0o4000) as i32 | libc::SFD_CLOEXEC;
            Some(
                crate::sys::sig::signalfd(s.sigmask, fl).map_err(|source| FileError::Io {
                    on: On::FileId(id),
                    what: "signalfd",
                    source,
                })?,
            )
        } else if f.epfd.is_some() {
            use nix::sys::epoll::{Epoll, EpollCreateFlags};
            let ep =
                Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|source| FileError::Nix {
                    on: On::FileId(id),
                    what: "epoll_create",
                    source,
                })?;
            Some(ep.0)
        } else if let Some(i) = &f.ify {
            Some(inotify(i, id, log)?)
        } else if let Some(fa) = &f.ffy {
            Some(fanotify(fa, id)?)
        } else if let Some(s) = &f.isk {
            // Connections after listeners: repair mode binds them on a
            // listener's port, which then could not bind it.
            if super::tcp::is_connection(s) && pass == 0 {
                continue;
            }
            let (fd, in_repair) = super::inet::open(s, opts, &plan.dir, log)?;
            if in_repair {
                repaired.push((id, s));
            }
            Some(fd)
        } else if let Some(n) = &f.nlsk {
            Some(netlink(n, id)?)
        } else if let Some(p) = &f.psk {
            Some(super::packetsk::open(p, id)?)
        } else {
            None
        };
        if let Some(fd) = fd {
            res.by_id.insert(id, fd);
        }
    }
    // Out of repair mode only right before the tree runs (as CRIU's
    // restorer does it, last): until then a failure, or crit killed,
    // closes them without a packet.
    let ids: Vec<u32> = repaired.iter().map(|r| r.0).collect();
    for (id, s) in repaired {
        if let Some(fd) = res.by_id.get(&id) {
            res.tcp_live.keep(fd);
            let copy = fd.try_clone().map_err(|source| FileError::IoOn {
                on: On::Inet(s.ino),
                source,
            })?;
            res.tcp_repaired.push((copy, s.clone()));
        }
    }
    let fds: Vec<_> = ids
        .iter()
        .filter_map(|id| res.by_id.get(id))
        .map(std::os::fd::AsFd::as_fd)
        .collect();
    super::janitor::note_connections(&fds);
    Ok(())
}

/// Pidfds of processes that had exited at the dump (nspid -1): each
/// dead process (its pidfds share an inode) is a child of crit that exits
/// at once, opened once per file and reaped, as CRIU 4.2 does. Pidfds of
/// live processes are opened later, by their task ([`super::task`]).
pub fn open_exited_pidfds(plan: &Plan, res: &mut Reservoir) -> Result<()> {
    let mut by_ino: std::collections::BTreeMap<u32, Vec<(u32, u32)>> = Default::default();
    for f in plan.files.values() {
        if let Some(p) = f.pidfd.as_ref().filter(|p| p.nspid == -1) {
            by_ino.entry(p.ino).or_default().push((f.id, p.flags));
        }
    }
    for files in by_ino.values() {
        let flags: Vec<u32> = files.iter().map(|&(_, fl)| fl).collect();
        let fds = crate::sys::pidfd::pidfds_of_reaped(&flags).map_err(|source| FileError::Io {
            on: On::FileId(files[0].0),
            what: "pidfd of an exited process",
            source,
        })?;
        for (&(id, _), fd) in files.iter().zip(fds) {
            res.by_id.insert(id, fd);
        }
    }
    Ok(())
}

fn timerfd(t: &pb::TimerfdEntry, id: u32) -> Result<OwnedFd> {
    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    let clock = match t.clockid {
        0 => ClockId::CLOCK_REALTIME,
        1 => ClockId::CLOCK_MONOTONIC,
        7 => ClockId::CLOCK_BOOTTIME,
        8 => ClockId::CLOCK_REALTIME_ALARM,
        9 => ClockId::CLOCK_BOOTTIME_ALARM,
        c => {
            return Err(FileError::Refused {
                on: On::FileId(id),
                why: FileFault::TimerClock(c),
            }
            .into())
        }
    };
    let fl = TimerFlags::from_bits_truncate((t.flags & 0o4000) as i32) | TimerFlags::TFD_CLOEXEC;
    let fd = TimerFd::new(clock, fl).map_err(|source| FileError::Nix {
        on: On::FileId(id),
        what: "timerfd",
        source,
    })?;
    let periodic = t.isec != 0 || t.insec != 0;
    // A periodic timer that expired with nobody reading it yet shows no
    // time left (the kernel rearms it on the read, and fdinfo does not):
    // it runs on, its next expiry an interval away.
    let (vsec, vnsec) = match (t.vsec, t.vnsec) {
        (0, 0) if periodic => (t.isec, t.insec),
        v => v,
    };
    let value = TimeSpec::new(vsec as i64, vnsec as i64);
    let interval = TimeSpec::new(t.isec as i64, t.insec as i64);
    if vsec != 0 || vnsec != 0 {
        // The images hold the time left, so it is set relative.
        let exp = if periodic {
            Expiration::IntervalDelayed(value, interval)
        } else {
            Expiration::OneShot(value)
        };
        fd.set(exp, TimerSetTimeFlags::empty())
            .map_err(|source| FileError::Nix {
                on: On::FileId(id),
                what: "timerfd_settime",
                source,
            })?;
    }
    let fd: OwnedFd = fd.into();
    if t.ticks != 0 {
        crate::sys::fdops::timerfd_set_ticks(fd.as_raw_fd(), t.ticks).map_err(|e| {
            FileError::TimerTicks {
                id,
                ticks: t.ticks,
                source: e,
            }
        })?;
    }
    Ok(fd)
}

fn inotify(i: &pb::InotifyFileEntry, id: u32, log: &Log) -> Result<OwnedFd> {
    use nix::sys::inotify::{InitFlags, Inotify};
    let fl = InitFlags::from_bits_truncate((i.flags & 0o4000) as i32) | InitFlags::IN_CLOEXEC;
    let fd: OwnedFd = Inotify::init(fl)
        .map_err(|source| FileError::Nix {
            on: On::FileId(id),
            what: "inotify_init",
            source,
        })?
        .into();
    let mut wds: Vec<&pb::InotifyWdEntry> = i.wd.iter().collect();
    wds.sort_by_key(|w| w.wd);
    for w in wds {
        // The path if the images have it, else the file through its handle.
        let mut _held = None;
        let path = match w.f_handle.path.clone() {
            Some(p) => p,
            None => match open_handle(&w.f_handle, w.s_dev) {
                Ok(fd) => {
                    let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
                    _held = Some(fd);
                    p
                }
                Err(e) => {
                    log.warn(format!(
                        "file id {id}: inotify watch {} (inode {}): {e}; not restored",
                        w.wd, w.i_ino
                    ));
                    continue;
                }
            },
        };
        let c = std::ffi::CString::new(path.as_bytes()).unwrap_or_default();
        // Watch numbers only grow: add until the dumped one comes up.
        let mut tries = 0;
        loop {
            let got =
                crate::sys::fdops::inotify_add_watch(fd.as_raw_fd(), &c, w.mask & !0x2000_0000)
                    .map_err(|source| FileError::IoArg {
                        on: On::FileId(id),
                        what: "inotify watch",
                        arg: path.to_string(),
                        source,
                    })?;
            if got as u32 >= w.wd || tries > 4096 {
                break;
            }
            let _ = crate::sys::fdops::inotify_rm_watch(fd.as_raw_fd(), got);
            tries += 1;
        }
    }
    Ok(fd)
}

/// A fanotify group (crit's images or CRIU's) as CRIU's restore makes it:
/// fanotify_init with the recorded flags (then O_NONBLOCK as the file
/// had it), then each mark on its inode (by the recorded path, or
/// through its file handle) or on its mount (by the mountpoint), its mask
/// and its ignored mask. A mark that cannot be placed fails the restore:
/// the group would miss events without a word.
fn fanotify(fa: &pb::FanotifyFileEntry, id: u32) -> Result<OwnedFd> {
    const FAN_MARK_ADD: u32 = 0x1;
    const FAN_MARK_MOUNT: u32 = 0x10;
    const FAN_MARK_IGNORED_MASK: u32 = 0x20;
    const FAN_MARK_IGNORE: u32 = 0x400;
    // The group keeps its flags as given (its fdinfo shows them); the
    // file's own flags come after.
    let io = |what: &'static str| {
        move |source| FileError::Io {
            on: On::FileId(id),
            what,
            source,
        }
    };
    let fd = crate::sys::fdops::fanotify_init(fa.faflags, fa.evflags).map_err(|source| {
        FileError::IoArg {
            on: On::FileId(id),
            what: "fanotify_init",
            arg: format!("{:#x}", fa.faflags),
            source,
        }
    })?;
    crate::sys::fdops::set_cloexec(fd.as_raw_fd(), true).map_err(io("FD_CLOEXEC"))?;
    crate::sys::fdops::set_status_flags(fd.as_raw_fd(), (fa.flags & 0o4000) as i32)
        .map_err(io("O_NONBLOCK"))?;
    for m in &fa.mark {
        let mut _held = None;
        let (path, kind) = match (&m.ie, &m.me) {
            (Some(ie), _) => match ie.f_handle.path.clone() {
                Some(p) => (p, 0),
                None => {
                    let h = open_handle(&ie.f_handle, m.s_dev).map_err(|why| FileError::IoArg {
                        on: On::FileId(id),
                        what: "fanotify mark's file",
                        arg: format!("inode {}: {why}", ie.i_ino),
                        source: std::io::ErrorKind::NotFound.into(),
                    })?;
                    let p = format!("/proc/self/fd/{}", h.as_raw_fd());
                    _held = Some(h);
                    (p, 0)
                }
            },
            (None, Some(me)) => (me.path.clone().unwrap_or_default(), FAN_MARK_MOUNT),
            (None, None) => {
                return Err(FileError::IoArg {
                    on: On::FileId(id),
                    what: "fanotify mark",
                    arg: format!("type {}", m.r#type),
                    source: std::io::ErrorKind::InvalidData.into(),
                }
                .into())
            }
        };
        let c = std::ffi::CString::new(path.as_bytes()).unwrap_or_default();
        // A mark made with FAN_MARK_IGNORE (Linux 6.0) shows it in its
        // flags: it says how the ignore mask was given, and only that
        // call may carry it (with the event mask it would ignore those).
        let ignore = if m.mflags & FAN_MARK_IGNORE != 0 {
            FAN_MARK_IGNORE
        } else {
            FAN_MARK_IGNORED_MASK
        };
        let base = FAN_MARK_ADD | kind | (m.mflags & !FAN_MARK_IGNORE);
        for (extra, mask) in [(0, m.mask), (ignore, m.ignored_mask)] {
            if mask == 0 {
                continue;
            }
            crate::sys::fdops::fanotify_mark(fd.as_raw_fd(), base | extra, u64::from(mask), &c)
                .map_err(|source| FileError::IoArg {
                    on: On::FileId(id),
                    what: "fanotify_mark",
                    arg: path.clone(),
                    source,
                })?;
        }
    }
    Ok(fd)
}

/// Opens (O_PATH) the file a recorded file handle names, on the mount of
/// device `s_dev` (the kernel's encoding: major << 20 | minor).
fn open_handle(fh: &pb::FhEntry, s_dev: u32) -> std::result::Result<OwnedFd, String> {
    let (major, minor) = (s_dev >> 20, s_dev & 0xfffff);
    let want = format!("{major}:{minor}");
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let mount = info
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 4 && f[2] == want).then(|| f[4].to_string())
        })
        .next()
        .ok_or_else(|| format!("no mount of device {want}"))?;
    let m = std::fs::File::open(&mount).map_err(|e| format!("open {mount}: {e}"))?;
    let bytes: Vec<u8> = fh
        .handle
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .take(fh.bytes as usize)
        .collect();
    crate::sys::handle::open_by_handle(
        std::os::fd::AsFd::as_fd(&m),
        fh.r#type as i32,
        &bytes,
        libc::O_PATH,
    )
    .map_err(|e| format!("open by handle on {mount}: {e}"))
}

fn netlink(n: &pb::NetlinkSkEntry, id: u32) -> Result<OwnedFd> {
    use nix::sys::socket::{self as so, AddressFamily, NetlinkAddr, SockFlag, SockType};
    let proto = crate::model::netlink::protocol(n.protocol).ok_or(FileError::NetlinkProtocol {
        ino: n.ino,
        id,
        proto: n.protocol,
    })?;
    let fd = so::socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        proto,
    )
    .map_err(|source| FileError::NixOn {
        on: On::Netlink(n.ino),
        source,
    })?;
    let groups = n.groups.first().copied().unwrap_or(0);
    // The dumped port id may be taken by a live socket; let the kernel pick then.
    if so::bind(fd.as_raw_fd(), &NetlinkAddr::new(n.portid, groups)).is_err() {
        so::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups)).map_err(|source| {
            FileError::Nix {
                on: On::Netlink(n.ino),
                what: "bind",
                source,
            }
        })?;
    }
    super::skopts::set(&fd, &n.opts, On::Netlink(n.ino))?;
    Ok(fd)
}
