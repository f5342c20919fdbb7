//! Creating a process with a chosen pid, or a plain fork ([`fork_alone`]).
//!
//! [`clone3_with_tid`] is `fork()` with the pid picked by the caller
//! (`clone3` with `set_tid`), as a restore needs to give each task its old
//! pid back. It needs CAP_SYS_ADMIN over every pid namespace whose pid it
//! sets (root in the initial namespace has it).
//!
//! # The child
//!
//! The child is a copy of the calling process with only the calling thread.
//! It returns from [`clone3_with_tid`] with [`ForkResult::Child`] on a copy
//! of the caller's stack, like after `fork()`, but without glibc's fork
//! bookkeeping (no `pthread_atfork` handlers, and glibc's own record of the
//! thread's tid still holds the parent's tid). So:
//! - if the parent had other threads, the child may only call
//!   async-signal-safe code (no allocation, no locks: another thread may
//!   have held them at the moment of the clone) and must end with an
//!   `exec` or [`child_exit`];
//! - if the parent was single-threaded (crit's restore), the child may run
//!   ordinary Rust code, but must not rely on glibc's cached tid
//!   (`pthread_mutex` error-checking/robust owners, `pthread_kill` on
//!   itself); use the `gettid`/`getpid` syscalls;
//! - it must leave with [`child_exit`] (`_exit`), never by returning into
//!   the caller's frames past the point that expected the parent (that
//!   would run the parent's cleanup, e.g. flush stdio buffers twice).

use std::io;

use libc::c_long;

use super::err;

/// What [`clone3_with_tid`] returns in each process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkResult {
    /// In the parent: the child's pid (as seen from the caller's pid
    /// namespace).
    Parent(i32),
    /// In the child.
    Child,
}

/// `struct clone_args` (CLONE_ARGS_SIZE_VER2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Flags that need pointers, shared memory or a new thread: refused.
const REFUSED: u64 = 0x7f // exit-signal bits (the exit signal is SIGCHLD)
    | libc::CLONE_VM as u64
    | libc::CLONE_SIGHAND as u64
    | libc::CLONE_THREAD as u64
    | libc::CLONE_SETTLS as u64
    | libc::CLONE_PARENT_SETTID as u64
    | libc::CLONE_CHILD_SETTID as u64
    | libc::CLONE_CHILD_CLEARTID as u64
    | libc::CLONE_PIDFD as u64
    | 0x200000000; // CLONE_INTO_CGROUP

/// Forks with pid `set_tid[0]` in the caller's pid namespace (innermost
/// level first when creating into nested namespaces: `set_tid[i]` is the
/// pid at the i-th level going outwards; at most 32 levels). `flags` are
/// extra `CLONE_*` flags: namespaces (`CLONE_NEW*`), `CLONE_PARENT`,
/// `CLONE_FILES`, `CLONE_FS`, `CLONE_SYSVSEM`, `CLONE_IO`,
/// `CLONE_CLEAR_SIGHAND`, `CLONE_VFORK`, `CLONE_UNTRACED`, `CLONE_PTRACE`;
/// flags needing pointers or shared memory (`CLONE_VM`, `CLONE_THREAD`,
/// `CLONE_SIGHAND`, `CLONE_SETTLS`, `CLONE_*_SETTID`,
/// `CLONE_CHILD_CLEARTID`, `CLONE_PIDFD`, `CLONE_INTO_CGROUP`) are refused
/// with EINVAL. The child's exit signal is SIGCHLD. See the module docs
/// for what the child may do.
///
/// Errors: `EEXIST` if the pid is taken, `EINVAL` for a pid above
/// `pid_max` or bad flags, `EPERM` without CAP_SYS_ADMIN.
pub fn clone3_with_tid(set_tid: &[i32], flags: u64) -> io::Result<ForkResult> {
    let want = set_tid.first().copied().unwrap_or(0);
    if set_tid.is_empty() || set_tid.len() > 32 || set_tid.iter().any(|&p| p <= 0) {
        return Err(err::os(
            format_args!("clone3 with set_tid {set_tid:?}: need 1 to 32 positive pids"),
            libc::EINVAL,
        ));
    }
    if flags & REFUSED != 0 {
        return Err(err::os(
            format_args!(
                "clone3 for pid {want}: flags {:#x} not supported",
                flags & REFUSED
            ),
            libc::EINVAL,
        ));
    }
    let tids: Vec<libc::pid_t> = set_tid.to_vec();
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tids.as_ptr() as u64,
        set_tid_size: tids.len() as u64,
        ..CloneArgs::default()
    };
    // `tids` lives until clone3 returns.
    clone3(&mut args).map_err(|e| err::context(format_args!("clone3 for pid {want}"), e))
}

