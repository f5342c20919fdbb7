//! Reads an images directory into a restore plan: the process tree, each
//! task's core, mm, pagemap, fds and fs, and the shared file table. Nothing
//! here touches the system; every later step works from the plan.

use super::error::SetupError;
use crate::error::{Error, Result};
use crate::image::entry::EntryReader;
use crate::image::pb;
use crate::image::source::Source;
use crate::image::typed::{read_all, read_one, Mapped};
use crate::model::unix::Model;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One thread of a task and its core image.
pub struct Thread {
    pub tid: u32,
    pub core: pb::CoreEntry,
    pub seccomp: super::seccomp::Setup,
}

/// One task (process) to restore.
pub struct Task {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    /// Threads, the main one first.
    pub threads: Vec<Thread>,
    /// The address space; `vmas` holds only real mappings, in order.
    pub mm: pb::MmEntry,
    /// Ranges guarded with `MADV_GUARD_INSTALL` (CRIU 4.2's entries of
    /// status VMA_AREA_GUARD after the real VMAs), as (start, end).
    pub guards: Vec<(u64, u64)>,
    /// Pages id (`pages-ID.img`) and the entries after the pagemap head.
    pub pages_id: u32,
    pub pagemap: Vec<pb::PagemapEntry>,
    pub fs: pb::FsEntry,
    pub fds: Vec<pb::FdinfoEntry>,
    pub ids: pb::TaskKobjIdsEntry,
    /// A zombie: its wait status (it is forked only to exit with it).
    pub zombie: Option<u32>,
    /// POSIX timers, sorted by id.
    pub posix_timers: Vec<pb::PosixTimerEntry>,
    /// The pty this task leads the session of, if any: its controlling
    /// terminal again.
    pub ctty: Option<Ctty>,
    /// Its pidfds, opened by the task itself once every task exists.
    pub pidfds: Vec<Pidfd>,
    /// The file locks it takes again (`--file-locks`).
    pub locks: Vec<super::locks::Take>,
}

/// A pidfd a task holds: its fd, the process it names (a task of the
/// images, by its pid there) and pidfd_open's flags.
pub struct Pidfd {
    pub fd: u32,
    pub cloexec: bool,
    pub target: u32,
    pub flags: u32,
}

/// A session leader's controlling terminal: a pty it holds an end of.
#[derive(Clone, Copy, Debug)]
pub struct Ctty {
    /// One of its fds on the pty (a slave's if it holds one; TIOCSCTTY
    /// and TIOCSPGRP on a master act on its slave).
    pub fd: u32,
    /// That fd's file id.
    pub id: u32,
    /// The pty's index.
    pub index: u32,
    /// The terminal's foreground process group (0: none recorded).
    pub pgrp: u32,
}

impl Task {
    pub fn main_core(&self) -> &pb::CoreEntry {
        &self.threads[0].core
    }
    pub fn tc(&self) -> Option<&pb::TaskCoreEntry> {
        self.main_core().tc.as_ref()
    }

    /// The signal that had stopped the task (state TASK_STOPPED), if any.
    pub fn stop_signal(&self) -> Option<i32> {
        let tc = self.tc()?;
        (tc.task_state == 3).then(|| tc.stop_signo.filter(|&s| s != 0).unwrap_or(19) as i32)
    }
}

/// A queued packet of a socket (`sk-queues.img`), with its bytes.
pub struct Packet {
    pub id_for: u32,
    pub data: Vec<u8>,
    /// File ids passed with the message (SCM_RIGHTS), in order.
    pub rights: Vec<u32>,
}

/// `files.img` by id. A file entry is large (over 2 KiB: every kind's
/// fields inline) and a tree may have tens of thousands, so each is boxed
/// once as it is read and never moved again; the last entry of an id wins.
#[derive(Default)]
pub struct FileTable {
    // Boxed on purpose: growing the vector then moves pointers, not 2 KiB
    // entries.
    #[allow(clippy::vec_box)]
    entries: Vec<Box<pb::FileEntry>>,
    index: HashMap<u32, usize>,
    /// Positions of the entries in id order.
    order: Vec<usize>,
}

