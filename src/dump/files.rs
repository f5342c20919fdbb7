//! files.img and its companions: the table of open files shared by every
//! task of the dump. Ids are given in the order CRIU gives them (mapped
//! files and exe first per task, then descriptors, then cwd and root);
//! one open file description gets one id even when several descriptors or
//! tasks hold it (kcmp), and a mapped or exe file gets one id per inode.

use super::error::{DumpError, Via};
use super::fdscan::{Fd, Kind, Stat, O_ACCMODE, O_APPEND, O_WRONLY};
use super::kobjs::Sorted;
use crate::error::Result;
use crate::image::pb;
use crate::image::typed::{EncodedEntries, ImageBuilder};
use crate::sys::kcmp;
use std::collections::HashMap;
use std::io::Read;

pub const FD_REG: i32 = 1;
pub const FD_PIPE: i32 = 2;
pub const FD_FIFO: i32 = 3;
pub const FD_INETSK: i32 = 4;
pub const FD_UNIXSK: i32 = 5;
pub const FD_EVENTFD: i32 = 6;
pub const FD_EVENTPOLL: i32 = 7;
pub const FD_INOTIFY: i32 = 8;
pub const FD_FANOTIFY: i32 = 12;
pub const FD_SIGNALFD: i32 = 9;
pub const FD_PACKETSK: i32 = 10;
pub const FD_TTY: i32 = 11;
pub const FD_NETLINKSK: i32 = 13;
pub const FD_TIMERFD: i32 = 17;
pub const FD_MEMFD: i32 = 18;
pub const FD_PIDFD: i32 = 20;

/// The attributes a ghost file records.
struct FdStat {
    st: Stat,
}

pub fn fown() -> pb::FownEntry {
    pb::FownEntry::default()
}

/// The owner of the file behind `f` as CRIU records it (all zero when
/// none is set).
pub fn fown_of(pid: i32, fd: i32, f: std::os::fd::BorrowedFd) -> Result<pb::FownEntry> {
    let o = crate::sys::fown::owner(f).map_err(|source| DumpError::Fd {
        pid,
        fd,
        what: "file owner",
        source,
    })?;
    Ok(pb::FownEntry {
        uid: o.uid,
        euid: o.euid,
        signum: o.signum as u32,
        pid_type: o.pid_type as u32,
        pid: o.pid as u32,
    })
}

/// File systems whose files a restore cannot make again (magic numbers
/// of linux/magic.h), with what their files are.
const UNMAKABLE: [(nix::sys::statfs::FsType, &str); 2] = [
    (nix::sys::statfs::FsType(0x1980_0202), "POSIX message queue"),
    (
        nix::sys::statfs::FsType(0x5345_434d),
        "secret memory area (memfd_secret)",
    ),
];

/// Regular deleted files from this size on go into their ghost image as
/// chunks, as CRIU 4.2 writes them (its GHOST_CHUNKS_THRESH).
const GHOST_CHUNKED_FROM: u64 = 3 * 4096;

/// The default `--ghost-limit`, CRIU's: 1 MiB.
pub const GHOST_LIMIT: u64 = 1 << 20;

/// A deleted file's ghost-file-N.img.
pub struct Ghost {
    pub id: u32,
    /// The file, for errors.
    pub via: Via,
    pub body: GhostBody,
}

pub enum GhostBody {
    /// The whole image (a small file, a device node, a directory).
    Built(ImageBuilder),
    /// The head, then the file's data chunks, read from `file` when the
    /// image is written (the tree is still frozen then).
    Chunks {
        head: pb::GhostFileEntry,
        file: std::fs::File,
    },
}

