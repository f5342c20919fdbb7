use std::io;
use std::path::PathBuf;

/// The object of the tree a file error is about; prints as the start of
/// the error's line.
#[derive(Debug, Clone)]
pub enum On {
    FileId(u32),
    /// A memfd's inode, made once for every file that opens it.
    Memfd {
        name: String,
        inode: u64,
    },
    /// A file of the images that opens a memfd.
    MemfdFile(u32),
    /// A shared anonymous object, by its shmid in the images.
    Shared(u64),
    SysvShm(u64),
    Inet(u32),
    Netlink(u32),
    Pipe(u32),
    Fifo(String),
    Unix(u32),
    Pid(u32),
    PidFile {
        pid: u32,
        id: u32,
    },
    PidMapped {
        pid: u32,
        id: u32,
    },
    PidUnix {
        pid: u32,
        ino: u32,
    },
}

impl std::fmt::Display for On {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            On::FileId(id) => write!(f, "file id {id}"),
            On::Memfd { name, inode } => write!(f, "memfd {name} (inode {inode})"),
            On::MemfdFile(id) => write!(f, "file id {id} (memfd)"),
            On::Shared(shmid) => write!(f, "shared memory {shmid}"),
            On::SysvShm(shmid) => write!(f, "System V shm {shmid}"),
            On::Inet(ino) => write!(f, "inet socket {ino}"),
            On::Netlink(ino) => write!(f, "netlink socket {ino}"),
            On::Pipe(ino) => write!(f, "pipe:[{ino}]"),
            On::Fifo(name) => write!(f, "fifo {name}"),
            On::Unix(ino) => write!(f, "unix socket {ino}"),
            On::Pid(pid) => write!(f, "pid {pid}"),
            On::PidFile { pid, id } => write!(f, "pid {pid}: file id {id}"),
            On::PidMapped { pid, id } => write!(f, "pid {pid}: mapped file id {id}"),
            On::PidUnix { pid, ino } => write!(f, "pid {pid}: unix socket {ino}"),
        }
    }
}