impl FileTable {
    pub fn read(path: &Path) -> Result<FileTable> {
        let mut t = FileTable::default();
        crate::image::typed::for_each(path, "FILES", |f: pb::FileEntry| {
            t.index.insert(f.id, t.entries.len());
            t.entries.push(Box::new(f));
            Ok(())
        })?;
        let mut ids: Vec<(u32, usize)> = t.index.iter().map(|(&id, &at)| (id, at)).collect();
        ids.sort_unstable();
        t.order = ids.into_iter().map(|(_, at)| at).collect();
        Ok(t)
    }

    pub fn get(&self, id: &u32) -> Option<&pb::FileEntry> {
        self.index.get(id).map(|&at| &*self.entries[at])
    }

    /// Every file, in id order.
    pub fn values(&self) -> impl Iterator<Item = &pb::FileEntry> {
        self.order.iter().map(|&at| &*self.entries[at])
    }
}

/// Refuses a directory that lost a task's fdinfo image. CRIU writes none
/// for a task without descriptors, so a missing one reads as empty; but
/// then a file only a descriptor can hold (a pipe, an inet socket, an
/// eventfd, epoll, signalfd, timerfd, inotify, fanotify) that no task has
/// and no queued message carries says the image was there. Unix sockets
/// do not tell: the entry of an outside peer is held by no task.
fn check_fdinfo_lost(
    dir: &Path,
    tasks: &[Task],
    files: &FileTable,
    packets: &[Packet],
) -> Result<()> {
    let Some(t) = tasks.iter().find(|t| {
        t.zombie.is_none() && !img(dir, &format!("fdinfo-{}.img", t.ids.files_id)).exists()
    }) else {
        return Ok(());
    };
    let held: std::collections::HashSet<u32> = tasks
        .iter()
        .flat_map(|t| t.fds.iter().map(|f| f.id))
        .chain(packets.iter().flat_map(|p| p.rights.iter().copied()))
        .collect();
    let only_fd = |f: &pb::FileEntry| {
        f.pipe.is_some()
            || f.isk.is_some()
            || f.efd.is_some()
            || f.epfd.is_some()
            || f.sgfd.is_some()
            || f.tfd.is_some()
            || f.ify.is_some()
            || f.ffy.is_some()
    };
    match files.values().find(|f| only_fd(f) && !held.contains(&f.id)) {
        Some(f) => Err(SetupError::FdinfoLost {
            pid: t.pid,
            files_id: t.ids.files_id,
            id: f.id,
        }
        .into()),
        None => Ok(()),
    }
}

/// What a pipe or fifo held at dump: its queued bytes and its capacity
/// (F_GETPIPE_SZ; absent in images of old CRIU versions).
pub struct PipeData {
    pub data: Vec<u8>,
    pub size: Option<u32>,
}

/// Everything read from the images directory.
pub struct Plan {
    pub dir: PathBuf,
    /// Tasks, each parent before its children (pstree order).
    pub tasks: Vec<Task>,
    /// The file table by file id.
    pub files: FileTable,
    /// The unix sockets, with their holders and queues.
    pub unix: Model,
    /// Socket queues in image order.
    pub packets: Vec<Packet>,
    /// Positions in `packets` by the file id of the queue's owner.
    packets_of: HashMap<u32, Vec<usize>>,
    /// Pipe data by pipe inode.
    pub pipe_data: HashMap<u32, PipeData>,
    /// Fifo data by pipe inode.
    pub fifo_data: HashMap<u32, PipeData>,
    /// The namespaces the tree owns and what goes into them.
    pub ns: super::ns::NsPlan,
    /// The dumper's cgroup set (inventory's root_cg_set).
    pub root_cg_set: u32,
    /// The dump's network lock (inventory's method and run id; images
    /// without a run id name the table by the root's pid, as CRIU does).
    pub net_lock: crate::model::netlock::Lock,
    /// tty-info.img by id: the terminals TTY file entries name.
    pub ttys: HashMap<u32, pb::TtyInfoEntry>,
    /// Files under `/proc/PID/` of a task of the tree, by file id, with
    /// that PID: opened by that task (procfiles.rs).
    pub proc_files: HashMap<u32, u32>,
    /// The indexes of the ptys made anew (set once files are opened): their
    /// session leaders take them as controlling terminals.
    pub ptys_made: std::sync::OnceLock<Vec<u32>>,
    /// How many file locks the images hold (filelocks.img).
    pub file_locks: usize,
    /// Image pid or tid -> the same task's pid in crit's pid namespace,
    /// once the tree exists in a pid namespace of its own.
    hosts: std::sync::OnceLock<HashMap<u32, u32>>,
}

