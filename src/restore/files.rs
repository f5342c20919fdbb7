//! Opens, in crit itself before any task is forked, every file object the
//! images name (regular files, directories, pipes, fifos), so that forked
//! tasks inherit them and only move them to their fd numbers. One open per
//! file id: tasks sharing a file id share its offset and flags, as after
//! the fork that made them share it.

use super::error::{FileError, On};
use super::plan::{PipeData, Plan};
use super::reservoir::Reservoir;
use crate::error::{Error, Result};
pub use crate::image::flags::{
    VMA_ANON_PRIVATE, VMA_ANON_SHARED, VMA_AREA_AIORING, VMA_AREA_HEAP, VMA_AREA_MEMFD,
    VMA_AREA_REGULAR, VMA_AREA_SOCKET, VMA_AREA_STACK, VMA_AREA_SYSVIPC, VMA_AREA_VDSO,
    VMA_AREA_VSYSCALL, VMA_AREA_VVAR, VMA_FILE_PRIVATE, VMA_FILE_SHARED, VMA_UNSUPP,
};
use crate::image::pb;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

const O_ACCMODE: u32 = 3;
const O_NONBLOCK: u32 = 0o4000;
const O_APPEND: u32 = 0o2000;
const O_DIRECTORY: u32 = 0o200000;
const O_PATH: u32 = 0o10000000;
/// Opening a terminal must not make it crit's controlling one.
const O_NOCTTY: u32 = 0o400;

fn open_path(name: &str, flags: u32) -> std::io::Result<std::fs::File> {
    let mut o = OpenOptions::new();
    match flags & O_ACCMODE {
        0 => o.read(true),
        1 => o.write(true),
        _ => o.read(true).write(true),
    };
    // Keep the status flags that matter for the open file; creation flags
    // are meaningless now.
    let keep = flags
        & (O_NONBLOCK | O_APPEND | O_DIRECTORY | O_PATH | O_NOCTTY | 0o4010000 /* O_SYNC */ | 0o40000 /* O_DIRECT */ | 0o1000000/* O_NOATIME */);
    o.custom_flags((keep | 0o2000000/* O_CLOEXEC */) as i32);
    o.open(name)
}

/// Opens a regular file (or directory, or device) entry at its offset,
/// refusing a file that is not the one dumped.
pub fn open_reg(r: &pb::RegFileEntry, pid: u32) -> Result<OwnedFd> {
    let mut f = open_path(&r.name, r.flags).map_err(|source| FileError::IoArg {
        on: On::PidFile { pid, id: r.id },
        what: "open",
        arg: r.name.clone(),
        source,
    })?;
    check_unchanged(r, &f, pid)?;
    // A file opens at 0; devices that do not seek (terminals) stay there.
    if r.pos != 0 {
        f.seek(SeekFrom::Start(r.pos))
            .map_err(|source| FileError::Seek {
                pid,
                id: r.id,
                name: r.name.clone(),
                pos: r.pos,
                source,
            })?;
    }
    Ok(f.into())
}

/// crit's own terminal, opened anew with a shell job's flags for its
/// terminal file `id`: with `--shell-job` the job comes back on the
/// terminal crit runs on, as criu --shell-job gives it criu's. By its own
/// path (`/dev/pts/N`, what `ttyname` shows): the first of crit's stdin,
/// stdout and stderr that is a terminal, through /proc/self/fd; else
/// `/dev/tty`. Not checked against the dumped file's mode: it is another
/// terminal.
fn own_terminal(id: u32, flags: u32, pid: u32) -> Result<OwnedFd> {
    use std::io::IsTerminal;
    let flags = flags | O_NOCTTY;
    let ttys = [
        std::io::stdin().is_terminal(),
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
    ];
    let mine = (0..3)
        .filter(|&n| ttys[n])
        .find_map(|n| open_path(&format!("/proc/self/fd/{n}"), flags).ok());
    let f = match mine {
        Some(f) => f,
        None => open_path("/dev/tty", flags).map_err(|source| FileError::IoArg {
            on: On::PidFile { pid, id },
            what: "open",
            arg: "/dev/tty (crit's terminal, for --shell-job)".into(),
            source,
        })?,
    };
    Ok(f.into())
}

