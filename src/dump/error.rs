//! What can go wrong in `crit dump`, with the pid, fd, inode or file as
//! fields and the cause as `source()`.
//!
//! Each variant prints as the one line `crit dump` has always printed for
//! it (scripts and tests match on that text). Variants come in three
//! kinds: a failed call, named by where it was made (`Fd`, `Thread`,
//! `Proc`, ...) with the call as a fixed `what`; a /proc or fdinfo text
//! that does not parse; and refusals of what the dump does not support,
//! one variant each.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A failed or refused dump.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    // ---- Options and the images directory.
    /// A value of `--ext-unix-sk` that is not an inode number.
    #[error("--ext-unix-sk: {value:?} is not a socket inode number")]
    ExtUnixSkArg { value: String },
    /// A value of `--external` of no known form.
    #[error("--external {value}: expected unix[INO], net[INO]:KEY or mnt[MOUNTPOINT]:KEY")]
    ExternalArg { value: String },
    #[error("pid {pid}: cannot dump init or an invalid pid")]
    InitOrInvalid { pid: i32 },
    #[error("pid {pid}: no such process")]
    NoSuchProcess { pid: i32 },
    #[error("pid {pid}: is a kernel thread; only user processes can be dumped")]
    KernelThread { pid: i32 },
    /// An existing images directory others may write to.
    #[error(
        "{}: group or others may write to it (mode {mode:o}): they could change the images before a restore; give a private directory (chmod go-w)",
        dir.display()
    )]
    DirNotPrivate { dir: PathBuf, mode: u32 },
    #[error("pid {pid}: is crit itself or one of its ancestors")]
    SelfOrAncestor { pid: i32 },
    /// Another dump (or a restore) holds the images directory.
    #[error("{}: another crit command is using this images directory (a dump into it, or a restore of it)", dir.display())]
    DirBusy { dir: PathBuf },
    /// The images directory is not empty; `found` is one image in it.
    #[error("{}: already holds images ({found}); give an empty directory", dir.display())]
    DirNotEmpty { dir: PathBuf, found: String },
    #[error("{}: not a previous dump (no inventory.img)", dir.display())]
    NotPrevImages { dir: PathBuf },
    #[error("{}: no memory tracking is kept for these images (crit pre-dump into them first; tracking ends when the tree exits or its keeper is killed)", dir.display())]
    NoTracking { dir: PathBuf },
    #[error("{}: its memory tracking is of another tree, not of pid {pid} (left as it was)", dir.display())]
    OtherTree { dir: PathBuf, pid: i32 },
    #[error("write tracking is not available here: {source} (crit needs userfaultfd with async write-protection, Linux 6.7 or later; soft-dirty is not used)")]
    NoTrackingSupport { source: std::io::Error },
    #[error("pid {pid}: tracking its writes: {source}")]
    TrackTask { pid: i32, source: std::io::Error },
    #[error("{}: page {addr:#x} is left to a parent dump that does not hold it", image.display())]
    FlattenHole { image: PathBuf, addr: u64 },
    /// The `crit dump` or `crit pre-dump` process that started this
    /// worker is gone.
    #[error("{command} (pid {parent}) was killed; stopping and resuming the tree")]
    Cancelled {
        /// "crit dump" or "crit pre-dump".
        command: &'static str,
        parent: i32,
    },
    /// `crit dump` or `crit pre-dump` got SIGINT, SIGTERM, SIGHUP or
    /// SIGQUIT and passed it on to this worker.
    #[error("{command} was interrupted by {signal}; stopped, letting the tree go")]
    Interrupted {
        command: &'static str,
        signal: String,
    },

    // ---- A failed call, by where it was made.
    /// A call of crit's own, on no task (sock_diag, a probe, a clock).
    #[error("{what}: {source}")]
    Call {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// A file crit reads or writes (an image, the log, a /proc link).
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A step on a file crit reads or writes.
    #[error("{}: {what}: {source}", path.display())]
    FileOp {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// A /proc file or link of a task.
    #[error("pid {pid}: {}: {source}", path.display())]
    Proc {
        pid: i32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A call on a task (pidfd, memory, injection).
    #[error("pid {pid}: {what}: {source}")]
    Task {
        pid: i32,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// Listing the threads of a task.
    #[error("pid {pid}: {source}")]
    Threads {
        pid: i32,
        #[source]
        source: io::Error,
    },
    /// Comparing a kernel object of two tasks.
    #[error("pid {pid}: kcmp with pid {other}: {source}")]
    Kcmp {
        pid: i32,
        other: i32,
        #[source]
        source: io::Error,
    },
    /// A call on a stopped thread (ptrace).
    #[error("thread {tid}: {what}: {source}")]
    Thread {
        tid: i32,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// Reading one GDT TLS entry of a thread.
    #[error("thread {tid}: PTRACE_GET_THREAD_AREA {entry}: {source}")]
    ThreadArea {
        tid: i32,
        entry: u32,
        #[source]
        source: io::Error,
    },
    /// A call on a thread of a task (robust list, seccomp, injection).
    #[error("pid {pid} thread {tid}: {what}: {source}")]
    TaskThread {
        pid: i32,
        tid: i32,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// A call on a descriptor of a task (or on crit's copy of it).
    #[error("pid {pid} fd {fd}: {what}: {source}")]
    Fd {
        pid: i32,
        fd: i32,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// A call on the file behind a descriptor, named by its link.
    #[error("pid {pid} fd {fd} ({link}): {what}: {source}")]
    FdFile {
        pid: i32,
        fd: i32,
        link: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// A descriptor crit received in a peeked message.
    #[error("/proc/self/fd/{fd}: {source}")]
    OwnFd {
        fd: i32,
        #[source]
        source: io::Error,
    },
    /// A call on a unix listener of the tree (taking its pending
    /// connections).
    #[error("pid {pid} fd {fd}: unix listener {ino}: {what}: {source}")]
    Listener {
        pid: i32,
        fd: i32,
        ino: u32,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// Reading the data of a pending connection taken from a listener.
    #[error("unix socket {ino}: read its pending connection's data: {source}")]
    PendingRead {
        ino: u32,
        #[source]
        source: io::Error,
    },

    // ---- Freezing and letting go.
    #[error("freeze pid {pid}: no such process")]
    FreezeNoProcess { pid: i32 },
    #[error("freeze pid {pid}: it is a thread of process {tgid}, not a process")]
    FreezeThread { pid: i32, tgid: i32 },
    #[error("freeze pid {pid}: reading /proc/{pid}/status: {source}")]
    FreezeStatus {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("freeze pid {pid}: listing /proc/{pid}/task: {source}")]
    FreezeListThreads {
        pid: i32,
        #[source]
        source: io::Error,
    },
    /// A root of the freeze exited meanwhile; `seizing` is the error of
    /// seizing its leader when that is what showed it.
    #[error("freeze pid {pid}: exited during the freeze{}", SeizingLeader(.seizing.as_ref()))]
    FreezeExited {
        pid: i32,
        #[source]
        seizing: Option<io::Error>,
    },
    /// A task of the frozen tree died (SIGKILL reaches a traced task)
    /// and the dump failed on what it left: `then` is that failure.
    #[error("pid {pid} died during the dump (killed); the dump stopped on it: {then}")]
    DiedDuring { pid: i32, then: String },
    /// A thread could not be seized; `tracer` is who traces it already.
    #[error("freeze pid {pid}: {source}{}", TracedBy(*.tracer))]
    Seize {
        pid: i32,
        tracer: Option<i32>,
        #[source]
        source: io::Error,
    },
    /// Interrupting or waiting for a thread of `pid`.
    #[error("freeze pid {pid}: {source}")]
    Freeze {
        pid: i32,
        #[source]
        source: io::Error,
    },
    /// `state` is the thread's /proc state letter ('?' if unknown).
    #[error("freeze pid {pid}: tid {tid} did not stop within {timeout:?} (state {state})")]
    StopTimeout {
        pid: i32,
        tid: i32,
        timeout: Duration,
        state: char,
    },
    #[error(
        "freeze pid {pid}: tid {tid} waits in vfork for its child {child} to exec or exit, and cannot be stopped there; dump again once it has"
    )]
    InVfork { pid: i32, tid: i32, child: i32 },
    #[error(
        "freeze pid {pid}: its thread-group leader has exited while {others} other threads run; not supported"
    )]
    LeaderExited { pid: i32, others: usize },
    #[error("unfreeze pid {pid}: {source}")]
    Unfreeze {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error(
        "unfreeze pid {pid}: tid {tid} never stopped; it stays traced until this thread exits"
    )]
    NeverStopped { pid: i32, tid: i32 },
    #[error("kill pid {pid}: {source}")]
    Kill {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("kill pid {pid}: tid {tid} did not exit within 10 s")]
    KillTimeout { pid: i32, tid: i32 },

    // ---- The tree.
    #[error(
        "pid {pid}: the root of the tree is a zombie (exited, not reaped); there is nothing to dump"
    )]
    ZombieRoot { pid: i32 },
    #[error("pid {pid}: its session {sid} is led by a task outside the dumped tree")]
    SessionOutside { pid: i32, sid: i32 },
    #[error("pid {pid}: its process group {pgid} is led by a task outside the dumped tree")]
    GroupOutside { pid: i32, pgid: i32 },
    /// A lock of /proc/locks: its kind (POSIX, FLOCK, ...) and inode
    /// (dev:ino) as that file shows them.
    #[error(
        "pid {pid}{}: holds a {kind} file lock on inode {inode}; dump with --file-locks to dump it (and restore with --file-locks)",
        fd.map(|f| format!(" fd {f}")).unwrap_or_default()
    )]
    HeldLock {
        pid: i32,
        /// The fd of the locked file, when the task holds it open.
        fd: Option<i32>,
        kind: String,
        inode: String,
    },
    /// With --file-locks: a lock /proc/locks gives to a task of the tree
    /// that no descriptor of the tree shows.
    #[error(
        "pid {pid}: holds a {kind} file lock on inode {inode} ({lock}) through no descriptor of the tree (a mapping or a message in flight keeps the file open); it cannot be dumped"
    )]
    LockNoFd {
        pid: i32,
        kind: String,
        inode: String,
        lock: String,
    },
    /// With --file-locks: a lock of a kind crit does not dump that
    /// /proc/locks gives to a task of the tree and its descriptors did
    /// not show (a lease whose break began while the tree was frozen).
    #[error(
        "pid {pid}{}: holds {what} on inode {inode} ({lock}), which crit does not dump",
        fd.map(|f| format!(" fd {f}")).unwrap_or_default()
    )]
    HeldLockKind {
        pid: i32,
        fd: Option<i32>,
        what: String,
        inode: String,
        lock: String,
    },
    /// A task whose `ns` namespace is not its tree root's.
    #[error(
        "pid {pid}: lives in another {ns} namespace than the tree's root (pid {root}); a tree must share each namespace with its root"
    )]
    NsDiffers {
        pid: i32,
        ns: crate::model::ns::Kind,
        root: i32,
    },
    #[error(
        "pid {pid}: lives in a {ns} namespace of its own; dumping {ns} namespaces is not supported"
    )]
    NsUnsupported {
        pid: i32,
        ns: crate::model::ns::Kind,
    },
    #[error("pid {pid}: lives in a user namespace of its own; user namespaces are not supported")]
    UserNs { pid: i32 },
    #[error(
        "pid {pid}: is {levels} pid namespaces below crit; nested pid namespaces are not supported"
    )]
    NestedPidNs { pid: i32, levels: usize },
    #[error("pid {pid}: is pid {vpid} of its pid namespace, not its init (pid 1); dump the tree from the namespace's init")]
    PidNsRootNotInit { pid: i32, vpid: i32 },
    #[error("pid {pid}: mountinfo has no root mount")]
    NoRootMount { pid: i32 },
    #[error(
        "pid {pid}: fd {fd}: {path} is on mount {mnt_id}, outside the tree's mount namespace, and the tree has no such path: a restore could not open it"
    )]
    OutsideMounts {
        pid: i32,
        fd: i32,
        path: String,
        mnt_id: i32,
    },
    #[error(
        "pid {pid}: mount {mountpoint} ({fstype} {device}) cannot be made again at restore: it is no virtual file system, tmpfs or bind of another mount of the tree; mark it with --external mnt[{mountpoint}]:KEY"
    )]
    UnsupportedMount {
        pid: i32,
        mountpoint: String,
        fstype: String,
        /// The mount's source (device).
        device: String,
    },
    #[error("pid {pid}: tmpfs at {mountpoint}: reading its contents: {source}")]
    Tmpfs {
        pid: i32,
        mountpoint: String,
        #[source]
        source: io::Error,
    },
    #[error("/proc/sys/{name}: not a number: {value:?}")]
    SysctlValue { name: String, value: String },
    /// A network device of the tree's own network namespace crit cannot
    /// make again.
    #[error(
        "pid {pid}: network namespace has device {name} ({kind}); only loopback is dumped: restore the namespace empty (--empty-ns net) or hand it in (--external net[INO]:KEY)"
    )]
    NetDevice {
        pid: i32,
        name: String,
        kind: String,
    },
    /// Entering or reading one of the tree's namespaces failed.
    #[error("pid {pid}: {ns} namespace: {what}: {source}")]
    NsCall {
        pid: i32,
        ns: crate::model::ns::Kind,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// `--external net[INO]:KEY` names another namespace than the tree's.
    #[error("--external net[{ino}]: the tree's network namespace is net:[{actual}]")]
    NetNsMismatch { ino: u64, actual: u64 },
    #[error("--empty-ns {value}: only net can be left empty")]
    EmptyNsArg { value: String },

    // ---- /proc text that does not parse.
    /// /proc/PID/`file` (stat, status, limits, timers, ...) is not as
    /// expected.
    #[error("pid {pid}: /proc/{pid}/{file}: {fault}")]
    ProcParse {
        pid: i32,
        file: &'static str,
        fault: ProcFault,
    },
    #[error("pid {pid}: /proc/{pid}/status has no Umask")]
    NoUmask { pid: i32 },
    #[error("pid {pid}: smaps: VmFlags before a range")]
    SmapsOrder { pid: i32 },
    #[error("pid {pid}: smaps: cannot parse {line:?}")]
    SmapsLine { pid: i32, line: String },
    #[error("pid {pid} fd {fd}: fdinfo has no flags")]
    FdinfoNoFlags { pid: i32, fd: i32 },
    #[error("pid {pid} fd {fd}: fdinfo has no {key:?}")]
    FdinfoMissing {
        pid: i32,
        fd: i32,
        key: &'static str,
    },
    #[error("pid {pid} fd {fd}: bad fdinfo value {value:?}")]
    FdinfoValue { pid: i32, fd: i32, value: String },
    /// A line of an epoll's or inotify's fdinfo (`kind`).
    #[error("pid {pid} fd {fd}: {kind} fdinfo line {line:?}")]
    FdinfoLine {
        pid: i32,
        fd: i32,
        kind: &'static str,
        line: String,
    },
    /// An epoll target whose descriptor number no longer holds the
    /// watched file, and no other descriptor of the task does.
    #[error("pid {pid} fd {fd}: epoll target fd {tfd} (inode {ino}) was closed and no descriptor of the task holds its file; an epoll watching a file only it holds is not supported")]
    EpollTargetGone {
        pid: i32,
        fd: i32,
        tfd: u32,
        ino: u64,
    },
    /// A timerfd's `it_value` or `it_interval` that is not a pair.
    #[error("pid {pid} fd {fd}: timerfd {key} {value:?}")]
    TimerfdValue {
        pid: i32,
        fd: i32,
        key: &'static str,
        value: String,
    },

    // ---- Memory.
    /// A mapping crit does not dump; `what` says what it is.
    #[error("pid {pid}: mapping {start:#x}-{end:#x} ({name}) is {what}, which cannot be dumped")]
    MappingKind {
        pid: i32,
        start: u64,
        end: u64,
        name: String,
        what: &'static str,
    },
    #[error(
        "pid {pid}: mapping {start:#x}-{end:#x} of {name} is not a regular file; it cannot be dumped"
    )]
    MappingNotRegular {
        pid: i32,
        start: u64,
        end: u64,
        name: String,
    },
    #[error(
        "pid {pid}: mapping {start:#x}-{end:#x} is a private or partial attachment of System V shared memory, which is not supported"
    )]
    SysvShm { pid: i32, start: u64, end: u64 },
    #[error("pid {pid}: the task has a uprobes mapping at {start:#x}, which is not supported")]
    Uprobes { pid: i32, start: u64 },
    #[error("pid {pid}: mapping {start:#x}-{end:#x} of {name} has no /proc map_files link")]
    NoMapFilesLink {
        pid: i32,
        start: u64,
        end: u64,
        name: String,
    },
    #[error("pid {pid}: /proc/{pid}/pagemap at {addr:#x}: {source}")]
    Pagemap {
        pid: i32,
        addr: u64,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: /proc/{pid}/pagemap: short read at {addr:#x}")]
    PagemapShort { pid: i32, addr: u64 },
    /// process_vm_readv copied `got` of `want` bytes from `at` on.
    #[error(
        "pid {pid}: read {got} of {want} bytes of memory from {at:#x} on; a mapping changed under the dump"
    )]
    ShortMemRead {
        pid: i32,
        got: usize,
        want: usize,
        at: u64,
    },
    #[error("pid {pid}: page copy cancelled")]
    CopyCancelled { pid: i32 },
    #[error(
        "the page server holds no parent images of {pagemap}: give it --prev-images-dir \
         (as the dump's)"
    )]
    NoParentOnPageServer { pagemap: String },
    #[error("the page server session is already closed")]
    PageServerClosed,
    #[error("{what} is not supported")]
    Unsupported { what: &'static str },
    #[error("--lazy-pages: listen on {addr} port {port}: {source}")]
    LazyListen {
        addr: String,
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("--lazy-pages: the lazy-pages daemon at {peer} left before it had every page (no CLOSE); the tree is resumed")]
    LazyUnfinished { peer: String },
    #[error("pid {pid}: memory reader panicked")]
    MemoryReaderPanicked { pid: i32 },
    /// smaps showed other pages to dump than maps did, after those maps
    /// showed were queued: the address space changed while frozen.
    #[error(
        "pid {pid}: the mappings changed while the task was frozen (smaps disagrees with maps)"
    )]
    PagesChanged { pid: i32 },
    #[error("pid {pid}: descriptor scanner panicked")]
    FdScanPanicked { pid: i32 },
    /// A run of injected calls failed before crit knew which descriptors
    /// it had made in the task, so a listing cannot be told from them.
    #[error("pid {pid}: descriptors made by the injection are unknown; its descriptors cannot be listed")]
    FdsUnsure { pid: i32 },
    #[error("a page writer thread panicked")]
    WriterPanicked,
    #[error("page writer still holds a pages file")]
    WriterHoldsFile { pid: i32 },
    /// The shared memory file `ino` shrank while its pages were written.
    #[error("shmem contents changed")]
    ShmemChanged { ino: u64 },

    // ---- Threads.
    #[error("thread {tid}: runs in 32-bit mode; not supported")]
    Compat32 { tid: i32 },
    #[error(
        "pid {pid}: memory-deny-write-execute is set (prctl PR_SET_MDWE), which CRIU's images \
         cannot record (a restore would lose it); not dumped"
    )]
    Mdwe { pid: i32 },

    // ---- Files.
    /// `lock` is the fdinfo "lock:" line's text.
    #[error(
        "pid {pid} fd {fd}: {link} carries a file lock ({lock}); dump with --file-locks to dump it (and restore with --file-locks)"
    )]
    FdLocked {
        pid: i32,
        fd: i32,
        link: String,
        lock: String,
    },
    /// A lock of a kind crit does not dump (`what`: "a lease ...").
    #[error("pid {pid} fd {fd}: {link} carries {what} ({lock}), which crit does not dump")]
    LockKind {
        pid: i32,
        fd: i32,
        link: String,
        what: String,
        lock: String,
    },
    #[error("pid {pid} fd {fd}: its fdinfo shows a lock line crit cannot read: {line:?}")]
    LockLine { pid: i32, fd: i32, line: String },
    #[error(
        "pid {pid} fd {fd}: is the terminal {path}; dump with --shell-job if the tree is a job of this shell, or with --orphan-pts-master if it is a pty whose master its manager holds (a container's console)"
    )]
    Terminal { pid: i32, fd: i32, path: String },
    #[error("pid {pid}: its cgroup namespace: {why}")]
    CgroupNs { pid: i32, why: String },
    #[error("--freeze-cgroup {}: pid {pid} is not in it", path.display())]
    NotInFreezeCgroup { pid: i32, path: PathBuf },
    #[error("pid {pid}: pty {index}, both of whose ends the tree holds, is the controlling terminal of session {sid}, whose leader is not in the tree; dump the tree of that leader")]
    PtySession { pid: i32, sid: i32, index: u32 },
    #[error("pid {pid}: leads the session whose controlling terminal is pty {index} but holds no descriptor of it (a hung-up terminal); not supported by crit restore")]
    PtyLeaderNoFd { pid: i32, index: u32 },
    #[error("pid {pid} fd {fd}: pty {index} besides pty {other}: one pty whose master is outside the tree at most (restore hands one master over)")]
    TwoPtys {
        pid: i32,
        fd: i32,
        index: u32,
        other: u32,
    },
    #[error("pid {pid} fd {fd}: reading the terminal's state: {source}")]
    TtyState {
        pid: i32,
        fd: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("pid {pid}: pty {index} is the controlling terminal of session {sid}, whose leader is not in the tree; dump with --shell-job")]
    TtySession { pid: i32, sid: i32, index: u32 },
    /// A kind of file crit does not dump; `link` is what /proc shows
    /// ("anon_inode:[pidfd]", ...).
    #[error("pid {pid} fd {fd}: {link} is not supported by crit dump")]
    FdKind { pid: i32, fd: i32, link: String },
    #[error("pid {pid} fd {fd}: a pidfd {why}: crit restore could not open it again")]
    Pidfd { pid: i32, fd: i32, why: String },
    #[error("{via}: {path} is not that file's path any more (its mount was detached, or another was mounted over it): a restore could not open it")]
    PathElsewhere { via: Via, path: String },
    #[error("{via}: {name} is a {kind}, which crit dump does not support")]
    Unmakable {
        via: Via,
        name: String,
        kind: &'static str,
    },
    #[error("{via}: {path} was deleted and is not a regular file; cannot be dumped")]
    DeletedNotRegular { via: Via, path: String },
    #[error("{via}: the root directory {path} was deleted: a restore could not chroot into it")]
    DeletedRoot { via: Via, path: String },
    #[error(
        "{via}: a deleted file taking {used} bytes is open, more than the ghost limit of {limit} bytes (raise it with --ghost-limit)"
    )]
    GhostTooBig { via: Via, used: u64, limit: u64 },
    #[error("--ghost-limit {value:?}: not a size (a number of bytes, or with K, M or G)")]
    GhostLimitArg { value: String },
    #[error("{via}: read deleted file: {source}")]
    GhostRead {
        via: Via,
        #[source]
        source: io::Error,
    },

    // ---- Sockets.
    #[error(
        "pid {pid} fd {fd}: socket {ino} is of a family crit dump does not support (only unix, TCP, UDP, netlink, packet)"
    )]
    SocketFamily { pid: i32, fd: i32, ino: u64 },
    #[error("pid {pid} fd {fd}: netlink socket {ino} is of protocol {proto}, which crit restore cannot make")]
    NetlinkProtocol {
        pid: i32,
        fd: i32,
        ino: u64,
        proto: u32,
    },
    #[error("pid {pid} fd {fd}: the socket has an eBPF filter (SO_ATTACH_BPF), which crit cannot read back (classic SO_ATTACH_FILTER programs are dumped)")]
    BpfFilter { pid: i32, fd: i32 },
    #[error("pid {pid} fd {fd}: UDP socket {ino} is corked (UDP_CORK): what it holds would be lost (CRIU refuses it too)")]
    UdpCorked { pid: i32, fd: i32, ino: u32 },
    #[error("pid {pid} fd {fd}: packet socket {ino}: {why}")]
    PacketSocket {
        pid: i32,
        fd: i32,
        ino: u64,
        why: &'static str,
    },
    #[error("pid {pid} fd {fd}: socket {ino} vanished")]
    SocketVanished { pid: i32, fd: i32, ino: u64 },
    /// Connections are dumped only when asked for.
    #[error(
        "pid {pid} fd {fd}: TCP socket {ino} (port {sport} -> {dport}) is connected (state {}); dump it with --tcp-established (or --tcp-close to restore it closed)",
        crate::model::tcp::name(u32::from(*.state))
    )]
    TcpEstablished {
        pid: i32,
        fd: i32,
        ino: u32,
        sport: u16,
        dport: u16,
        state: u8,
    },
    #[error("pid {pid} fd {fd}: TCP socket {ino}: locking the connection: {source}")]
    NetLock {
        pid: i32,
        fd: i32,
        ino: u32,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid} fd {fd}: unix socket {ino} has messages queued with their senders' credentials (SO_PASSCRED): a restore would replay them with others; not supported (CRIU 4.2 refuses them too)")]
    PassCredQueue { pid: i32, fd: i32, ino: u32 },
    #[error(
        "pid {pid} fd {fd}: TCP listener {ino} (port {port}) has {count} connection(s) in flight, not accepted yet; dump with --skip-in-flight to leave them out (they are reset)"
    )]
    InFlight {
        pid: i32,
        fd: i32,
        ino: u32,
        port: u16,
        count: u32,
    },
    /// States no socket of a task should have (SYN_RECV, TIME_WAIT), or
    /// a connection reset meanwhile (CLOSE).
    #[error(
        "pid {pid} fd {fd}: TCP socket {ino} is in state {} (only connections established, half-closed or being made are dumped)",
        crate::model::tcp::name(u32::from(*.state))
    )]
    TcpState {
        pid: i32,
        fd: i32,
        ino: u32,
        state: u8,
    },
    #[error(
        "pid {pid} fd {fd}: unix socket {ino}: a queued message passes more files than crit can take at once"
    )]
    QueueTooManyFiles { pid: i32, fd: i32, ino: u32 },
    #[error("pid {pid} fd {fd}: unix socket {ino}: a queued message is larger than {size} bytes")]
    QueueMessageTooBig {
        pid: i32,
        fd: i32,
        ino: u32,
        size: usize,
    },
    #[error("pid {pid} fd {fd}: unix socket {ino} has an empty datagram queued; not supported")]
    EmptyDatagram { pid: i32, fd: i32, ino: u32 },
    /// A file only in flight (held by no task) that crit cannot dump.
    #[error("pid {pid} fd {fd}: unix socket {ino} has a file in flight (SCM_RIGHTS) that no task holds: {why}")]
    InFlightRefused {
        pid: i32,
        fd: i32,
        ino: u32,
        why: String,
    },
    /// `file` is what /proc shows of the file in flight (may be empty).
    #[error(
        "pid {pid} fd {fd}: unix socket {ino} has a file descriptor in flight (SCM_RIGHTS) that no task of the tree holds ({file}); not supported"
    )]
    FileInFlight {
        pid: i32,
        fd: i32,
        ino: u32,
        file: String,
    },
    #[error(
        "pid {pid} fd {fd}: unix socket {ino} is connected to a listener outside the dumped tree that has not accepted it yet"
    )]
    UnacceptedOutside { pid: i32, fd: i32, ino: u32 },
    /// Unix sockets connected outside the tree, without consent.
    #[error(
        "{peers} outside the dumped tree; to dump as external, give --ext-unix-sk={}",
        .peers.inos()
    )]
    OutsidePeers { peers: OutsidePeers },
    #[error(
        "pid {pid} fd {fd}: unix listener {ino} holds a pending connection whose client has closed; \
         whether it carries data cannot be known, so this is not supported"
    )]
    PendingClientClosed { pid: i32, fd: i32, ino: u32 },
    #[error(
        "pid {pid} fd {fd}: unix socket {ino} sent data on a connection still pending in listener {listener} \
         (not accepted yet); it can be read only by taking the connection from the tree, \
         which -R (--leave-running) forbids: dump without -R"
    )]
    PendingDataLeaveRunning {
        pid: i32,
        fd: i32,
        ino: u32,
        listener: u32,
    },
    #[error("unix listener {ino}: not in the tree")]
    ListenerNotInTree { ino: u32 },
}