/// The shared file table and the images that hang off it.
#[derive(Default)]
pub struct FileTable {
    next_id: u32,
    /// files.img's entries, encoded as they are pushed.
    pub entries: EncodedEntries,
    special: HashMap<(u64, u64), u32>,
    /// The id of every open file given one, by (dev, ino).
    seen: HashMap<(u64, u64), Sorted<u32>>,
    pub pipes_data: Option<ImageBuilder>,
    pub fifo_data: Option<ImageBuilder>,
    pipe_done: std::collections::HashSet<u64>,
    pub remaps: Vec<pb::RemapFilePathEntry>,
    /// ghost-file-N.img, one per deleted file.
    pub ghosts: Vec<Ghost>,
    next_ghost: u32,
    /// The most space a deleted file may take to be dumped
    /// (`--ghost-limit`; see [`FileTable::ghost`]).
    ghost_limit: u64,
    pub memfd_inodes: Vec<pb::MemfdInodeEntry>,
    /// tty-info.img: one entry per pty end the tree holds.
    pub ttys: Vec<pb::TtyInfoEntry>,
    /// The indexes of the ptys whose master a task of the tree holds,
    /// found once a terminal is met (see [`super::tty`]).
    pub pty_masters: Option<std::collections::HashSet<u32>>,
    /// The first (pid, fd) holding each pty end, by its tty-info id.
    pub tty_holders: HashMap<u32, (i32, i32)>,
    /// tty-data.img: bytes read out of pty pairs (see [`super::ptyqueue`]).
    pub tty_data: Vec<pb::TtyDataEntry>,
    memfd_by_ino: HashMap<u64, u32>,
    /// Shared memory (memfd, shared anonymous) to dump: (inode, a /proc
    /// path that opens it).
    pub shmem: Vec<(u64, String)>,
    /// Set when the tree shares crit's mount namespace: a file recorded
    /// by its path must then be the file crit finds at that path
    /// ([`FileTable::check_path`]).
    pub check_paths: bool,
    /// Which of [`UNMAKABLE`] the file system of each device seen is.
    unmakable_devs: HashMap<u64, Option<&'static str>>,
}

impl FileTable {
    /// An empty table; deleted files taking more than `ghost_limit` bytes
    /// are refused.
    pub fn new(ghost_limit: u64) -> FileTable {
        FileTable {
            ghost_limit,
            ..Default::default()
        }
    }

    pub fn new_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// The id of the open file behind `pid`'s `fd`, and whether it is new.
    pub fn fd_id(&mut self, pid: i32, fd: &Fd) -> Result<(u32, bool)> {
        let next = &mut self.next_id;
        self.seen
            .entry((fd.st.dev, fd.st.ino))
            .or_insert_with(|| Sorted::new(kcmp::Kind::File))
            .find_or_add(pid, fd.fd as u64, || {
                *next += 1;
                *next
            })
            .map_err(|(_, source)| {
                DumpError::Fd {
                    pid,
                    fd: fd.fd,
                    what: "kcmp",
                    source,
                }
                .into()
            })
    }

    /// The id of the open file behind crit's own `fd` (one a queued
    /// message passed, received by a peek) if a task of the tree holds it
    /// and its descriptor has been given an id.
    pub fn held_id(&self, fd: std::os::fd::RawFd) -> Result<Option<u32>> {
        let path = format!("/proc/self/fd/{fd}");
        let st =
            Stat::of(&std::fs::metadata(&path).map_err(|source| DumpError::OwnFd { fd, source })?);
        // A socket (not a socket file opened O_PATH, which has a path) is
        // known by its inode alone, as the descriptor scan records it.
        let sockfs = std::fs::read_link(&path)
            .is_ok_and(|l| l.as_os_str().as_encoded_bytes().starts_with(b"socket:["));
        let dev = if sockfs { 0 } else { st.dev };
        let me = std::process::id() as i32;
        let Some(seen) = self.seen.get(&(dev, st.ino)) else {
            return Ok(None);
        };
        seen.find(me, fd as u64).map_err(|(pid, source)| {
            DumpError::Kcmp {
                pid: me,
                other: pid,
                source,
            }
            .into()
        })
    }

