//! The open descriptors of a task as /proc shows them: link target,
//! stat of the open file, and the fdinfo text (or, for sockets and pipes,
//! what a copy of the descriptor shows); then what kind each is.

use super::context::Probes;
use super::error::DumpError;
use super::procfs;
use super::vmsplice::Made;
use crate::error::Result;
use std::os::unix::fs::MetadataExt;

pub const O_ACCMODE: u32 = 0o3;
pub const O_WRONLY: u32 = 0o1;
pub const O_APPEND: u32 = 0o2000;
pub const O_CLOEXEC: u32 = 0o2000000;
pub const O_PATH: u32 = 0o10000000;

#[derive(Debug, Clone, Copy, Default)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub rdev: u64,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
}

impl Stat {
    pub fn of(m: &std::fs::Metadata) -> Stat {
        Stat {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            rdev: m.rdev(),
            size: m.size(),
            uid: m.uid(),
            gid: m.gid(),
            nlink: m.nlink(),
        }
    }
    /// From stat(2)'s answer.
    pub fn of_stat(m: &nix::sys::stat::FileStat) -> Stat {
        Stat {
            dev: m.st_dev,
            ino: m.st_ino,
            mode: m.st_mode,
            rdev: m.st_rdev,
            size: m.st_size as u64,
            uid: m.st_uid,
            gid: m.st_gid,
            nlink: m.st_nlink,
        }
    }
    pub fn ftype(&self) -> u32 {
        self.mode & 0o170000
    }
    pub fn is_reg(&self) -> bool {
        self.ftype() == 0o100000
    }
    pub fn is_dir(&self) -> bool {
        self.ftype() == 0o040000
    }
    pub fn is_fifo(&self) -> bool {
        self.ftype() == 0o010000
    }
    pub fn is_chr(&self) -> bool {
        self.ftype() == 0o020000
    }
}

/// What an open descriptor refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A path in the filesystem (file, directory, device), maybe deleted.
    Path {
        path: String,
        deleted: bool,
    },
    Fifo {
        path: String,
    },
    Pipe(u64),
    Socket(u64),
    Eventfd,
    Eventpoll,
    Timerfd,
    Signalfd,
    Inotify,
    Fanotify,
    /// A pidfd (pidfd_open, clone's CLONE_PIDFD).
    Pidfd,
    Memfd {
        name: String,
    },
    Tty {
        path: String,
    },
    Other(String),
}

#[derive(Debug, Clone)]
pub struct Fd {
    pub fd: i32,
    pub link: String,
    pub st: Stat,
    /// File status flags without O_CLOEXEC.
    pub flags: u32,
    pub cloexec: bool,
    pub pos: u64,
    pub mnt_id: i32,
    pub info: String,
    pub kind: Kind,
    /// The file's owner (F_SETOWN/F_SETSIG), filled when it is dumped.
    pub fown: crate::image::pb::FownEntry,
    /// Read through a copy (see [`scan_listed`]): the file's device.
    /// Then there is no fdinfo text, so its file locks are looked for in
    /// /proc/locks by device and inode ([`super::locks::settle`]).
    pub copied_dev: Option<u64>,
    /// crit's copy of the descriptor (pidfd_getfd), filled when it is
    /// dumped and a lease is on it: its file is read through the copy,
    /// since a new open would break the lease.
    pub copy: Option<std::sync::Arc<std::fs::File>>,
}