/// What a line or field of a /proc file did not have right.
#[derive(Debug, thiserror::Error)]
pub enum ProcFault {
    #[error("no '('")]
    NoOpenParen,
    #[error("no ')'")]
    NoCloseParen,
    #[error("field {0} missing")]
    FieldMissing(usize),
    #[error("field {0} is not a number: {1}")]
    FieldNotNumber(usize, String),
    /// A "key: value" line whose value does not parse.
    #[error("{key}: {value}")]
    Field { key: String, value: String },
    #[error("line {0:?}")]
    Line(String),
    #[error("{0} limits, expected 16")]
    LimitCount(usize),
    #[error("not a number: {0:?}")]
    NotNumber(String),
    #[error("cannot parse {0:?}")]
    CannotParse(String),
}

/// Where the dump sees a file: a descriptor of a task, or a /proc link
/// (exe, cwd, root, map_files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Fd { pid: i32, fd: i32 },
    Link(PathBuf),
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::Fd { pid, fd } => write!(f, "pid {pid} fd {fd}"),
            Via::Link(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A unix socket of the tree connected to socket `peer` outside it.
#[derive(Debug, Clone)]
pub struct OutsidePeer {
    pub pid: i32,
    pub fd: i32,
    pub sk_type: u8,
    pub ino: u32,
    pub peer: u32,
    /// The peer's address (sock_diag's form), if it has one.
    pub name: Option<Vec<u8>>,
    /// A process that holds the peer, and where.
    pub holder: Option<(i32, i32)>,
}

impl fmt::Display for OutsidePeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::model::unix::{display_name, type_name};
        let kind = type_name(self.sk_type.into());
        write!(
            f,
            "pid {} fd {}: {kind} unix socket {} is connected to socket {}",
            self.pid, self.fd, self.ino, self.peer
        )?;
        match &self.name {
            Some(n) if !n.is_empty() => write!(f, " (address {})", display_name(n))?,
            _ => f.write_str(" (no address)")?,
        }
        if let Some((p, fd)) = self.holder {
            write!(f, ", held by pid {p} fd {fd}")?;
        }
        Ok(())
    }
}