/// A file of the tree (regular, pipe, socket, eventfd, ...) that cannot be
/// opened again as the images describe it.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    // ---- A failed call, by the object it was made for.
    #[error("{on}: {what}: {source}")]
    Io {
        on: On,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{on}: {what}: {source}")]
    Nix {
        on: On,
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("{on}: {source}")]
    IoOn {
        on: On,
        #[source]
        source: io::Error,
    },
    #[error("{on}: {source}")]
    NixOn {
        on: On,
        #[source]
        source: nix::Error,
    },
    /// A call with its argument (a path, an address, a number).
    #[error("{on}: {what} {arg}: {source}")]
    IoArg {
        on: On,
        what: &'static str,
        arg: String,
        #[source]
        source: io::Error,
    },
    #[error("{on}: {what} {arg}: {source}")]
    NixArg {
        on: On,
        what: &'static str,
        arg: String,
        #[source]
        source: nix::Error,
    },
    /// A path the object has (a bound socket file, a regular file).
    #[error("{on}: {}: {source}", path.display())]
    Path {
        on: On,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: file id {id}: seek {name} to {pos}: {source}")]
    Seek {
        pid: u32,
        id: u32,
        name: String,
        pos: u64,
        #[source]
        source: io::Error,
    },
    #[error("{on}: a shared anonymous object of {len} bytes: {source}")]
    SharedObject {
        on: On,
        len: u64,
        #[source]
        source: io::Error,
    },
    #[error("file id {id}: timerfd: {ticks} pending expirations: {source}")]
    TimerTicks {
        id: u32,
        ticks: u64,
        #[source]
        source: io::Error,
    },
    #[error("pipe:[{ino}]: set its size to {size} bytes (F_SETPIPE_SZ): {source}")]
    PipeSize {
        ino: u32,
        size: usize,
        #[source]
        source: io::Error,
    },
    #[error("pipe:[{ino}]: refill {len} bytes: {source}")]
    Refill {
        ino: u32,
        len: usize,
        #[source]
        source: io::Error,
    },
    #[error("--inherit-fd fd[{fd}]: {source}")]
    InheritDup {
        fd: i32,
        #[source]
        source: io::Error,
    },
    #[error("chdir {}: {source}", dir.display())]
    Chdir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },

    // ---- What the images ask that cannot be done.
    #[error("{on}: {why}")]
    Refused { on: On, why: FileFault },
    #[error("{on}: pages-{pages_id}.img is short")]
    PagesShort { on: On, pages_id: u32 },
    #[error("pid {pid}: file id {id}: {name} {changed}")]
    Changed {
        pid: u32,
        id: u32,
        name: String,
        changed: crate::model::file::Changed,
    },
    #[error("remap-fpath.img: file id {id}: remap type {kind} is not supported")]
    RemapType { id: u32, kind: i32 },
    #[error("inet socket {ino}: state {} cannot be restored (only listening, closed, connecting, established and half-closed TCP sockets, and bound or connected UDP ones)", crate::model::tcp::name(*.state))]
    TcpState { ino: u32, state: u32 },
    #[error("TCP socket {ino}: rebuilt in state {}, not {} as dumped (its FINs did not all arrive; a firewall rule dropping packets marked 0xC114?)", crate::model::tcp::name(*.got), crate::model::tcp::name(*.want))]
    TcpRebuilt { ino: u32, want: u32, got: u32 },
    #[error("packet socket (file id {id}): {why}")]
    PacketSocket { id: u32, why: &'static str },
    #[error("netlink socket {ino} (file id {id}): protocol {proto} unsupported")]
    NetlinkProtocol { ino: u32, id: u32, proto: u32 },
    #[error("fifo id {id}: no path in files.img (regular file id {reg})")]
    FifoNoPath { id: u32, reg: u32 },
    #[error("pid {pid} fd {fd}: a terminal: {why}; with --shell-job the job comes back on crit's terminal instead")]
    TtyImage { pid: u32, fd: u32, why: String },
    #[error("pid {pid} fd {fd}: {} (pty {index}): {why}", path.display())]
    Pty {
        pid: u32,
        fd: u32,
        path: std::path::PathBuf,
        index: u32,
        why: String,
    },
    #[error("pid {pid}: mapped file id {id} is not a regular file")]
    MappedNotRegular { pid: u32, id: u32 },
    #[error("--inherit-fd fd[{fd}]:{key}: no such file in the images")]
    InheritUnused { fd: i32, key: String },
    #[error("pid {pid}: fd {fd}: a pidfd of pid {target}, which is no task of the images: crit restore cannot open it")]
    PidfdTarget { pid: u32, fd: u32, target: i32 },
    #[error("pid {pid}: fd {fd}: file id {id} of type {kind} cannot be restored yet")]
    Unsupported {
        pid: u32,
        fd: u32,
        id: u32,
        kind: String,
    },
    #[error("sk-queues.img: queue for file id {id} which is not a unix socket")]
    QueueNotUnix { id: u32 },
    #[error(
        "pid {pid}: no connection from pid {from} reached listener file id {listener} in {wait:?}"
    )]
    NoConnection {
        pid: u32,
        from: u32,
        listener: u32,
        wait: std::time::Duration,
    },
}

/// Why an object cannot be made as the images say.
#[derive(Debug, thiserror::Error)]
pub enum FileFault {
    #[error("pages beyond its size")]
    PagesBeyond,
    #[error("pages at offset {0:#x} are in a parent dump (shared memory is not followed along parent links)")]
    SharedInParent(u64),
    #[error("memfd inode {0} is not in memfd.img")]
    NoMemfdInode(u32),
    #[error("timerfd clock {0} unsupported")]
    TimerClock(u32),
    #[error("family {0} unsupported")]
    Family(u32),
    #[error("{which} address of {got} words, its family has {want}")]
    AddrWords {
        which: &'static str,
        got: usize,
        want: usize,
    },
    #[error("type {0} unsupported")]
    Type(u32),
    #[error("not in the images")]
    NotInImages,
    #[error("fd {fd} is a file under /proc/{owner}/, which crit restores only in task {owner} and its descendants (this task is neither)")]
    ProcOfOther { fd: u32, owner: u32 },
    #[error("not a unix socket")]
    NotUnix,
    #[error("{} is bound by a live socket of another process; free the path (or stop that process) and restore again", .0.display())]
    BoundByLive(PathBuf),
    #[error("listener {0} not made")]
    ListenerNotMade(u32),
    #[error("its sender was not made")]
    SenderNotMade,
    #[error("a queued message passes file id {0} (SCM_RIGHTS), which is not open at that point of the restore (a file only in flight, or a socket made later); not supported")]
    InFlight(u32),
    #[error("queue replay sent {sent} of {len} bytes")]
    ShortReplay { sent: usize, len: usize },
    #[error("unix socket of file id {0}: not made")]
    NotMade(u32),
    #[error("listener file id {0} is not open")]
    ListenerNotOpen(u32),
}