    /// A regular-file entry for a mapped file, an exe link, cwd or root;
    /// one per inode (CRIU's special file ids).
    pub fn special_reg(
        &mut self,
        path: &str,
        st: &Stat,
        open_path: &str,
        dedup: bool,
        deleted: bool,
    ) -> Result<u32> {
        if dedup {
            if let Some(&id) = self.special.get(&(st.dev, st.ino)) {
                return Ok(id);
            }
        }
        let id = self.new_id();
        if dedup {
            self.special.insert((st.dev, st.ino), id);
        }
        if !deleted {
            self.check_path(Via::Link(open_path.into()), path, st)?;
        }
        let mut reg = reg_entry(id, path, st, 0, 0);
        if st.is_reg() {
            reg.build_id = crate::model::file::build_id(open_path, st.size);
        }
        if deleted {
            let via = Via::Link(open_path.into());
            // A directory (a cwd removed under the task) comes back as an
            // empty directory made, entered and removed again.
            if !st.is_reg() && !st.is_dir() {
                return Err(DumpError::DeletedNotRegular {
                    via,
                    path: path.to_string(),
                }
                .into());
            }
            self.ghost(via, open_path, st, id)?;
        }
        self.push(FD_REG, id, |e| e.reg = Some(reg));
        Ok(id)
    }