/// Every socket refused for a peer outside the tree.
#[derive(Debug, Clone)]
pub struct OutsidePeers(pub Vec<OutsidePeer>);

impl OutsidePeers {
    /// The inodes, comma-separated: the value of `--ext-unix-sk` that
    /// would let them all be dumped.
    fn inos(&self) -> String {
        let v: Vec<String> = self.0.iter().map(|p| p.ino.to_string()).collect();
        v.join(",")
    }
}

impl fmt::Display for OutsidePeers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// " (seizing its leader: ERR)" when seizing the leader showed the exit.
struct SeizingLeader<'a>(Option<&'a io::Error>);

impl fmt::Display for SeizingLeader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(e) => write!(f, " (seizing its leader: {e})"),
            None => Ok(()),
        }
    }
}

/// " (already traced by pid N)" when another tracer holds the thread.
struct TracedBy(Option<i32>);

impl fmt::Display for TracedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, " (already traced by pid {p})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The text of a few variants, as `crit dump` printed it before they
    // were typed.
    #[test]
    fn messages() {
        let e = DumpError::FreezeExited {
            pid: 7,
            seizing: None,
        };
        assert_eq!(e.to_string(), "freeze pid 7: exited during the freeze");
        let e = DumpError::Seize {
            pid: 7,
            tracer: Some(9),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(
            e.to_string(),
            "freeze pid 7: Operation not permitted (os error 1) (already traced by pid 9)"
        );
        let e = DumpError::GhostTooBig {
            via: Via::Link("/proc/3/exe".into()),
            used: 8192,
            limit: 4096,
        };
        assert_eq!(
            e.to_string(),
            "/proc/3/exe: a deleted file taking 8192 bytes is open, more than the ghost limit of 4096 bytes (raise it with --ghost-limit)"
        );
        let p = OutsidePeer {
            pid: 1,
            fd: 2,
            sk_type: 1,
            ino: 3,
            peer: 4,
            name: None,
            holder: Some((5, 6)),
        };
        let e = DumpError::OutsidePeers {
            peers: OutsidePeers(vec![p.clone(), OutsidePeer { ino: 8, ..p }]),
        };
        let one = "pid 1 fd 2: STREAM unix socket 3 is connected to socket 4 (no address), held by pid 5 fd 6";
        let two = one.replace("socket 3", "socket 8");
        assert_eq!(
            e.to_string(),
            format!(
                "{one}; {two} outside the dumped tree; to dump as external, give --ext-unix-sk=3,8"
            )
        );
        let e = DumpError::ProcParse {
            pid: 4,
            file: "limits",
            fault: ProcFault::LimitCount(3),
        };
        assert_eq!(
            e.to_string(),
            "pid 4: /proc/4/limits: 3 limits, expected 16"
        );
    }
}