/// The unix socket model of the images: every socket of `files.img`, who
/// holds it (tasks in pstree order) and what is queued for it.
fn unix_model(files: &FileTable, tasks: &[Task], packets: &[Packet]) -> Result<Model> {
    let mut m = Model::new(
        files
            .values()
            .filter_map(|f| f.usk.as_ref().map(|u| (f.id, u.clone()))),
    )
    .map_err(SetupError::UnixModel)?;
    for t in tasks {
        for f in &t.fds {
            m.add_holder(f.id, t.pid, f.fd);
        }
    }
    for p in packets {
        m.add_queued(p.id_for, p.data.len() as u64);
    }
    Ok(m)
}

/// The pty task `t` leads the session of: one whose tty-info names the
/// task as its session, through an fd on its slave if it has one, else
/// on its master.
fn ctty_of(t: &Task, files: &FileTable, ttys: &HashMap<u32, pb::TtyInfoEntry>) -> Option<Ctty> {
    let mut on_pty = t.fds.iter().filter_map(|fd| {
        let tty = files.get(&fd.id)?.tty.as_ref()?;
        let info = ttys.get(&tty.tty_info_id)?;
        let index = info
            .pty
            .as_ref()
            .filter(|_| info.r#type == pb::TtyType::Pty as i32)?;
        let (sid, pgrp) = pty_session(ttys, index.index);
        (sid == t.pid).then_some((
            info.id & 1,
            Ctty {
                fd: fd.fd,
                id: fd.id,
                index: index.index,
                pgrp,
            },
        ))
    });
    let first = on_pty.next()?;
    Some(on_pty.fold(first, |a, b| if b.0 < a.0 { b } else { a }).1)
}

/// The session and foreground group of pty `index`: as its slave's
/// tty-info has them, else as its master's (CRIU reads them on the first
/// fd of each end it dumps, and a slave's fd in a task of another
/// session tells none).
pub fn pty_session(ttys: &HashMap<u32, pb::TtyInfoEntry>, index: u32) -> (u32, u32) {
    use crate::model::tty::{info_id, master_info_id};
    [info_id(index), master_info_id(index)]
        .iter()
        .filter_map(|id| ttys.get(id))
        .find(|i| i.sid != 0)
        .map_or((0, 0), |i| (i.sid, i.pgrp))
}

/// The pidfds `t` holds of live processes; one naming a process that is
/// not a task of the images is refused. Those of exited processes (nspid
/// -1) are made in crit and inherited ([`super::kinds::open_exited_pidfds`]).
fn pidfds_of(
    t: &Task,
    files: &FileTable,
    pids: &std::collections::HashSet<u32>,
) -> Result<Vec<Pidfd>> {
    let mut v = Vec::new();
    for fd in &t.fds {
        let Some(p) = files.get(&fd.id).and_then(|f| f.pidfd.as_ref()) else {
            continue;
        };
        if p.nspid == -1 {
            continue;
        }
        let target = u32::try_from(p.nspid).ok().filter(|n| pids.contains(n));
        let Some(target) = target else {
            return Err(super::error::FileError::PidfdTarget {
                pid: t.pid,
                fd: fd.fd,
                target: p.nspid,
            }
            .into());
        };
        v.push(Pidfd {
            fd: fd.fd,
            cloexec: fd.flags & 1 != 0,
            target,
            flags: p.flags,
        });
    }
    Ok(v)
}

fn img(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

impl Plan {
    pub fn load(dir: &Path) -> Result<Plan> {
        if !dir.is_dir() {
            return Err(SetupError::NotImages {
                path: dir.to_path_buf(),
            }
            .into());
        }
        let inv = super::validate::inventory(dir)?;
        let pstree: Vec<pb::PstreeEntry> = read_all(&img(dir, "pstree.img"), "PSTREE")?;
        super::validate::pstree(dir, &pstree)?;
        super::validate::core_images(dir, &pstree)?;
        let fpath = img(dir, "files.img");
        let files = if fpath.exists() {
            FileTable::read(&fpath)?
        } else {
            FileTable::default()
        };
        let spath = img(dir, "seccomp.img");
        let seccomp: Option<pb::SeccompEntry> = if spath.exists() {
            Some(read_one(&spath, "SECCOMP")?)
        } else {
            None
        };
        let mut tasks = load_tasks(dir, &pstree, seccomp.as_ref())?;
        let lpath = img(dir, "filelocks.img");
        let locks: Vec<pb::FileLockEntry> = match lpath.exists() {
            true => read_all(&lpath, "FILE_LOCKS")?,
            false => Vec::new(),
        };
        super::locks::assign(&mut tasks, &locks, &files)?;
        let packets: Vec<Packet> =
            read_payload_image(&img(dir, "sk-queues.img"), "SK_QUEUES", |d| {
                let e =
                    <pb::SkPacketEntry as prost::Message>::decode(d).map_err(|e| e.to_string())?;
                let mut rights = Vec::new();
                for scm in &e.scm {
                    // SCM_RIGHTS = 1: the only ancillary data CRIU records.
                    if scm.r#type != 1 {
                        return Err(format!(
                            "a message queued for file id {} carries ancillary data of type {}, \
                             which restore does not replay",
                            e.id_for, scm.r#type
                        ));
                    }
                    rights.extend_from_slice(&scm.rights);
                }
                Ok((e.id_for, rights))
            })?
            .into_iter()
            .map(|((id_for, rights), data)| Packet {
                id_for,
                data,
                rights,
            })
            .collect();
        let pd = |name: &str, magic: &str| -> Result<HashMap<u32, PipeData>> {
            let v = read_payload_image(&img(dir, name), magic, |d| {
                let e =
                    <pb::PipeDataEntry as prost::Message>::decode(d).map_err(|e| e.to_string())?;
                Ok((e.pipe_id, e.size))
            })?;
            Ok(v.into_iter()
                .map(|((id, size), data)| (id, PipeData { data, size }))
                .collect())
        };
        let mut packets_of: HashMap<u32, Vec<usize>> = HashMap::new();
        for (at, p) in packets.iter().enumerate() {
            packets_of.entry(p.id_for).or_default().push(at);
        }
        let pipe_data = pd("pipes-data.img", "PIPES_DATA")?;
        let fifo_data = pd("fifo-data.img", "FIFO_DATA")?;
        check_fdinfo_lost(dir, &tasks, &files, &packets)?;
        let unix = unix_model(&files, &tasks, &packets)?;
        let tpath = img(dir, "tty-info.img");
        let ttys: HashMap<u32, pb::TtyInfoEntry> = if tpath.exists() {
            read_all::<pb::TtyInfoEntry>(&tpath, "TTY_INFO")?
                .into_iter()
                .map(|t| (t.id, t))
                .collect()
        } else {
            HashMap::new()
        };
        for t in &mut tasks {
            t.ctty = ctty_of(t, &files, &ttys);
        }
        let pids: std::collections::HashSet<u32> = tasks.iter().map(|t| t.pid).collect();
        for t in &mut tasks {
            t.pidfds = pidfds_of(t, &files, &pids)?;
        }
        let dumper = inv.root_ids.unwrap_or_default();
        let root_ids = tasks.first().map(|t| t.ids).unwrap_or_default();
        let ns = super::ns::NsPlan::read(dir, &root_ids, &dumper)?;
        let proc_files = super::procfiles::find(&tasks, &files);
        let net_lock = crate::model::netlock::Lock::new(
            inv.network_lock_method
                .and_then(crate::model::netlock::Method::of_number)
                .unwrap_or_default(),
            &inv.dump_criu_run_id
                .clone()
                .unwrap_or_else(|| pstree.first().map_or(0, |p| p.pid).to_string()),
        );
        Ok(Plan {
            net_lock,
            file_locks: locks.len(),
            proc_files,
            root_cg_set: inv.root_cg_set.unwrap_or(1),
            ttys,
            ptys_made: Default::default(),
            ns,
            hosts: Default::default(),
            dir: dir.to_path_buf(),
            tasks,
            files,
            unix,
            packets,
            packets_of,
            pipe_data,
            fifo_data,
        })
    }

    pub fn file(&self, id: u32, pid: u32) -> Result<&pb::FileEntry> {
        self.files
            .get(&id)
            .ok_or_else(|| SetupError::NoFile { pid, id }.into())
    }

    /// The queued packets of the socket with file id `id`, in order.
    pub fn packets_for(&self, id: u32) -> impl Iterator<Item = &Packet> {
        self.packets_of
            .get(&id)
            .into_iter()
            .flatten()
            .map(|&at| &self.packets[at])
    }

    /// The first task (in pstree order) that holds file `id`.
    pub fn first_holder(&self, id: u32) -> Option<u32> {
        self.tasks
            .iter()
            .find(|t| t.fds.iter().any(|f| f.id == id))
            .map(|t| t.pid)
    }

    pub fn task(&self, pid: u32) -> Option<&Task> {
        self.tasks.iter().find(|t| t.pid == pid)
    }

    /// All pids and tids the restore must create.
    pub fn all_ids(&self) -> Vec<u32> {
        self.tasks
            .iter()
            .flat_map(|t| t.threads.iter().map(|th| th.tid))
            .collect()
    }

    /// Records where the tree's pids are in crit's pid namespace (only
    /// the first call counts).
    pub fn set_hosts(&self, map: HashMap<u32, u32>) {
        let _ = self.hosts.set(map);
    }

    /// Image pid or tid `id` as crit's kernel calls name it: the same
    /// number unless the tree has a pid namespace of its own.
    pub fn host(&self, id: u32) -> u32 {
        self.hosts
            .get()
            .and_then(|m| m.get(&id).copied())
            .unwrap_or(id)
    }

    /// Whether task `t` belongs to a process group whose leader is not in
    /// the images and is not the root's group (that one is crit's, as for
    /// a shell job): the restore makes such a group with a helper.
    pub fn lost_group(&self, t: &Task) -> bool {
        let root_pgid = self.tasks.first().map(|r| r.pgid);
        t.pgid != 0 && Some(t.pgid) != root_pgid && self.task(t.pgid).is_none()
    }

    /// The pids of the groups [`Plan::lost_group`] makes.
    pub fn lost_groups(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .tasks
            .iter()
            .filter(|t| self.lost_group(t))
            .map(|t| t.pgid)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The tasks crit takes over (all but zombies).
    pub fn live(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter().filter(|t| t.zombie.is_none())
    }

    /// The files only in flight: passed in a queued message (SCM_RIGHTS)
    /// and held by no task. crit opens them like the tasks' files, sends
    /// them with their message and closes its own copies.
    pub fn in_flight_only(&self) -> Vec<u32> {
        let held: std::collections::HashSet<u32> = self
            .tasks
            .iter()
            .flat_map(|t| t.fds.iter().map(|f| f.id))
            .collect();
        let mut v: Vec<u32> = self
            .packets
            .iter()
            .flat_map(|p| p.rights.iter().copied())
            .filter(|id| !held.contains(id))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Every task's images, in pstree order, read on as many threads as
/// crit has CPUs (up to 4) when the tree is big enough to gain from it.
/// The first error in pstree order is the one reported.
fn load_tasks(
    dir: &Path,
    pstree: &[pb::PstreeEntry],
    seccomp: Option<&pb::SeccompEntry>,
) -> Result<Vec<Task>> {
    let one = |p: &pb::PstreeEntry| -> Result<Task> {
        let t = load_task(dir, p, seccomp)?;
        if t.zombie.is_none() {
            super::validate::cores(dir, &t)?;
            super::validate::fds(dir, &t)?;
        }
        super::validate::vmas(dir, &t)?;
        super::validate::pagemap(dir, &t)?;
        Ok(t)
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4);
    if threads < 2 || pstree.len() < 32 {
        return pstree.iter().map(one).collect();
    }
    let per = pstree.len().div_ceil(threads);
    let parts: Vec<Vec<Result<Task>>> = std::thread::scope(|s| {
        let hs: Vec<_> = pstree
            .chunks(per)
            .map(|c| crate::sys::thread::scoped(s, move || c.iter().map(one).collect::<Vec<_>>()))
            .collect();
        hs.into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| vec![Err(SetupError::ImageReaderPanicked.into())]),
                Err(e) => vec![Err(crate::error::Error::io("reading the images", e))],
            })
            .collect()
    });
    parts.into_iter().flatten().collect()
}

fn load_task(dir: &Path, p: &pb::PstreeEntry, seccomp: Option<&pb::SeccompEntry>) -> Result<Task> {
    let pid = p.pid;
    let tids: Vec<u32> = if p.threads.is_empty() {
        vec![pid]
    } else {
        p.threads.clone()
    };
    // A zombie only needs its pid, place in the tree and exit status.
    // CRIU writes zombies as TASK_DEAD (2); TASK_ZOMBIE (6) is its
    // in-memory name for the same and is taken too.
    let first: pb::CoreEntry = read_one(&img(dir, &format!("core-{pid}.img")), "CORE")?;
    if let Some(tc) = first
        .tc
        .as_ref()
        .filter(|tc| tc.task_state == 2 || tc.task_state == 6)
    {
        return Ok(zombie(p, tc.exit_code, first));
    }
    let mut threads = read_threads(dir, pid, first, &tids)?;
    let ids = match threads[0].core.ids {
        Some(ids) => ids,
        None => read_one(&img(dir, &format!("ids-{pid}.img")), "IDS")?,
    };
    let tc = threads[0].core.tc.clone();
    // TASK_ALIVE = 1, TASK_DEAD = 2, TASK_STOPPED = 3, TASK_HELPER = 4, TASK_ZOMBIE = 6
    let state = tc.as_ref().map(|t| t.task_state).unwrap_or(1);
    if state != 1 && state != 3 {
        return Err(SetupError::TaskState { pid, state }.into());
    }
    for th in threads.iter_mut() {
        th.seccomp = seccomp_of(th, tc.as_ref(), seccomp)?;
    }
    let posix = tc
        .as_ref()
        .and_then(|t| t.timers.as_ref())
        .map(|t| t.posix.as_slice())
        .unwrap_or(&[]);
    let posix_timers = super::timers::checked(pid, &tids, posix)?;
    let mut mm: pb::MmEntry = read_one(&img(dir, &format!("mm-{pid}.img")), "MM")?;
    let guard = |v: &pb::VmaEntry| v.status & crate::image::flags::VMA_AREA_GUARD != 0;
    let guards = mm
        .vmas
        .iter()
        .filter(|v| guard(v))
        .map(|v| (v.start, v.end))
        .collect();
    mm.vmas.retain(|v| !guard(v));
    let (pages_id, pagemap) = read_pagemap(&img(dir, &format!("pagemap-{pid}.img")), Vec::new())?;
    let fs: pb::FsEntry = read_one(&img(dir, &format!("fs-{pid}.img")), "FS")?;
    // CRIU writes none for a task without fds (a container's init that
    // closed them all): missing reads as empty, as in CRIU's restore.
    let fdinfo = img(dir, &format!("fdinfo-{}.img", ids.files_id));
    let fds: Vec<pb::FdinfoEntry> = if fdinfo.exists() {
        read_all(&fdinfo, "FDINFO")?
    } else {
        Vec::new()
    };
    Ok(Task {
        pid,
        ppid: p.ppid,
        pgid: p.pgid,
        sid: p.sid,
        threads,
        mm,
        guards,
        pages_id,
        pagemap,
        fs,
        fds,
        ids,
        zombie: None,
        posix_timers,
        ctty: None,
        pidfds: Vec::new(),
        locks: Vec::new(),
    })
}

/// A zombie: forked only to exit with `exit_code`.
pub(super) fn zombie(p: &pb::PstreeEntry, exit_code: u32, core: pb::CoreEntry) -> Task {
    Task {
        pid: p.pid,
        ppid: p.ppid,
        pgid: p.pgid,
        sid: p.sid,
        threads: vec![Thread {
            tid: p.pid,
            core,
            seccomp: Default::default(),
        }],
        mm: pb::MmEntry::default(),
        guards: Vec::new(),
        pages_id: 0,
        pagemap: Vec::new(),
        fs: pb::FsEntry::default(),
        fds: Vec::new(),
        ids: pb::TaskKobjIdsEntry::default(),
        zombie: Some(exit_code),
        posix_timers: Vec::new(),
        ctty: None,
        pidfds: Vec::new(),
        locks: Vec::new(),
    }
}

/// The threads' core images, the main thread first (its core `main`
/// already read).
fn read_threads(dir: &Path, pid: u32, main: pb::CoreEntry, tids: &[u32]) -> Result<Vec<Thread>> {
    let mut ordered = vec![pid];
    ordered.extend(tids.iter().copied().filter(|&t| t != pid));
    let mut threads = Vec::new();
    let mut main = Some(main);
    for tid in ordered {
        let core: pb::CoreEntry = match main.take() {
            Some(c) => c,
            None => read_one(&img(dir, &format!("core-{tid}.img")), "CORE")?,
        };
        if core.thread_info.is_none() {
            return Err(SetupError::NotX86 { tid, pid }.into());
        }
        threads.push(Thread {
            tid,
            core,
            seccomp: Default::default(),
        });
    }
    Ok(threads)
}

/// A thread's seccomp mode and filter; images older than thread_core's
/// fields keep them in the task core.
fn seccomp_of(
    th: &Thread,
    old: Option<&pb::TaskCoreEntry>,
    seccomp: Option<&pb::SeccompEntry>,
) -> Result<super::seccomp::Setup> {
    let thc = th.core.thread_core.as_ref();
    let mode = thc
        .and_then(|t| t.seccomp_mode)
        .or_else(|| old.and_then(|t| t.old_seccomp_mode))
        .unwrap_or(0);
    let index = thc
        .and_then(|t| t.seccomp_filter)
        .or_else(|| old.and_then(|t| t.old_seccomp_filter));
    super::seccomp::setup_of(th.tid, mode as u32, index, seccomp)
}

/// Reads a pagemap image: its head (pages id), then its entries.
pub fn read_pagemap(
    path: &Path,
    mut out: Vec<pb::PagemapEntry>,
) -> Result<(u32, Vec<pb::PagemapEntry>)> {
    let file = Mapped::open(path)?;
    let mut src = file.source();
    let mut rd = EntryReader::expect(&mut src, "PAGEMAP")?;
    let mut head = None;
    while let Some(e) = rd.next_entry()? {
        if head.is_none() {
            head = Some(e.decode::<pb::PagemapHead>()?.pages_id);
        } else {
            out.push(e.decode()?);
        }
    }
    let id = head.ok_or_else(|| SetupError::NoPagemapHead {
        path: path.to_path_buf(),
    })?;
    Ok((id, out))
}

/// Reads an image whose entries are followed by payloads. `parse` decodes an
/// entry into its key. A missing file reads as empty.
fn read_payload_image<K>(
    path: &Path,
    magic: &str,
    parse: impl Fn(&[u8]) -> std::result::Result<K, String>,
) -> Result<Vec<(K, Vec<u8>)>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file = Mapped::open(path)?;
    let mut src: Source = file.source();
    let mut rd = EntryReader::expect(&mut src, magic)?;
    let mut v = Vec::new();
    while let Some(e) = rd.next_entry()? {
        let key = parse(e.message).map_err(|msg| Error::Image {
            file: file.name.clone(),
            offset: e.offset,
            msg: format!("bad entry: {msg}"),
        })?;
        v.push((key, e.raw_payload.to_vec()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u32, sid: u32, pgrp: u32) -> pb::TtyInfoEntry {
        pb::TtyInfoEntry {
            id,
            r#type: pb::TtyType::Pty as i32,
            sid,
            pgrp,
            pty: Some(pb::TtyPtyEntry { index: id >> 1 }),
            ..Default::default()
        }
    }

    #[test]
    fn a_ptys_session_is_its_slaves_else_its_masters() {
        let ttys = |v: Vec<pb::TtyInfoEntry>| v.into_iter().map(|i| (i.id, i)).collect();
        // CRIU read the slave on a fd of a task outside the session.
        let t: HashMap<_, _> = ttys(vec![info(6, 0, 0), info(7, 40, 41)]);
        assert_eq!(pty_session(&t, 3), (40, 41));
        let t: HashMap<_, _> = ttys(vec![info(6, 40, 42), info(7, 40, 41)]);
        assert_eq!(pty_session(&t, 3), (40, 42));
        let t: HashMap<_, _> = ttys(vec![info(6, 0, 0)]);
        assert_eq!(pty_session(&t, 3), (0, 0));
        assert_eq!(pty_session(&t, 4), (0, 0));
    }
}