    /// A file recorded by its path is opened by that path at restore:
    /// refused when the path names no file or another one than `st`'s,
    /// as when the file's mount was detached (`umount -l`: /proc then
    /// shows the path inside that mount) or another was mounted over it.
    /// A restore would fail to open it, or open the wrong file.
    fn check_path(&self, via: Via, path: &str, st: &Stat) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        if !self.check_paths {
            return Ok(());
        }
        let elsewhere = match std::fs::symlink_metadata(path) {
            Ok(m) => m.dev() != st.dev || m.ino() != st.ino,
            // A path that names nothing is refused; one crit may not
            // look up (EACCES on a root-squashed network file system) is
            // left to the restore, as the task could open it.
            Err(e) => matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)),
        };
        match elsewhere {
            false => Ok(()),
            true => Err(DumpError::PathElsewhere {
                via,
                path: path.to_string(),
            }
            .into()),
        }
    }

    /// Refuses a file of a file system whose files a restore cannot make
    /// again ([`UNMAKABLE`]): a POSIX message queue (`mq_open`) is a
    /// regular file to /proc, named as in the mqueue file system of its
    /// IPC namespace, which a restore would make a plain file of; secret
    /// memory (`memfd_secret`) cannot even be read. Asked of each device
    /// once, through `open_path`.
    fn refuse_unmakable(&mut self, via: &Via, open_path: &str, dev: u64, name: &str) -> Result<()> {
        let kind = *self.unmakable_devs.entry(dev).or_insert_with(|| {
            let t = nix::sys::statfs::statfs(open_path).ok()?.filesystem_type();
            UNMAKABLE
                .iter()
                .find(|(m, _)| *m == t)
                .map(|&(_, kind)| kind)
        });
        match kind {
            Some(kind) => Err(DumpError::Unmakable {
                via: via.clone(),
                name: name.to_string(),
                kind,
            }
            .into()),
            None => Ok(()),
        }
    }

    pub fn push(&mut self, ty: i32, id: u32, fill: impl FnOnce(&mut pb::FileEntry)) {
        let mut e = pb::FileEntry {
            r#type: ty,
            id,
            ..Default::default()
        };
        fill(&mut e);
        self.entries.push(&e);
    }

    /// A descriptor that is a path in the filesystem (REG), maybe deleted
    /// (then its contents go to a ghost file); `mnt_id`: its mount in the
    /// tree's own mount namespace.
    pub fn reg_fd(
        &mut self,
        pid: i32,
        fd: &Fd,
        id: u32,
        path: &str,
        deleted: bool,
        mnt_id: Option<i32>,
    ) -> Result<()> {
        let via = Via::Fd { pid, fd: fd.fd };
        let open_path = format!("/proc/{pid}/fd/{}", fd.fd);
        self.refuse_unmakable(&via, &open_path, fd.st.dev, path)?;
        if !deleted {
            self.check_path(Via::Fd { pid, fd: fd.fd }, path, &fd.st)?;
        }
        let mut reg = reg_entry(id, path, &fd.st, fd.flags, fd.pos);
        reg.fown = fd.fown;
        reg.mnt_id = mnt_id;
        let check_size = !((fd.flags & O_ACCMODE) == O_WRONLY && fd.flags & O_APPEND != 0);
        if !check_size {
            reg.size = None;
        }
        if fd.st.is_reg() && check_size {
            reg.build_id = match &fd.copy {
                Some(f) => crate::model::file::build_id_at(f, fd.st.size),
                None => crate::model::file::build_id(&open_path, fd.st.size),
            };
        }
        if deleted {
            let via = Via::Fd { pid, fd: fd.fd };
            let is_node = matches!(fd.st.mode & 0o170000, 0o020000 | 0o060000);
            if !fd.st.is_reg() && !is_node {
                return Err(DumpError::DeletedNotRegular {
                    via,
                    path: path.to_string(),
                }
                .into());
            }
            // A deleted device node comes back as a deleted node of the
            // same device (CRIU's ghost entry with rdev and no contents).
            self.ghost(via, &format!("/proc/{pid}/fd/{}", fd.fd), &fd.st, id)?;
        }
        self.push(FD_REG, id, |e| e.reg = Some(reg));
        Ok(())
    }

    /// A ghost file for file `id`, deleted but still open or mapped: its
    /// contents (read through `open_path`, a /proc link) and attributes.
    /// `via` names the file in errors. As in CRIU, a file is refused when
    /// the space it takes (its blocks, so a sparse file's holes are free)
    /// is above the ghost limit, and a regular file of 12 KiB or more is
    /// recorded as chunks of data between its holes, copied when the
    /// image is written.
    fn ghost(&mut self, via: Via, open_path: &str, st: &Stat, id: u32) -> Result<()> {
        self.refuse_unmakable(&via, open_path, st.dev, "the file")?;
        let p = open_path;
        let meta = std::fs::metadata(p).map_err(|source| DumpError::File {
            path: p.into(),
            source,
        })?;
        use std::os::unix::fs::MetadataExt;
        let used = meta.blocks() * 512;
        if used > self.ghost_limit {
            let limit = self.ghost_limit;
            return Err(DumpError::GhostTooBig { via, used, limit }.into());
        }
        let node = !st.is_reg() && !st.is_dir();
        let chunked = st.is_reg() && st.size >= GHOST_CHUNKED_FROM;
        let fd = FdStat { st: *st };
        self.next_ghost += 1;
        let gid = self.next_ghost;
        let g = pb::GhostFileEntry {
            uid: fd.st.uid,
            gid: fd.st.gid,
            mode: fd.st.mode,
            dev: Some(old_dev(fd.st.dev)),
            ino: Some(fd.st.ino),
            // As st_rdev, in the 32 bits CRIU keeps.
            rdev: node.then_some(fd.st.rdev as u32),
            atim: Some(pb::Timeval {
                tv_sec: meta.atime() as u64,
                tv_usec: (meta.atime_nsec() / 1000) as u64,
            }),
            mtim: Some(pb::Timeval {
                tv_sec: meta.mtime() as u64,
                tv_usec: (meta.mtime_nsec() / 1000) as u64,
            }),
            chunks: chunked.then_some(true),
            size: chunked.then_some(st.size),
            symlnk_target: None,
        };
        let body = if chunked {
            let file = std::fs::File::open(p).map_err(|source| DumpError::GhostRead {
                via: via.clone(),
                source,
            })?;
            GhostBody::Chunks { head: g, file }
        } else {
            let mut data = Vec::new();
            if st.is_reg() {
                // No more than the size recorded: a file another process
                // grows meanwhile must not grow crit's memory (CRIU too).
                if let Err(source) =
                    std::fs::File::open(p).and_then(|f| f.take(st.size).read_to_end(&mut data))
                {
                    return Err(DumpError::GhostRead { via, source }.into());
                }
            }
            let mut b = ImageBuilder::new("GHOST_FILE")?;
            b.entry(&g).raw(&data);
            GhostBody::Built(b)
        };
        self.ghosts.push(Ghost { id: gid, via, body });
        self.remaps.push(pb::RemapFilePathEntry {
            orig_id: id,
            remap_id: gid,
            remap_type: Some(pb::RemapType::Ghost as i32),
        });
        Ok(())
    }

    /// A pipe end; the first time a read end of a pipe is seen its
    /// buffered bytes are copied (without consuming them) into pipes-data.
    /// `frozen` gives crit a copy of the descriptor to read the data through.
    pub fn pipe_fd(
        &mut self,
        frozen: &super::freeze::Frozen,
        pid: i32,
        fd: &Fd,
        id: u32,
        ino: u64,
        fifo: bool,
    ) -> Result<()> {
        // As CRIU: the data is taken through a read end (or a fifo opened
        // for reading), once per pipe; a pipe whose only end in the tree is
        // the write end gets no data entry.
        if let (true, Kind::Fifo { path }) = (fifo, &fd.kind) {
            self.check_path(Via::Fd { pid, fd: fd.fd }, path, &fd.st)?;
        }
        let readable = fd.flags & O_ACCMODE != O_WRONLY;
        if readable && self.pipe_done.insert(ino) {
            let copy = frozen.getfd(pid, fd.fd)?;
            let (data, size) = super::pipes::peek(pid, fd, copy)?;
            let b = if fifo {
                &mut self.fifo_data
            } else {
                &mut self.pipes_data
            };
            if b.is_none() {
                *b = Some(ImageBuilder::new(if fifo {
                    "FIFO_DATA"
                } else {
                    "PIPES_DATA"
                })?);
            }
            if let Some(b) = b.as_mut() {
                b.entry(&pb::PipeDataEntry {
                    pipe_id: ino as u32,
                    bytes: data.len() as u32,
                    size: Some(size),
                })
                .raw(&data);
            }
        }
        if fifo {
            let Kind::Fifo { path } = &fd.kind else {
                return Ok(());
            };
            let regf = self.new_id();
            let reg = reg_entry(regf, path, &fd.st, fd.flags, fd.pos);
            self.push(FD_REG, regf, |e| e.reg = Some(reg));
            self.push(FD_FIFO, id, |e| {
                e.fifo = Some(pb::FifoEntry {
                    id,
                    pipe_id: ino as u32,
                    regf_id: Some(regf),
                })
            });
        } else {
            self.push(FD_PIPE, id, |e| {
                e.pipe = Some(pb::PipeEntry {
                    id,
                    pipe_id: ino as u32,
                    flags: fd.flags,
                    fown: fd.fown,
                })
            });
        }
        Ok(())
    }

    /// A memfd descriptor or a shared memory mapping: one memfd inode
    /// entry per inode; returns the inode id.
    pub fn memfd_inode(&mut self, name: &str, st: &Stat, seals: u32, open_path: &str) -> u32 {
        if let Some(&i) = self.memfd_by_ino.get(&st.ino) {
            return i;
        }
        let inode_id = self.memfd_inodes.len() as u32 + 1;
        self.memfd_inodes.push(pb::MemfdInodeEntry {
            name: name.to_string(),
            uid: st.uid,
            gid: st.gid,
            size: st.size,
            shmid: st.ino as u32,
            seals,
            inode_id: inode_id as u64,
            hugetlb_flag: None,
            mode: Some(st.mode),
        });
        self.memfd_by_ino.insert(st.ino, inode_id);
        self.shmem.push((st.ino, open_path.to_string()));
        inode_id
    }
}

/// A device number in the kernel's internal form (major << 20 | minor),
/// which CRIU stores for ghost files, inotify and epoll targets.
pub fn old_dev(dev: u64) -> u32 {
    let major = nix::sys::stat::major(dev) as u32;
    let minor = nix::sys::stat::minor(dev) as u32;
    (major << 20) | minor
}

pub fn reg_entry(id: u32, path: &str, st: &Stat, flags: u32, pos: u64) -> pb::RegFileEntry {
    pb::RegFileEntry {
        id,
        flags,
        pos,
        fown: fown(),
        name: path.to_string(),
        mnt_id: None,
        size: if st.is_reg() { Some(st.size) } else { None },
        ext: None,
        mode: Some(st.mode),
        build_id: Vec::new(),
        checksum: None,
        checksum_config: None,
        checksum_parameter: None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn old_dev_encoding() {
        // The kitchen fixture's ghost file on 254:0 has dev 266338304.
        let d = nix::sys::stat::makedev(254, 0);
        assert_eq!(super::old_dev(d), 266338304);
    }
}
