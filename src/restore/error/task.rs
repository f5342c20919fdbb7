use std::io;

/// A task that cannot be rebuilt: forking it, its threads, memory,
/// registers, credentials and the rest of its state.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A call made for a task.
    #[error("pid {pid}: {what}: {source}")]
    Call {
        pid: u32,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// A /proc file of a task crit reads.
    #[error("/proc/{pid}/{name}: {source}")]
    Proc {
        pid: u32,
        name: &'static str,
        #[source]
        source: io::Error,
    },
    /// The task's pid in its own namespace, from /proc/PID/status.
    #[error("pid {pid}: NSpid in /proc/{pid}/status: {source}")]
    NsPid {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: /proc/{pid}/task/*/children: {source}")]
    Children {
        pid: u32,
        #[source]
        source: io::Error,
    },

    // ---- Memory.
    #[error("pid {pid}: pagemap-{pid}.img: pages at {vaddr:#x} are lazy (served by a page server), not in the images")]
    PagesLazy { pid: u32, vaddr: u64 },
    #[error("pid {pid}: pages-{pages_id}.img is missing; the pagemap needs pages from it (at {vaddr:#x})")]
    PagesMissing { pid: u32, pages_id: u32, vaddr: u64 },
    /// The pages of a task that a dump, or a dump of the chain of its
    /// `parent` links, cannot give; `path` is the file or link at fault.
    #[error("pid {pid}: {}: {fault}", path.display())]
    Pages {
        pid: u32,
        path: std::path::PathBuf,
        fault: PagesFault,
    },
    /// No hole in the address space for what restore must place.
    #[error("pid {pid}: {what}")]
    NoRoom { pid: u32, what: &'static str },
    #[error("pid {pid}: mapping {start:#x}-{end:#x} (status {status:#x}) is of a kind restore does not support")]
    MappingKind {
        pid: u32,
        start: u64,
        end: u64,
        status: u32,
    },
    /// A memory call injected in the task failed.
    #[error("pid {pid}: {what} {addr:#x}: errno {errno}")]
    MemCall {
        pid: u32,
        what: &'static str,
        addr: u64,
        errno: i64,
    },
    #[error("pid {pid}: mapping {start:#x}-{end:#x}: System V shared memory {shmid} cannot be attached ({source}); it must exist in the restored tree's ipc namespace")]
    ShmAttach {
        pid: u32,
        start: u64,
        end: u64,
        shmid: u64,
        source: io::Error,
    },
    #[error("pid {pid}: mmap {start:#x}-{end:#x}: {source}")]
    Mmap {
        pid: u32,
        start: u64,
        end: u64,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: mmap {start:#x} landed at {got:#x}")]
    MmapMoved { pid: u32, start: u64, got: i64 },
    #[error("pid {pid}: mapping {start:#x}: file id {id} not opened")]
    MappedFileMissing { pid: u32, start: u64, id: u64 },
    #[error("pid {pid}: mapping {start:#x}: shared memory {shmid} not made")]
    SharedMissing { pid: u32, start: u64, shmid: u64 },
    /// The vdso or vvar differs from this kernel's.
    #[error("pid {pid}: the dumped {which} is {dumped} bytes, this kernel's is {here}, and the images hold no vdso pages to make a proxy of: restore on the dumping kernel")]
    SpecialSize {
        pid: u32,
        which: &'static str,
        dumped: u64,
        here: u64,
    },
    #[error("pid {pid}: the images have a {which}, this kernel gives none")]
    SpecialMissing { pid: u32, which: &'static str },
    #[error("vdso: {whose} {why}")]
    VdsoImage {
        whose: String,
        why: crate::restore::vdso::symtab::ElfFault,
    },
    #[error("pid {pid}: a vdso proxy needs the dumped vdso's pages, and the images hold none at {start:#x}")]
    VdsoNoPages { pid: u32, start: u64 },
    #[error("pid {pid}: no vdso proxy: {why}")]
    VdsoProxy {
        pid: u32,
        why: crate::restore::vdso::proxy::PatchFault,
    },
    #[error("pid {pid}: exe file id {id} not opened")]
    ExeMissing { pid: u32, id: u32 },

    // ---- The forked task's own preparation.
    /// A call the task makes on itself (nix's error prints as today).
    #[error("pid {pid}: {what}: {source}")]
    Own {
        pid: u32,
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    /// The same, with the call's argument (a path, a group or user id).
    #[error("pid {pid}: {what} {arg}: {source}")]
    OwnOn {
        pid: u32,
        what: &'static str,
        arg: String,
        #[source]
        source: nix::Error,
    },
    #[error("pid {pid}: session {sid} cannot be recreated (its leader is not an ancestor; not supported)")]
    Session { pid: u32, sid: u32 },
    #[error("pid {pid}: could not join process group {pgid}")]
    Group { pid: u32, pgid: u32 },
    #[error("pid {pid}: fd {fd}: file id {id} was not opened")]
    FdNotOpened { pid: u32, fd: u32, id: u32 },
    #[error("pid {pid}: mapped file id {id} was not opened")]
    MappedNotOpened { pid: u32, id: u32 },
    #[error("pid {pid}: shared memory {id} was not made")]
    SharedNotMade { pid: u32, id: u64 },
    /// Placing an fd at its number.
    #[error("pid {pid}: fd {fd}: {source}")]
    Place {
        pid: u32,
        fd: i32,
        #[source]
        source: io::Error,
    },
    /// Moving an fd out of the way of one that must take its number.
    #[error("pid {pid}: move fd {fd} aside: {source}")]
    MoveAside {
        pid: u32,
        fd: i32,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: unix socket {ino} (fd {fd}): connect to outside peer {addr}: {source}")]
    OutsidePeer {
        pid: u32,
        ino: u32,
        fd: u32,
        addr: nix::sys::socket::UnixAddr,
        #[source]
        source: nix::Error,
    },
    #[error("pid {pid}: fd {fd}: set owner {owner} for SIGIO: {source}")]
    Owner {
        pid: u32,
        fd: u32,
        owner: u32,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: fd {fd}: set O_ASYNC: {source}")]
    Async {
        pid: u32,
        fd: u32,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: epoll fd {fd}: add target fd {target}: {source}")]
    EpollAdd {
        pid: u32,
        fd: u32,
        target: u32,
        #[source]
        source: io::Error,
    },

    // ---- Tracing the tasks and injecting calls.
    /// A ptrace or /proc call on a thread.
    #[error("tid {tid}: {what}: {source}")]
    Thread {
        tid: u32,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: exited before it was rebuilt ({stop:?})")]
    ExitedEarly {
        pid: u32,
        stop: crate::sys::ptrace::Stop,
    },
    #[error("pid {pid}: rseq unregister: errno {errno}")]
    Rseq { pid: u32, errno: i64 },
    #[error("pid {pid}: thread id {tid} is already in use")]
    TidInUse { pid: u32, tid: u32 },
    #[error("pid {pid}: create thread {tid}: {source}")]
    NewThread {
        pid: u32,
        tid: u32,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: thread {tid} was created as {got}")]
    ThreadMoved { pid: u32, tid: u32, got: i64 },
    #[error("pid {pid}: thread {tid}: {source}")]
    ThreadHost {
        pid: u32,
        tid: u32,
        #[source]
        source: io::Error,
    },
    #[error("tid {tid}: exited at once ({stop:?})")]
    ThreadExited {
        tid: u32,
        stop: crate::sys::ptrace::Stop,
    },
    #[error("tid {tid}: batch of {calls} syscalls: {what}: {source}")]
    Batch {
        tid: u32,
        calls: usize,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("tid {tid}: batch trapped at {at:#x}")]
    BatchTrap { tid: u32, at: u64 },
    #[error("tid {tid}: batch of syscalls faulted (signal {sig} at {at:#x})")]
    BatchFault { tid: u32, sig: i32, at: u64 },
    #[error("tid {tid}: died during a batch of syscalls ({stop:?})")]
    BatchDied {
        tid: u32,
        stop: crate::sys::ptrace::Stop,
    },
    /// An injected syscall could not be run.
    #[error("pid {pid}: {source}")]
    Syscall {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: write memory at {at:#x}: {source}")]
    WriteMem {
        pid: u32,
        at: u64,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: memory at {at:#x} could not be written ({done} of {total} bytes done)")]
    ShortWrite {
        pid: u32,
        at: u64,
        done: usize,
        total: usize,
    },
    #[error("tid {tid}: read memory at {at:#x}: {source}")]
    ReadMem {
        tid: u32,
        at: u64,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: page writer failed")]
    PageWriter { pid: u32 },

    /// A syscall injected in the task returned an error.
    #[error("pid {pid}: {call}: {source}")]
    Injected {
        pid: u32,
        /// The call as the log names it, e.g. `rt_sigaction(10)`.
        call: String,
        #[source]
        source: io::Error,
    },
    /// A file lock of the images that the task could not take again.
    #[error("pid {pid} fd {fd}: its {lock} on {file} cannot be taken again: {why}")]
    Lock {
        pid: u32,
        fd: u32,
        lock: String,
        file: String,
        why: String,
    },
    /// A task's forked copy reported that its own preparation failed; the
    /// text crossed the status pipe.
    #[error("{msg}")]
    Child { pid: u32, msg: String },

    // ---- The task's state.
    #[error("pid {pid}: the root of a tree with its own pid namespace must be pid 1 in it")]
    NsRootNotOne { pid: u32 },
    #[error("pid {pid}: clone3 gave pid {got}")]
    ClonedAs { pid: u32, got: i32 },
    #[error("pid {pid} is already in use")]
    PidInUse { pid: u32 },
    #[error("pid {pid} is already in use (by {comm}); the restored tree needs it")]
    PidTaken { pid: u32, comm: String },
    #[error("pid {pid}: POSIX timer {id}: {why}")]
    Timer { pid: u32, id: u32, why: TimerFault },
    #[error("pid {pid}: POSIX timer {id} was created as {got}")]
    TimerMoved { pid: u32, id: u32, got: u32 },
    #[error("pid {pid}: POSIX timer {id}: the kernel gave id {got} where {due} was due (without PR_TIMER_CREATE_RESTORE_IDS ids must come in order)")]
    TimerOrder {
        pid: u32,
        id: u32,
        got: u32,
        due: u32,
    },
    #[error("pid {pid}: scratch area landed at {got:#x}, not {want:#x}")]
    ScratchMoved { pid: u32, got: u64, want: u64 },
    #[error("tid {tid}: no registers in the core image")]
    NoRegisters { tid: u32 },
    #[error("pid {pid}: no thread")]
    NoThread { pid: u32 },
    #[error("tid {tid}: 32-bit (compat) tasks are not supported")]
    Compat { tid: u32 },
    #[error("tid {tid}: unknown seccomp mode {mode} in its core image")]
    SeccompMode { tid: u32, mode: u32 },
    #[error("tid {tid}: seccomp.img: {why}")]
    Seccomp { tid: u32, why: SeccompFault },
    #[error("pid {pid}: {name} in the images has soft limit {} above hard limit {}", super::super::rlimits::value(*.cur), super::super::rlimits::value(*.max))]
    Rlimit {
        pid: u32,
        name: &'static str,
        cur: u64,
        max: u64,
    },
    #[error("pid {pid}: cgroup set {set} is not in cgroup.img")]
    NoCgSet { pid: u32, set: u32 },
    /// Making or joining the task's cgroup.
    #[error("pid {pid}: {what} {}: {source}", dir.display())]
    Cgroup {
        pid: u32,
        what: &'static str,
        dir: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing a /proc file of the task.
    #[error("pid {pid}: {}: {source}", path.display())]
    ProcWrite {
        pid: u32,
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: stop it again: {source}")]
    StopAgain {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("tid {tid}: it was using {} state, which this CPU lacks (restore with --cpu-cap=none to drop it)", .lost.join(", "))]
    CpuLacks { tid: u32, lost: Vec<String> },
}

/// What is wrong with a POSIX timer of the images.
/// What is wrong with a pages image, pagemap or `parent` link (see
/// [`TaskError::Pages`]). `by` is the dump that leaves the pages at
/// `vaddr` to a parent dump.
#[derive(Debug, thiserror::Error)]
pub enum PagesFault {
    #[error("holds {len} bytes, the pagemap needs {need}")]
    Short { len: u64, need: u64 },
    #[error("missing, yet {} leaves the pages at {vaddr:#x} to a parent dump", by.display())]
    NoLink { by: std::path::PathBuf, vaddr: u64 },
    #[error("points to {}, which does not exist", to.display())]
    Dangling { to: std::path::PathBuf },
    #[error("not a directory, nor a link to one")]
    NotDir,
    #[error("{0}")]
    Link(io::Error),
    #[error("missing, yet {} leaves the pages at {vaddr:#x} to this dump", by.display())]
    PagemapMissing { by: std::path::PathBuf, vaddr: u64 },
    #[error("missing, yet the pagemap there needs {need} bytes of it")]
    PagesMissing { need: u64 },
    #[error("holds no pages at {vaddr:#x}, which {} leaves to this dump", by.display())]
    NotHeld { by: std::path::PathBuf, vaddr: u64 },
    #[error("the pages at {vaddr:#x} are lazy (served by a page server), not in the images")]
    Lazy { vaddr: u64 },
    #[error("more than {max} parent dumps follow (a loop of `parent` links?)")]
    TooDeep { max: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum TimerFault {
    #[error("appears twice")]
    Twice,
    #[error("id out of range")]
    IdRange,
    #[error("notifies thread {0}, which is not a thread of the task")]
    NotOurThread(i32),
    #[error("unknown notification {0}")]
    Notify(u32),
    #[error("signal {0} out of range")]
    Signal(u32),
    #[error("nanoseconds out of range")]
    Nanos,
}

/// What is wrong with a thread's seccomp filters in the images.
#[derive(Debug, thiserror::Error)]
pub enum SeccompFault {
    #[error("missing, but the thread has seccomp filters")]
    Missing,
    #[error("the thread's core names no filter")]
    NoIndex,
    #[error("filter {at} does not exist ({entries} entries)")]
    NoFilter { at: u32, entries: usize },
    #[error("filter {at} is {len} bytes, not 1 to {max} instructions of 8 bytes")]
    Size { at: u32, len: usize, max: usize },
    #[error("filter {at} has a user-space listener, which cannot be restored")]
    Listener { at: u32 },
    #[error("the chain from filter {at} loops")]
    Loop { at: u32 },
}
