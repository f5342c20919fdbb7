use std::io;
use std::path::PathBuf;

/// Options, images and the restore's own machinery (pipes, threads, the
/// images directory lock).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A call of crit's own, on no task.
    #[error("{what}: {source}")]
    Call {
        what: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("restore: a rebuilding thread panicked")]
    Panicked,
    #[error("restore stopped by {signal}: what was made is undone")]
    Interrupted { signal: String },
    #[error("restore: a thread reading the task images panicked")]
    ImageReaderPanicked,
    #[error("--notify-fd {fd}: {source}")]
    NotifyFd {
        fd: i32,
        #[source]
        source: io::Error,
    },
    #[error("{}: missing; --cpu-cap needs images dumped with --cpu-cap", path.display())]
    NoCpuinfo { path: PathBuf },
    /// `cpuinfo.img` does not describe a CPU crit knows.
    #[error("{}: {why}", path.display())]
    Cpuinfo { path: PathBuf, why: String },
    #[error("{}: the dump's CPU ({model}) had what this one lacks: {}", path.display(), .missing.join("; "))]
    CpuDiffers {
        path: PathBuf,
        model: String,
        missing: Vec<String>,
    },

    // ---- The images, checked before anything is made.
    #[error("pid {pid}: fdinfo-{files_id}.img is missing, yet files.img holds descriptor file id {id} that no task has: the images are incomplete")]
    FdinfoLost { pid: u32, files_id: u32, id: u32 },
    #[error("{}: {why}", path.display())]
    Inventory { path: PathBuf, why: InventoryFault },
    #[error("{}: no task", path.display())]
    NoTask { path: PathBuf },
    #[error("{}: entry {index} (pid {pid}): {why}", path.display())]
    Pstree {
        path: PathBuf,
        index: usize,
        pid: u32,
        why: PstreeFault,
    },
    /// A directory crit reads.
    #[error("{}: {source}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: thread {tid} is not in pstree.img", path.display())]
    StrayCore { path: PathBuf, tid: u32 },
    #[error("{}: vma {index} ({start:#x}-{end:#x}): {why}", path.display())]
    Vma {
        path: PathBuf,
        index: usize,
        start: u64,
        end: u64,
        why: &'static str,
    },
    #[error("{}: pid {pid}: {why}", path.display())]
    Core {
        path: PathBuf,
        pid: u32,
        why: CoreFault,
    },
    #[error("{}: entry {index}: fd {fd} {why}", path.display())]
    Fd {
        path: PathBuf,
        index: usize,
        fd: u32,
        why: &'static str,
    },
    /// `index` counts the image's entries, the head being 0, as `crit
    /// decode` lists them.
    #[error("{}: entry {index} (pages at {vaddr:#x}): {why}", path.display())]
    PagemapEntry {
        path: PathBuf,
        index: usize,
        vaddr: u64,
        why: &'static str,
    },
    #[error("{}: not an images directory", path.display())]
    NotImages { path: PathBuf },
    #[error(
        "{}: the tree held {count} file lock(s); restore with --file-locks to take them again (without it they would be lost)",
        path.display()
    )]
    FileLocks { path: PathBuf, count: usize },
    /// An entry of filelocks.img that cannot be taken again.
    #[error("filelocks.img: the lock of pid {pid} fd {fd}: {why}")]
    LockEntry { pid: i32, fd: i32, why: String },
    #[error("files.img: {0}")]
    UnixModel(#[from] crate::model::unix::DuplicateInode),
    #[error("pid {pid}: file id {id} is not in files.img")]
    NoFile { pid: u32, id: u32 },
    #[error(
        "pid {pid}: task state {state} is not restorable (only running and stopped tasks are)"
    )]
    TaskState { pid: u32, state: u32 },
    #[error("core-{tid}.img: pid {pid}: no x86_64 thread info (only x86_64 images restore)")]
    NotX86 { tid: u32, pid: u32 },
    #[error("{}: no pagemap head", path.display())]
    NoPagemapHead { path: PathBuf },

    // ---- Options.
    #[error("--ext-unix-sk={value}: {why}")]
    ExtUnixSk { value: String, why: &'static str },
    #[error("--external {value}: expected mnt[KEY]:PATH")]
    ExternalArg { value: String },
    #[error("--cgroup-root {value}: expected [CONTROLLER:]/PATH")]
    CgroupRootArg { value: String },
    #[error("--inherit-fd {value}: expected fd[N]:RESOURCE")]
    InheritFdArg { value: String },
    /// The fd `--inherit-fd fd[N]:KEY` hands in.
    #[error("--inherit-fd fd[{fd}]:{key}: {source}")]
    InheritFd {
        fd: i32,
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("--pidfile {}: {source}", path.display())]
    Pidfile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: the root of the tree is a zombie")]
    ZombieRoot { pid: u32 },
    #[error("pid {pid}: its session {sid} is outside the images; restore with --shell-job")]
    OutsideSession { pid: u32, sid: u32 },

    // ---- The restore's own machinery.
    /// A call crit makes on itself; nix's error prints as today.
    #[error("{what}: {source}")]
    Own {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("restore: {ready} of {total} tasks were forked before one died without a report")]
    ChildVanished { ready: usize, total: usize },
    #[error("{}: lock: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What is wrong with `inventory.img`.
#[derive(Debug, thiserror::Error)]
pub enum InventoryFault {
    #[error("{0} entries, expected 1")]
    Entries(usize),
    #[error("images version {found}; crit restores version {wanted} (CRIU 1.1 and later)")]
    Version { found: u32, wanted: u32 },
    #[error("no root_ids (the root task's namespaces and files)")]
    NoRootIds,
    #[error("network_lock_method {0} is none crit knows (0 iptables, 1 nftables, 2 skip)")]
    LockMethod(u32),
}

/// What is wrong with an entry of `pstree.img`.
#[derive(Debug, thiserror::Error)]
pub enum PstreeFault {
    #[error("pid 0")]
    PidZero,
    #[error("the root has a parent ({0})")]
    RootParent(u32),
    #[error("is its own parent")]
    OwnParent,
    #[error("has no parent; only one root is supported")]
    NoParent,
    #[error("its parent {0} is not an earlier task (a cycle, or a parent missing)")]
    ParentLater(u32),
    #[error("its thread list does not hold the task itself")]
    ThreadList,
    #[error("pid or thread id {0} appears twice")]
    Twice(u32),
}

/// What is wrong with a live task's core image.
#[derive(Debug, thiserror::Error)]
pub enum CoreFault {
    #[error("no task core (tc): its signal actions, limits and state are not in the images")]
    NoTaskCore,
    #[error("{0} signal actions, expected 62 (signals 1 to 64 but SIGKILL and SIGSTOP)")]
    Sigactions(usize),
    #[error("a queued signal's siginfo has {0} bytes, expected 128")]
    Siginfo(usize),
}