/// Refuses a file whose size, mode or ELF build id differ from what the
/// images recorded (as CRIU does): a task mapping another build of a
/// library would crash at once.
fn check_unchanged(r: &pb::RegFileEntry, f: &std::fs::File, pid: u32) -> Result<()> {
    match crate::model::file::check_unchanged(r, f) {
        Ok(None) => Ok(()),
        Ok(Some(changed)) => Err(FileError::Changed {
            pid,
            id: r.id,
            name: r.name.clone(),
            changed,
        }
        .into()),
        Err(source) => Err(FileError::Path {
            on: On::PidFile { pid, id: r.id },
            path: r.name.clone().into(),
            source,
        }
        .into()),
    }
}

/// Opens the file a VMA maps, read-only unless the mapping is shared and
/// writable, refusing one that is not the file dumped.
pub fn open_for_vma(r: &pb::RegFileEntry, writable_shared: bool, pid: u32) -> Result<OwnedFd> {
    let fl = if writable_shared { 2 } else { 0 };
    let f = open_path(&r.name, fl).map_err(|source| FileError::IoArg {
        on: On::PidMapped { pid, id: r.id },
        what: "open",
        arg: r.name.clone(),
        source,
    })?;
    check_unchanged(r, &f, pid)?;
    Ok(f.into())
}

/// Creates every pipe once, fills it with its queued data, and puts each
/// pipe file entry (read or write end) into the reservoir.
pub fn open_pipes(plan: &Plan, res: &mut Reservoir) -> Result<()> {
    let mut made: HashMap<u32, (OwnedFd, OwnedFd)> = HashMap::new();
    for f in plan.files.values() {
        let Some(p) = &f.pipe else { continue };
        if res.by_id.contains_key(&f.id) {
            continue;
        }
        if let std::collections::hash_map::Entry::Vacant(v) = made.entry(p.pipe_id) {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|source| {
                FileError::Nix {
                    on: On::Pipe(p.pipe_id),
                    what: "pipe2",
                    source,
                }
            })?;
            if let Some(pd) = plan.pipe_data.get(&p.pipe_id) {
                fill_pipe(&w, pd, p.pipe_id)?;
            }
            v.insert((r, w));
        }
        let (r, w) = &made[&p.pipe_id];
        let end = if p.flags & O_ACCMODE == 0 { r } else { w };
        let fd = end.try_clone().map_err(|source| FileError::Io {
            on: On::Pipe(p.pipe_id),
            what: "dup",
            source,
        })?;
        // Status flags belong to the open file, which both ends' copies
        // share; O_NONBLOCK is set per end.
        crate::sys::fdops::set_status_flags(
            fd.as_raw_fd(),
            (p.flags & (O_NONBLOCK | O_APPEND)) as i32,
        )
        .map_err(|source| FileError::Io {
            on: On::Pipe(p.pipe_id),
            what: "set flags",
            source,
        })?;
        res.by_id.insert(f.id, fd);
    }
    Ok(())
}

/// Gives a pipe the capacity it had (F_SETPIPE_SZ, as CRIU does: a
/// program may rely on the room it made), then writes its queued bytes.
fn fill_pipe(w: &OwnedFd, pd: &PipeData, ino: u32) -> Result<()> {
    let data = &pd.data;
    // Images without a size (older CRIU): room for the data at least.
    let size = match pd.size {
        Some(s) => Some(s as usize),
        None => (data.len() > 65536).then(|| data.len().next_power_of_two()),
    };
    let now = nix::fcntl::fcntl(w, nix::fcntl::FcntlArg::F_GETPIPE_SZ).ok();
    if let Some(size) = size.filter(|&s| now != Some(s as i32)) {
        nix::fcntl::fcntl(w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size as i32)).map_err(|e| {
            FileError::PipeSize {
                ino,
                size,
                source: e.into(),
            }
        })?;
    }
    let mut f = std::fs::File::from(w.try_clone().map_err(|source| FileError::Io {
        on: On::Pipe(ino),
        what: "dup",
        source,
    })?);
    f.write_all(data).map_err(|source| {
        FileError::Refill {
            ino,
            len: data.len(),
            source,
        }
        .into()
    })
}