fn parse_num<T: std::str::FromStr>(s: Option<&str>) -> Option<T> {
    s.and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Is (major, minor) a terminal device CRIU would treat as a tty?
pub fn is_tty(rdev: u64) -> bool {
    let major = nix::sys::stat::major(rdev);
    let minor = nix::sys::stat::minor(rdev);
    matches!(major, 136..=143)
        || major == 4
        || (major == 5 && (minor == 0 || minor == 2))
        || major == 3
}

pub fn classify(link: &str, st: &Stat, shmem_dev: u64) -> Kind {
    let inner = |p: &str| -> Option<u64> { link.strip_prefix(p)?.strip_suffix(']')?.parse().ok() };
    if let Some(n) = inner("pipe:[") {
        return Kind::Pipe(n);
    }
    if let Some(n) = inner("socket:[") {
        return Kind::Socket(n);
    }
    match link {
        "anon_inode:[eventfd]" => return Kind::Eventfd,
        "anon_inode:[eventpoll]" => return Kind::Eventpoll,
        "anon_inode:[timerfd]" => return Kind::Timerfd,
        "anon_inode:[signalfd]" => return Kind::Signalfd,
        "anon_inode:inotify" => return Kind::Inotify,
        "anon_inode:[fanotify]" => return Kind::Fanotify,
        "anon_inode:[pidfd]" => return Kind::Pidfd,
        _ => {}
    }
    // Linux 6.9 on: pidfds are files of pidfs.
    if link.starts_with("pidfd:") {
        return Kind::Pidfd;
    }
    if let Some(rest) = link.strip_prefix("/memfd:") {
        if st.dev == shmem_dev {
            let name = rest.strip_suffix(" (deleted)").unwrap_or(rest);
            return Kind::Memfd {
                name: name.to_string(),
            };
        }
    }
    if link.starts_with('/') {
        let (path, deleted) = match link.strip_suffix(" (deleted)") {
            Some(p) if st.nlink == 0 || !std::path::Path::new(link).exists() => {
                (p.to_string(), true)
            }
            _ => (link.to_string(), false),
        };
        // A deleted fifo is a deleted file that is not a regular one,
        // which the dump refuses (its path no longer opens it).
        if st.is_fifo() && !deleted {
            return Kind::Fifo { path };
        }
        if st.is_chr() && is_tty(st.rdev) {
            return Kind::Tty { path };
        }
        return Kind::Path { path, deleted };
    }
    Kind::Other(link.to_string())
}

/// The descriptor numbers of `pid`, in order.
pub fn list(pid: i32) -> Result<Vec<i32>> {
    let dir = procfs::path(pid, "fd");
    let rd = std::fs::read_dir(&dir).map_err(|source| DumpError::Proc {
        pid,
        path: dir.clone(),
        source,
    })?;
    let mut fds: Vec<i32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    fds.sort();
    Ok(fds)
}

/// [`list`] while crit may be injecting into the (frozen) task: what
/// `made` tells was crit's is left out, once any run in progress is over
/// (it notes its descriptors before it ends). Fails where a run could not
/// tell what it made (the task is then left with descriptors of crit's).
pub fn list_beside(pid: i32, made: &Made) -> Result<Vec<i32>> {
    let fds = list(pid)?;
    let Some(m) = made.settled() else {
        return Err(DumpError::FdsUnsure { pid }.into());
    };
    Ok(fds.into_iter().filter(|fd| !m.contains(fd)).collect())
}

/// The device of pipes, from a pipe of crit's own.
pub fn pipefs_dev() -> Result<u64> {
    let err = |e: nix::errno::Errno| DumpError::Call {
        what: "probing the pipe device",
        source: e.into(),
    };
    let (r, _w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(err)?;
    Ok(nix::sys::stat::fstat(&r).map_err(err)?.st_dev)
}

/// The device of sockets, from a socket of crit's own.
pub fn sockfs_dev() -> Result<u64> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let err = |e: nix::errno::Errno| DumpError::Call {
        what: "probing the socket device",
        source: e.into(),
    };
    let s = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(err)?;
    Ok(nix::sys::stat::fstat(&s).map_err(err)?.st_dev)
}

/// The descriptors `fds` of `pid` (from [`list`]), in that order.
///
/// Sockets and pipes, often most of a task's descriptors, are told apart
/// through a copy of the descriptor (pidfd_getfd, fstat, F_GETFL: about
/// 2 us) instead of their fdinfo text (open, read, close of a /proc file:
/// about 6 us). Their close-on-exec flag is the task's, not the copy's:
/// it comes later, from [`settle`]. Every other descriptor, and any
/// that cannot be copied, is read from its fdinfo.
/// `is_socket(ino)` says whether an inode is a known socket (sock_diag):
/// once one socket's mount id is confirmed by its link, descriptors on
/// that mount whose inode is a known socket skip the readlink.
pub fn scan_listed(
    pid: i32,
    fds: &[i32],
    probes: &Probes,
    is_socket: &mut dyn FnMut(u64) -> bool,
) -> Result<Vec<Fd>> {
    let mut by_info = Fdinfo::open(pid, probes.shmem_dev)?;
    let pidfd = crate::sys::pidfd::pidfd_open(pid).ok();
    let mut out = Vec::with_capacity(fds.len());
    for &fd in fds {
        let copied = pidfd.as_ref().and_then(|p| by_copy(p, fd, probes));
        out.push(match copied {
            Some(f) => f,
            None => by_info.read(fd, is_socket)?,
        });
    }
    Ok(out)
}

/// Gives the descriptors of `pid` read through a copy their
/// close-on-exec flag: from `cloexec` (fd -> flag, asked of the task
/// itself with F_GETFD), or, where that has none, by reading the
/// descriptor again from its fdinfo.
pub fn settle(
    pid: i32,
    fds: &mut [Fd],
    cloexec: Option<&std::collections::HashMap<i32, bool>>,
    shmem_dev: u64,
) -> Result<()> {
    let mut by_info: Option<Fdinfo> = None;
    for f in fds.iter_mut().filter(|f| f.copied_dev.is_some()) {
        match cloexec.and_then(|m| m.get(&f.fd)) {
            Some(&c) => f.cloexec = c,
            None => {
                let r = match by_info.as_mut() {
                    Some(r) => r,
                    None => by_info.insert(Fdinfo::open(pid, shmem_dev)?),
                };
                *f = r.read(f.fd, &mut |_| false)?;
            }
        }
    }
    Ok(())
}

/// A socket or a pipe, read through a copy of descriptor `fd` taken with
/// `pidfd`; None for anything else, or when it cannot be copied. Only
/// sockfs and pipefs count: a socket file or a FIFO in a filesystem
/// (opened O_PATH, or a named pipe) has a path, which fdinfo gives.
fn by_copy(pidfd: &std::os::fd::OwnedFd, fd: i32, probes: &Probes) -> Option<Fd> {
    use nix::fcntl::{fcntl, FcntlArg};
    let copy = crate::sys::pidfd::pidfd_getfd(pidfd, fd).ok()?;
    let st = Stat::of_stat(&nix::sys::stat::fstat(&copy).ok()?);
    let (kind, link, shown) = match st.ftype() {
        // As the fdinfo path has it: the inode alone (see there).
        0o140000 if st.dev == probes.sockfs_dev => (
            Kind::Socket(st.ino),
            format!("socket:[{}]", st.ino),
            Stat {
                ino: st.ino,
                mode: 0o140777,
                nlink: 1,
                ..Default::default()
            },
        ),
        0o010000 if st.dev == probes.pipefs_dev => {
            (Kind::Pipe(st.ino), format!("pipe:[{}]", st.ino), st)
        }
        _ => return None,
    };
    // The file's status flags (fdinfo shows the same f_flags).
    let flags = fcntl(&copy, FcntlArg::F_GETFL).ok()? as u32;
    Some(Fd {
        fd,
        link,
        st: shown,
        flags: flags & !O_CLOEXEC,
        cloexec: false,
        // Sockets and pipes do not seek; their mount is not dumped.
        pos: 0,
        mnt_id: -1,
        info: String::new(),
        kind,
        fown: Default::default(),
        copied_dev: Some(st.dev),
        copy: None,
    })
}

/// Reads descriptors of one task from /proc/PID/fdinfo and fd.
struct Fdinfo {
    pid: i32,
    shmem_dev: u64,
    /// fdinfo files are opened relative to the fdinfo directory: one path
    /// component to look up per descriptor instead of four.
    info_dir: std::fs::File,
    /// The links too: readlinkat and fstatat look up one component each.
    fd_dir: std::fs::File,
    sockfs_mnt: Option<i32>,
    /// pipefs's mount id and the stat of the first pipe seen on it.
    pipefs_mnt: Option<(i32, Stat)>,
    buf: Vec<u8>,
}

impl Fdinfo {
    fn open(pid: i32, shmem_dev: u64) -> Result<Fdinfo> {
        let open = |what: &str| {
            let path = procfs::path(pid, what);
            std::fs::File::open(&path).map_err(|source| DumpError::Proc { pid, path, source })
        };
        Ok(Fdinfo {
            pid,
            shmem_dev,
            info_dir: open("fdinfo")?,
            fd_dir: open("fd")?,
            sockfs_mnt: None,
            pipefs_mnt: None,
            buf: vec![0u8; 4096],
        })
    }

    fn read(&mut self, fd: i32, is_socket: &mut dyn FnMut(u64) -> bool) -> Result<Fd> {
        let pid = self.pid;
        let name = fd.to_string();
        let info =
            read_fdinfo(&self.info_dir, fd, &mut self.buf).map_err(|source| DumpError::Proc {
                pid,
                path: procfs::path(pid, "fdinfo").join(&name),
                source,
            })?;
        let mnt_id = parse_num::<i32>(procfs::fdinfo_field(&info, "mnt_id")).unwrap_or(-1);
        let fino = parse_num::<u64>(procfs::fdinfo_field(&info, "ino"));
        let fd_dir = &self.fd_dir;
        let stat = || {
            nix::sys::stat::fstatat(fd_dir, name.as_str(), nix::fcntl::AtFlags::empty())
                .map(|m| Stat::of_stat(&m))
        };
        // A pipe (on pipefs, whose mount a first pipe showed) is named by
        // its inode: no readlink, and no stat either, since every pipe's
        // stat but the inode is the first one's (pipefs holds only pipes,
        // and their owner and mode are not dumped).
        let pipe_st = match (self.pipefs_mnt, fino) {
            (Some((mnt, first)), Some(ino)) if mnt == mnt_id => Some(Stat { ino, ..first }),
            _ => None,
        };
        let link = match (fino, pipe_st) {
            (_, Some(s)) => format!("pipe:[{}]", s.ino),
            (Some(ino), _) if self.sockfs_mnt == Some(mnt_id) && is_socket(ino) => {
                format!("socket:[{ino}]")
            }
            _ => match nix::fcntl::readlinkat(fd_dir, name.as_str()) {
                Ok(l) => l.to_string_lossy().into_owned(),
                Err(e) => {
                    return Err(DumpError::Fd {
                        pid,
                        fd,
                        what: "readlink",
                        source: e.into(),
                    }
                    .into())
                }
            },
        };
        if self.sockfs_mnt.is_none() && link.starts_with("socket:[") {
            self.sockfs_mnt = Some(mnt_id);
        }
        // Sockets need no stat: the inode is in the link, and their
        // state comes from sock_diag and the socket itself.
        let sock_ino = link
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok());
        let st = match sock_ino {
            Some(ino) => Stat {
                ino,
                mode: 0o140777,
                nlink: 1,
                ..Default::default()
            },
            None => match pipe_st {
                Some(s) => Ok(s),
                None => stat(),
            }
            .map_err(|e| DumpError::FdFile {
                pid,
                fd,
                link: link.clone(),
                what: "stat",
                source: e.into(),
            })?,
        };
        if self.pipefs_mnt.is_none() && link.starts_with("pipe:[") && st.is_fifo() {
            self.pipefs_mnt = Some((mnt_id, st));
        }
        let raw_flags = procfs::fdinfo_field(&info, "flags")
            .and_then(|v| u32::from_str_radix(v, 8).ok())
            .ok_or(DumpError::FdinfoNoFlags { pid, fd })?;
        let pos = parse_num::<u64>(procfs::fdinfo_field(&info, "pos")).unwrap_or(0);
        let kind = classify(&link, &st, self.shmem_dev);
        Ok(Fd {
            fd,
            link,
            st,
            flags: raw_flags & !O_CLOEXEC,
            cloexec: raw_flags & O_CLOEXEC != 0,
            pos,
            mnt_id,
            info,
            kind,
            fown: Default::default(),
            copied_dev: None,
            copy: None,
        })
    }
}

/// The text of fdinfo file `fd` in the open fdinfo directory `dir`: one
/// read when it fits in `buf` (the common case).
fn read_fdinfo(dir: &std::fs::File, fd: i32, buf: &mut Vec<u8>) -> std::io::Result<String> {
    use nix::fcntl::{openat, OFlag};
    let f = openat(
        dir,
        fd.to_string().as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let mut got = 0;
    loop {
        if got == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = nix::unistd::read(&f, &mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
        // A seq_file shows a small file whole in the first read.
        if got < 4096 {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf[..got]).into_owned())
}