/// `clone3(args)`, like fork(): the child returns here on its copy of
/// the stack. `args.flags` must hold none of [`REFUSED`] and its
/// `set_tid`, if any, point at pids live for the call.
fn clone3(args: &mut CloneArgs) -> io::Result<ForkResult> {
    debug_assert_eq!(args.flags & REFUSED, 0);
    // SAFETY: `args` (and what it points to, per the contract above) is
    // live for the call; no flag makes the kernel write to our memory or
    // share it, so the child gets its own copy of our address space.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>() as c_long,
        )
    };
    match r {
        r if r < 0 => Err(io::Error::last_os_error()),
        0 => Ok(ForkResult::Child),
        r => Ok(ForkResult::Parent(r as i32)),
    }
}

/// `fork()` of a process that has one thread (a server about to run in
/// the background, [`crate::detach`]). The child is a whole copy of the
/// caller, so it may run any code and return through the caller's frames.
///
/// Refused with `EBUSY` while the process has more than one thread: a
/// thread holding a lock (the allocator's, stdio's) at the fork would
/// leave it held forever in the child.
pub fn fork_alone() -> io::Result<ForkResult> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(|e| err::context(format_args!("fork: read /proc/self/task"), e))?
        .count();
    if threads != 1 {
        return Err(err::os(
            format_args!("fork: crit runs {threads} threads"),
            libc::EBUSY,
        ));
    }
    // SAFETY: one thread (checked above; only this thread could start
    // another meanwhile), so no lock is held by a thread that the child
    // lacks, and glibc's fork keeps its own records right in the child.
    let r = unsafe { libc::fork() };
    match r {
        r if r < 0 => Err(err::last(format_args!("fork"))),
        0 => Ok(ForkResult::Child),
        r => Ok(ForkResult::Parent(r)),
    }
}

/// Forks a child that exits at once with status 0 and runs none of our
/// code on the way (safe however many threads the caller has). Returns
/// its pid; the caller reaps it.
pub fn fork_exiting() -> io::Result<i32> {
    let mut args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    match clone3(&mut args).map_err(|e| err::context(format_args!("clone3"), e))? {
        ForkResult::Child => child_exit(0),
        ForkResult::Parent(pid) => Ok(pid),
    }
}

/// `_exit(code)`: ends the calling process at once, without running
/// destructors, atexit handlers or stdio flushes. For the child of
/// [`clone3_with_tid`].
pub fn child_exit(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// `/proc/sys/kernel/ns_last_pid`: the last pid allocated in our pid
/// namespace.
pub fn read_ns_last_pid() -> io::Result<i32> {
    read_int("/proc/sys/kernel/ns_last_pid")
}

/// Writes `/proc/sys/kernel/ns_last_pid` (the next fork gets `pid + 1` if
/// free; racy against other forks — prefer [`clone3_with_tid`]).
pub fn write_ns_last_pid(pid: i32) -> io::Result<()> {
    let path = "/proc/sys/kernel/ns_last_pid";
    std::fs::write(path, pid.to_string()).map_err(|e| err::context(format_args!("write {path}"), e))
}

/// `/proc/sys/kernel/pid_max`.
pub fn pid_max() -> io::Result<i32> {
    read_int("/proc/sys/kernel/pid_max")
}

/// Whether `pid` is in use in our pid namespace by a process, a thread or
/// a zombie (`/proc/PID` exists; a tid has a hidden `/proc/TID` entry).
pub fn pid_in_use(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn read_int(path: &str) -> io::Result<i32> {
    let s =
        std::fs::read_to_string(path).map_err(|e| err::context(format_args!("read {path}"), e))?;
    s.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: not a number: {s:?}"),
        )
    })
}