/// Opens fifos: first a read-write open so that neither end blocks, then
/// the end the task had; queued data is written back once per fifo.
pub fn open_fifos(plan: &Plan, res: &mut Reservoir) -> Result<()> {
    let mut filled = std::collections::HashSet::new();
    for f in plan.files.values() {
        let Some(ff) = &f.fifo else { continue };
        if res.by_id.contains_key(&f.id) {
            continue;
        }
        let regf = ff.regf_id.unwrap_or(ff.id);
        let Some(reg) = plan.files.get(&regf).and_then(|g| g.reg.as_ref()) else {
            return Err(FileError::FifoNoPath {
                id: ff.id,
                reg: regf,
            }
            .into());
        };
        let open_err = |source| FileError::Io {
            on: On::Fifo(reg.name.clone()),
            what: "open",
            source,
        };
        let keep = open_path(&reg.name, 2).map_err(open_err)?;
        if filled.insert(ff.pipe_id) {
            if let Some(pd) = plan.fifo_data.get(&ff.pipe_id) {
                let k: OwnedFd = keep
                    .try_clone()
                    .map_err(|e| Error::io("fifo: dup", e))?
                    .into();
                fill_pipe(&k, pd, ff.pipe_id)?;
            }
        }
        let end = open_path(&reg.name, reg.flags).map_err(open_err)?;
        res.keep.push(keep.into());
        res.by_id.insert(f.id, end.into());
    }
    Ok(())
}

/// A pty slave: a shell job's terminal, whose master (the terminal
/// emulator's, sshd's) is outside the tree; crit dumps it as a regular
/// file by its path (a pair inside the tree is made by `open_pairs`).
fn is_pty_slave(p: &str) -> bool {
    p.starts_with("/dev/pts/")
}

/// Opens every regular-file entry some task has as an fd, and every file
/// some VMA maps or that is a task's exe.
pub fn open_regular(
    plan: &Plan,
    res: &mut Reservoir,
    shell_job: bool,
    notify: &crate::action::Notifier,
) -> Result<()> {
    // Pty pairs inside the tree first: their slaves are not a shell
    // job's terminal.
    super::pty::open_pairs(plan, res)?;
    for t in plan.live() {
        for fd in &t.fds {
            // Under /proc/PID/ of a task: opened by that task.
            if res.by_id.contains_key(&fd.id) || plan.proc_files.contains_key(&fd.id) {
                continue;
            }
            let f = plan.file(fd.id, t.pid)?;
            if let Some(r) = &f.reg {
                // Not by its old path even where that exists: it may be
                // another session's terminal now.
                let opened = match shell_job && is_pty_slave(&r.name) {
                    true => own_terminal(fd.id, r.flags, t.pid)?,
                    false => open_reg(r, t.pid)?,
                };
                res.by_id.insert(fd.id, opened);
            } else if let Some(tty) = &f.tty {
                // A terminal (CRIU's TTY entries) whose master no task
                // holds: a shell job's comes back on crit's own terminal,
                // as criu --shell-job does; else (a container's console)
                // as a new pty whose master is handed over.
                if !shell_job {
                    let slave =
                        super::pty::open_slave(plan, (t.pid, fd.fd), tty, notify, &mut res.ptys)?;
                    res.by_id.insert(fd.id, slave);
                    continue;
                }
                res.by_id
                    .insert(fd.id, own_terminal(fd.id, tty.flags, t.pid)?);
            }
        }
    }
    // Regular files only in flight, opened as the root task would.
    let root = plan.tasks.first().map_or(0, |t| t.pid);
    for id in plan.in_flight_only() {
        if res.by_id.contains_key(&id) {
            continue;
        }
        if let Some(r) = plan.files.get(&id).and_then(|f| f.reg.as_ref()) {
            res.by_id.insert(id, open_reg(r, root)?);
        }
    }
    open_mapped(plan, res)
}

/// Opens every file some VMA maps or that is a task's exe, once for all
/// of them: for reading and writing when any of them is a writable
/// shared mapping, as mmap refuses one of a file opened read-only (the
/// first mapping of a file may be read-only, a later one writable).
fn open_mapped(plan: &Plan, res: &mut Reservoir) -> Result<()> {
    // File id -> (writable shared somewhere, the first task that maps it).
    let mut want: std::collections::BTreeMap<u32, (bool, u32)> = Default::default();
    for t in plan.live() {
        let exe = std::iter::once((t.mm.exe_file_id, false));
        let vmas = t.mm.vmas.iter().filter(|v| is_file_vma(v)).map(|v| {
            let ws = v.flags & 1 != 0 && v.prot & 2 != 0;
            (v.shmid as u32, ws)
        });
        for (id, ws) in exe.chain(vmas) {
            want.entry(id).or_insert((false, t.pid)).0 |= ws;
        }
    }
    for (id, (ws, pid)) in want {
        if res.vma_files.contains_key(&id) {
            continue;
        }
        // A deleted (ghost) file was already recreated and opened, with
        // its descriptor's access mode: opened again through it with the
        // mode the mappings need.
        if let Some(open) = res.by_id.get(&id).filter(|_| res.ghosts.contains(&id)) {
            let again = format!("/proc/self/fd/{}", open.as_raw_fd());
            let fd = open_path(&again, if ws { 2 } else { 0 }).map_err(|source| FileError::Io {
                on: On::PidMapped { pid, id },
                what: "reopen deleted",
                source,
            })?;
            res.vma_files.insert(id, fd.into());
            continue;
        }
        let f = plan.file(id, pid)?;
        let r = f
            .reg
            .as_ref()
            .ok_or(FileError::MappedNotRegular { pid, id })?;
        res.vma_files.insert(id, open_for_vma(r, ws, pid)?);
    }
    Ok(())
}

/// Shared anonymous memory recorded by shmid (not as a memfd inode).
pub fn is_anon_shared(v: &pb::VmaEntry) -> bool {
    v.status & VMA_ANON_SHARED != 0 && v.status & (VMA_AREA_SYSVIPC | VMA_AREA_MEMFD) == 0
}

pub fn is_file_vma(v: &pb::VmaEntry) -> bool {
    v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED | VMA_AREA_MEMFD) != 0
        && v.status & (VMA_AREA_VDSO | VMA_AREA_VVAR) == 0
}

/// `--inherit-fd fd[N]:pipe:[INO]` and `fd[N]:PATH`: those image files are
/// replaced by crit's fd N (sockets are handled with the unix sockets).
pub fn apply_inherited(plan: &Plan, opts: &super::Options, res: &mut Reservoir) -> Result<()> {
    for (n, what) in &opts.inherit_fds {
        if what.starts_with("socket:[") {
            continue;
        }
        if matches!(&plan.ns.net, Some(super::ns::NetPlan::External(k)) if k == what) {
            continue;
        }
        let mut hit = false;
        let pipe_ino = what
            .strip_prefix("pipe:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u32>().ok());
        for f in plan.files.values() {
            let matches = match (pipe_ino, &f.pipe, &f.reg) {
                (Some(ino), Some(p), _) => p.pipe_id == ino,
                (None, _, Some(r)) => &r.name == what,
                _ => false,
            };
            if matches {
                let fd = crate::sys::sock::dup_raw(*n)
                    .map_err(|source| FileError::InheritDup { fd: *n, source })?;
                res.by_id.insert(f.id, fd);
                hit = true;
            }
        }
        if !hit {
            return Err(FileError::InheritUnused {
                fd: *n,
                key: what.clone(),
            }
            .into());
        }
    }
    Ok(())
}

/// Every fd of every task has an object to take, or the restore refuses,
/// naming the pid, fd and kind.
pub fn check_all_opened(plan: &Plan, res: &Reservoir) -> Result<()> {
    let in_tasks: std::collections::HashSet<u32> = res
        .task_pairs
        .iter()
        .flat_map(|p| [p.a_id, p.b_id])
        .chain(res.task_conns.iter().map(|c| c.acc_id))
        .collect();
    for t in &plan.tasks {
        for fd in &t.fds {
            let later = in_tasks.contains(&fd.id)
                || plan.proc_files.contains_key(&fd.id)
                || t.pidfds.iter().any(|p| p.fd == fd.fd);
            if !res.by_id.contains_key(&fd.id) && !later {
                let f = plan.file(fd.id, t.pid)?;
                let kind = pb::FdTypes::try_from(f.r#type)
                    .map(|k| k.as_str_name().to_string())
                    .unwrap_or_else(|_| f.r#type.to_string());
                return Err(FileError::Unsupported {
                    pid: t.pid,
                    fd: fd.fd,
                    id: fd.id,
                    kind,
                }
                .into());
            }
        }
    }
    Ok(())
}
