//! Per-thread tracing with ptrace: seizing, stopping, waiting, registers,
//! signal state and rseq. Freezing a whole tree is the dump engine's job
//! (`crate::dump::freezer`), built on these calls.
//!
//! # Model
//!
//! Every function here acts on one *thread* (a tid). ptrace ties a tracee
//! to the *thread* that attached it: all calls on a tracee — including
//! [`wait_stop`] — must come from the thread that called [`seize`]
//! (another thread gets `ESRCH`). [`crate::sys::inject::Injector`] (and
//! any freezer) is therefore `!Send`. Another thread of the same process
//! that calls `waitpid(-1, __WALL)` would steal the stop notifications of
//! our tracees: don't do that while tracing.
//!
//! Only `PTRACE_SEIZE` is used (never `PTRACE_ATTACH`): no SIGSTOP is sent,
//! a seized thread keeps running until [`interrupt`]ed, and every stop is
//! reported with enough information to tell its kind apart ([`Stop`]).
//!
//! # Options
//!
//! [`seize`] uses [`DEFAULT_OPTIONS`] = `PTRACE_O_TRACESYSGOOD`, so that
//! syscall-stops are reported as `SIGTRAP | 0x80` and can never be confused
//! with a real SIGTRAP; the injector relies on it. `PTRACE_O_EXITKILL` is
//! deliberately not set: if the dumper dies, its tracees must run on.
//! `PTRACE_O_SUSPEND_SECCOMP` is set by the injector (only) on threads that
//! run under seccomp, once they are stopped, so that injected syscalls are
//! not filtered. The options of every tracee seized through this module are
//! remembered per tracer thread ([`options_of`]); children auto-attached by
//! `PTRACE_O_TRACECLONE`/`TRACEFORK`/`TRACEVFORK` inherit their parent's
//! options, and [`wait_stop`] records that when it reports the event.
//!
//! # Stopped tasks
//!
//! A task that was already in group-stop (state `T`, e.g. after `SIGSTOP`)
//! when it was seized reports [`Stop::Group`] instead of
//! [`Stop::Interrupt`]. Nothing is done to it: its stop is *not* ended.
//! When it is detached, the kernel sees that the group stop is still in
//! effect (`SIGNAL_STOP_STOPPED`, which only `SIGCONT` clears) and puts the
//! thread straight back into group-stop, so it stays `T` — even if
//! syscalls were injected into it meanwhile. A `SIGCONT` sent while it is
//! frozen ends the group stop as it would have without us.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use libc::{c_long, c_void};

use super::err;
use super::remote;

/// General-purpose registers as `PTRACE_GETREGS` gives them (x86-64).
pub type Regs = libc::user_regs_struct;
/// The 512-byte legacy FPU/SSE area (`fxsave` layout, `NT_PRFPREG`,
/// `struct user_fpregs_struct`), with every field public (CRIU's
/// `user_x86_fpregs_entry` has the same fields).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpRegs {
    pub cwd: u16,
    pub swd: u16,
    /// Abridged tag word (`twd` in CRIU's images).
    pub ftw: u16,
    pub fop: u16,
    pub rip: u64,
    pub rdp: u64,
    pub mxcsr: u32,
    pub mxcr_mask: u32,
    /// 8 x87 registers, 16 bytes each.
    pub st_space: [u32; 32],
    /// 16 xmm registers, 16 bytes each.
    pub xmm_space: [u32; 64],
    pub padding: [u32; 24],
}

const _: () = assert!(std::mem::size_of::<FpRegs>() == 512);

impl Default for FpRegs {
    fn default() -> Self {
        zeroed_fpregs()
    }
}

/// `PTRACE_O_TRACESYSGOOD`: syscall-stops report `SIGTRAP | 0x80`.
pub const O_TRACESYSGOOD: u64 = 0x1;
/// `PTRACE_O_TRACEFORK`: stop at fork and auto-attach the child.
pub const O_TRACEFORK: u64 = 0x2;
/// `PTRACE_O_TRACEVFORK`.
pub const O_TRACEVFORK: u64 = 0x4;
/// `PTRACE_O_TRACECLONE`: stop at clone and auto-attach the new thread.
pub const O_TRACECLONE: u64 = 0x8;
/// `PTRACE_O_TRACEEXEC`.
pub const O_TRACEEXEC: u64 = 0x10;
/// `PTRACE_O_TRACEVFORKDONE`.
pub const O_TRACEVFORKDONE: u64 = 0x20;
/// `PTRACE_O_TRACEEXIT`: stop a thread just before it exits.
pub const O_TRACEEXIT: u64 = 0x40;
/// `PTRACE_O_TRACESECCOMP`.
pub const O_TRACESECCOMP: u64 = 0x80;
/// `PTRACE_O_EXITKILL`: SIGKILL every tracee if the tracer exits.
pub const O_EXITKILL: u64 = 1 << 20;
/// `PTRACE_O_SUSPEND_SECCOMP`: seccomp filters do not apply while traced
/// (needs CAP_SYS_ADMIN and CONFIG_CHECKPOINT_RESTORE).
pub const O_SUSPEND_SECCOMP: u64 = 1 << 21;
/// The options [`seize`] uses.
pub const DEFAULT_OPTIONS: u64 = O_TRACESYSGOOD;

/// `PTRACE_EVENT_FORK`.
pub const EVENT_FORK: i32 = 1;
/// `PTRACE_EVENT_VFORK`.
pub const EVENT_VFORK: i32 = 2;
/// `PTRACE_EVENT_CLONE`.
pub const EVENT_CLONE: i32 = 3;
/// `PTRACE_EVENT_EXEC`.
pub const EVENT_EXEC: i32 = 4;
/// `PTRACE_EVENT_VFORK_DONE`.
pub const EVENT_VFORK_DONE: i32 = 5;
/// `PTRACE_EVENT_EXIT`.
pub const EVENT_EXIT: i32 = 6;
/// `PTRACE_EVENT_SECCOMP`.
pub const EVENT_SECCOMP: i32 = 7;
/// `PTRACE_EVENT_STOP` (interrupt and group stops; see [`Stop`]).
pub const EVENT_STOP: i32 = 128;

const PTRACE_GETREGS: u32 = 12;
const PTRACE_SETREGS: u32 = 13;
const PTRACE_GETFPREGS: u32 = 14;
const PTRACE_SETFPREGS: u32 = 15;
const PTRACE_CONT: u32 = 7;
const PTRACE_SINGLESTEP: u32 = 9;
const PTRACE_DETACH: u32 = 17;
const PTRACE_SYSCALL: u32 = 24;
const PTRACE_SETOPTIONS: u32 = 0x4200;
const PTRACE_GETEVENTMSG: u32 = 0x4201;
const PTRACE_GETSIGINFO: u32 = 0x4202;
const PTRACE_SETSIGINFO: u32 = 0x4203;
const PTRACE_GETREGSET: u32 = 0x4204;
const PTRACE_SETREGSET: u32 = 0x4205;
const PTRACE_SEIZE: u32 = 0x4206;
const PTRACE_INTERRUPT: u32 = 0x4207;
const PTRACE_LISTEN: u32 = 0x4208;
const PTRACE_PEEKSIGINFO: u32 = 0x4209;
const PTRACE_GETSIGMASK: u32 = 0x420a;
const PTRACE_SETSIGMASK: u32 = 0x420b;
const PTRACE_GET_SYSCALL_INFO: u32 = 0x420e;
const PTRACE_GET_RSEQ_CONFIGURATION: u32 = 0x420f;
const NT_X86_XSTATE: usize = 0x202;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;

/// `-ERESTARTSYS` and friends: what a syscall interrupted by a stop leaves
/// in `rax` (as a positive number).
pub const ERESTARTSYS: i64 = 512;
/// `ERESTARTNOINTR`.
pub const ERESTARTNOINTR: i64 = 513;
/// `ERESTARTNOHAND`.
pub const ERESTARTNOHAND: i64 = 514;
/// `ERESTART_RESTARTBLOCK`.
pub const ERESTART_RESTARTBLOCK: i64 = 516;

thread_local! {
    /// Options of the tracees of this (tracer) thread, by tid.
    static TRACEES: RefCell<HashMap<i32, u64>> = RefCell::new(HashMap::new());
}

fn note_options(tid: i32, options: u64) {
    TRACEES.with(|t| t.borrow_mut().insert(tid, options));
}

fn forget(tid: i32) {
    TRACEES.with(|t| t.borrow_mut().remove(&tid));
}

/// The ptrace options this thread seized `tid` with (or last set with
/// [`set_options`]); `None` if `tid` is not known as a tracee of the
/// calling thread.
pub fn options_of(tid: i32) -> Option<u64> {
    TRACEES.with(|t| t.borrow().get(&tid).copied())
}

/// One raw ptrace request.
///
/// # Safety
/// `addr` and `data` must be what `req` expects: plain integers, or, for a
/// request that reads or writes through one of them, the address of a live
/// buffer of the size the request reads or writes.
unsafe fn ptrace_raw(req: u32, tid: i32, addr: usize, data: usize) -> c_long {
    // SAFETY: the caller guarantees that addr/data are valid for `req`.
    unsafe {
        libc::syscall(
            libc::SYS_ptrace,
            req as c_long,
            tid as c_long,
            addr as *mut c_void,
            data as *mut c_void,
        )
    }
}

/// A ptrace request whose `addr` and `data` are plain integers.
/// Refuses (EINVAL) any other request.
fn ptrace_int(req: u32, tid: i32, addr: usize, data: usize, what: &str) -> io::Result<c_long> {
    let integer_only = matches!(
        req,
        PTRACE_SEIZE
            | PTRACE_INTERRUPT
            | PTRACE_CONT
            | PTRACE_DETACH
            | PTRACE_SYSCALL
            | PTRACE_SINGLESTEP
            | PTRACE_LISTEN
            | PTRACE_SETOPTIONS
    );
    if !integer_only {
        return Err(err::os(
            format_args!("{what} tid {tid}: not an integer-only request"),
            libc::EINVAL,
        ));
    }
    // SAFETY: for these requests the kernel treats addr and data as
    // integers (options, signal number) and never dereferences them.
    let r = unsafe { ptrace_raw(req, tid, addr, data) };
    if r == -1 {
        return Err(err::last(format_args!("{what} tid {tid}")));
    }
    Ok(r)
}

/// A ptrace request that reads into or writes from `buf` (given as `data`),
/// with `addr` an integer.
///
/// # Safety
/// `req` with this `addr` must read or write through `data` at most
/// `size_of::<T>()` bytes, and any bit pattern the kernel writes must be a
/// valid `T` (plain integers and arrays of them).
unsafe fn ptrace_buf<T>(
    req: u32,
    tid: i32,
    addr: usize,
    buf: &mut T,
    what: &str,
) -> io::Result<c_long> {
    // SAFETY: `buf` is live and exclusively borrowed for the call; the
    // caller guarantees the size and validity conditions above.
    let r = unsafe { ptrace_raw(req, tid, addr, buf as *mut T as usize) };
    if r == -1 {
        return Err(err::last(format_args!("{what} tid {tid}")));
    }
    Ok(r)
}

/// Seizes `tid` with [`DEFAULT_OPTIONS`] (`PTRACE_O_TRACESYSGOOD`). The
/// thread keeps running; [`interrupt`] and [`wait_stop`] stop it.
pub fn seize(tid: i32) -> io::Result<()> {
    seize_with(tid, DEFAULT_OPTIONS)
}

/// `PTRACE_SEIZE` with the given `O_*` options.
pub fn seize_with(tid: i32, options: u64) -> io::Result<()> {
    ptrace_int(PTRACE_SEIZE, tid, 0, options as usize, "PTRACE_SEIZE")?;
    note_options(tid, options);
    Ok(())
}

/// `PTRACE_SETOPTIONS` (replaces all options). The tracee must be stopped.
pub fn set_options(tid: i32, options: u64) -> io::Result<()> {
    ptrace_int(
        PTRACE_SETOPTIONS,
        tid,
        0,
        options as usize,
        "PTRACE_SETOPTIONS",
    )?;
    note_options(tid, options);
    Ok(())
}

/// `PTRACE_INTERRUPT`: asks a seized thread to stop; the stop is reported
/// by [`wait_stop`] as [`Stop::Interrupt`] (or [`Stop::Group`] if the task is
/// in group-stop). A thread blocked in an interruptible syscall leaves it
/// with `-ERESTART*` in `rax` (see [`interrupted_syscall`]); resuming it
/// restarts the syscall as the kernel intends.
pub fn interrupt(tid: i32) -> io::Result<()> {
    ptrace_int(PTRACE_INTERRUPT, tid, 0, 0, "PTRACE_INTERRUPT").map(|_| ())
}

/// `PTRACE_CONT`, delivering `sig` if the thread is in a signal-delivery
/// stop (0: none; in other stops the kernel ignores it).
pub fn cont(tid: i32, sig: i32) -> io::Result<()> {
    ptrace_int(PTRACE_CONT, tid, 0, sig as usize, "PTRACE_CONT").map(|_| ())
}

/// `PTRACE_SYSCALL`: resume until the next syscall-entry or -exit stop.
pub fn cont_syscall(tid: i32, sig: i32) -> io::Result<()> {
    ptrace_int(PTRACE_SYSCALL, tid, 0, sig as usize, "PTRACE_SYSCALL").map(|_| ())
}

/// `PTRACE_SINGLESTEP`: execute one instruction. The resulting stop is a
/// SIGTRAP signal-delivery stop ([`Stop::Signal`]`(SIGTRAP)`); never resume
/// it with the SIGTRAP. Note: the kernel raises that SIGTRAP with
/// `force_sig`, which resets the task's SIGTRAP disposition to SIG_DFL if
/// the thread blocks or ignores SIGTRAP — the injector therefore does not
/// use single-stepping.
pub fn singlestep(tid: i32) -> io::Result<()> {
    ptrace_int(PTRACE_SINGLESTEP, tid, 0, 0, "PTRACE_SINGLESTEP").map(|_| ())
}

/// `PTRACE_LISTEN`: from a group-stop, let the thread sit in group-stop
/// while still being traced (it then reports again on `SIGCONT`).
pub fn listen(tid: i32) -> io::Result<()> {
    ptrace_int(PTRACE_LISTEN, tid, 0, 0, "PTRACE_LISTEN").map(|_| ())
}

/// `PTRACE_DETACH`: the thread runs on untraced (or returns to group-stop
/// if its group is stopped, see the module docs).
pub fn detach(tid: i32) -> io::Result<()> {
    detach_with_signal(tid, 0)
}

/// `PTRACE_DETACH` delivering `sig`. The kernel honours `sig` only when the
/// thread is in a signal-delivery stop; in an interrupt/group/event stop it
/// is ignored (send it with [`tgkill`] before detaching instead).
pub fn detach_with_signal(tid: i32, sig: i32) -> io::Result<()> {
    let r = ptrace_int(PTRACE_DETACH, tid, 0, sig as usize, "PTRACE_DETACH");
    if r.is_ok() {
        forget(tid);
    }
    r.map(|_| ())
}

/// Lets go of a tracee that is gone or going (a detach failed with
/// `ESRCH`, or its exit was waited for): collects its exit notification if
/// it is there, so that it does not linger as a zombie tied to this
/// thread, and forgets its options.
pub fn forget_gone(tid: i32) {
    let _ = waitpid_raw(tid, libc::WNOHANG);
    forget(tid);
}

/// `tgkill(tgid, tid, sig)`.
pub fn tgkill(tgid: i32, tid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: tgkill takes three integers and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            tgid as c_long,
            tid as c_long,
            sig as c_long,
        )
    };
    if r == -1 {
        return Err(err::last(format_args!("tgkill({tgid}, {tid}, {sig})")));
    }
    Ok(())
}

/// What a traced thread is doing, as reported by `waitpid(__WALL)` or, for
/// the current stop, by [`stop_kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `PTRACE_EVENT_STOP` with SIGTRAP: stopped by [`interrupt`] (also the
    /// first stop of an auto-attached new thread, and the `PTRACE_LISTEN`
    /// notification). Registers may be read and written; syscalls may be
    /// injected.
    Interrupt,
    /// `PTRACE_EVENT_STOP` with a stop signal (SIGSTOP, SIGTSTP, SIGTTIN or
    /// SIGTTOU): the thread is in group-stop. Same abilities as `Interrupt`.
    Group(i32),
    /// Another `PTRACE_EVENT_*` stop (see `EVENT_*`), with the
    /// `PTRACE_GETEVENTMSG` value (e.g. the new tid for `EVENT_CLONE`).
    Event { event: i32, msg: u64 },
    /// A syscall-entry or syscall-exit stop (`SIGTRAP | 0x80`); which one:
    /// [`get_syscall_info`].
    Syscall,
    /// A signal-delivery stop: the signal is about to be delivered. Resume
    /// with the signal to deliver it, with 0 to suppress it.
    Signal(i32),
    /// The thread exited with this status (it is reaped).
    Exited(i32),
    /// The thread was killed by a signal (it is reaped).
    Killed { sig: i32, core: bool },
}

impl Stop {
    /// True for the stops in which a frozen thread rests and from which
    /// syscalls can be injected: [`Stop::Interrupt`] and [`Stop::Group`].
    pub fn is_event_stop(&self) -> bool {
        matches!(self, Stop::Interrupt | Stop::Group(_))
    }

    /// True when the thread is gone.
    pub fn is_exit(&self) -> bool {
        matches!(self, Stop::Exited(_) | Stop::Killed { .. })
    }
}

fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

fn classify(tid: i32, status: i32) -> io::Result<Stop> {
    if libc::WIFEXITED(status) {
        forget(tid);
        return Ok(Stop::Exited(libc::WEXITSTATUS(status)));
    }
    if libc::WIFSIGNALED(status) {
        forget(tid);
        return Ok(Stop::Killed {
            sig: libc::WTERMSIG(status),
            core: libc::WCOREDUMP(status),
        });
    }
    if !libc::WIFSTOPPED(status) {
        return Err(err::other(format!(
            "waitpid tid {tid}: unexpected status {status:#x}"
        )));
    }
    let sig = libc::WSTOPSIG(status);
    let event = (status >> 16) & 0xff;
    Ok(match event {
        0 if sig == (libc::SIGTRAP | 0x80) => Stop::Syscall,
        0 => Stop::Signal(sig),
        EVENT_STOP if is_stop_signal(sig) => Stop::Group(sig),
        EVENT_STOP => Stop::Interrupt,
        _ => event_stop(tid, event)?,
    })
}

fn event_stop(tid: i32, event: i32) -> io::Result<Stop> {
    let msg = get_event_msg(tid)?;
    if matches!(event, EVENT_CLONE | EVENT_FORK | EVENT_VFORK) && msg != 0 {
        if let Some(opts) = options_of(tid) {
            note_options(msg as i32, opts);
        }
    }
    Ok(Stop::Event { event, msg })
}

fn waitpid_raw(tid: i32, flags: i32) -> io::Result<Option<i32>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a live c_int the kernel writes the status to.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | flags) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err::context(format_args!("waitpid tid {tid}"), e));
        }
        if r == 0 {
            return Ok(None);
        }
        return Ok(Some(status));
    }
}

/// Waits (blocking) for the next stop or the exit of `tid`
/// (`waitpid(tid, __WALL)`), and classifies it.
pub fn wait_stop(tid: i32) -> io::Result<Stop> {
    match waitpid_raw(tid, 0)? {
        Some(status) => classify(tid, status),
        None => Err(err::other(format!("waitpid tid {tid}: no status"))),
    }
}

/// Like [`wait_stop`], but gives up after `timeout` and returns `None`
/// (the thread has not stopped: e.g. it sleeps uninterruptibly in `D`
/// state, or waits for a vfork child).
pub fn wait_stop_timeout(tid: i32, timeout: Duration) -> io::Result<Option<Stop>> {
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_micros(20);
    loop {
        if let Some(status) = waitpid_raw(tid, libc::WNOHANG)? {
            return classify(tid, status).map(Some);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(5));
    }
}

/// The kind of the stop `tid` is in now (from `PTRACE_GETSIGINFO`, so it
/// works after the `waitpid` status was consumed). Never returns
/// `Exited`/`Killed`; fails with ESRCH if `tid` is not stopped.
pub fn stop_kind(tid: i32) -> io::Result<Stop> {
    let si = get_siginfo(tid)?;
    let code = si.code();
    let signo = si.signo();
    if code > 0 && (code >> 8) == EVENT_STOP {
        return Ok(if is_stop_signal(signo) {
            Stop::Group(signo)
        } else {
            Stop::Interrupt
        });
    }
    if code > 0 && (code >> 8) != 0 && (code & 0xff) == libc::SIGTRAP {
        return event_stop(tid, code >> 8);
    }
    if code == (libc::SIGTRAP | 0x80) {
        return Ok(Stop::Syscall);
    }
    Ok(Stop::Signal(signo))
}

/// `PTRACE_GETEVENTMSG`.
pub fn get_event_msg(tid: i32) -> io::Result<u64> {
    let mut msg: u64 = 0;
    // SAFETY: PTRACE_GETEVENTMSG writes one unsigned long (8 bytes).
    unsafe { ptrace_buf(PTRACE_GETEVENTMSG, tid, 0, &mut msg, "PTRACE_GETEVENTMSG") }?;
    Ok(msg)
}

/// The general-purpose registers of a stopped thread (`PTRACE_GETREGS`).
pub fn get_regs(tid: i32) -> io::Result<Regs> {
    let mut regs = zeroed_regs();
    // SAFETY: PTRACE_GETREGS writes one struct user_regs_struct.
    unsafe { ptrace_buf(PTRACE_GETREGS, tid, 0, &mut regs, "PTRACE_GETREGS") }?;
    Ok(regs)
}

/// Sets all general-purpose registers of a stopped thread
/// (`PTRACE_SETREGS`; the kernel validates segment selectors and bases).
pub fn set_regs(tid: i32, regs: &Regs) -> io::Result<()> {
    let mut copy = *regs;
    // SAFETY: PTRACE_SETREGS reads one struct user_regs_struct.
    unsafe { ptrace_buf(PTRACE_SETREGS, tid, 0, &mut copy, "PTRACE_SETREGS") }?;
    Ok(())
}

/// All-zero registers (a starting point to fill in).
pub fn zeroed_regs() -> Regs {
    Regs {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        rbp: 0,
        rbx: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rax: 0,
        rcx: 0,
        rdx: 0,
        rsi: 0,
        rdi: 0,
        orig_rax: 0,
        rip: 0,
        cs: 0,
        eflags: 0,
        rsp: 0,
        ss: 0,
        fs_base: 0,
        gs_base: 0,
        ds: 0,
        es: 0,
        fs: 0,
        gs: 0,
    }
}

/// The 512-byte fxsave area (`PTRACE_GETFPREGS`, same as `NT_PRFPREG`).
pub fn get_fpregs(tid: i32) -> io::Result<FpRegs> {
    let mut fp = zeroed_fpregs();
    // SAFETY: PTRACE_GETFPREGS writes one struct user_fpregs_struct (512 bytes).
    unsafe { ptrace_buf(PTRACE_GETFPREGS, tid, 0, &mut fp, "PTRACE_GETFPREGS") }?;
    Ok(fp)
}

/// Sets the fxsave area (`PTRACE_SETFPREGS`).
pub fn set_fpregs(tid: i32, fp: &FpRegs) -> io::Result<()> {
    let mut copy = *fp;
    // SAFETY: PTRACE_SETFPREGS reads one struct user_fpregs_struct.
    unsafe { ptrace_buf(PTRACE_SETFPREGS, tid, 0, &mut copy, "PTRACE_SETFPREGS") }?;
    Ok(())
}

/// An all-zero fxsave area.
pub fn zeroed_fpregs() -> FpRegs {
    FpRegs {
        cwd: 0,
        swd: 0,
        ftw: 0,
        fop: 0,
        rip: 0,
        rdp: 0,
        mxcsr: 0,
        mxcr_mask: 0,
        st_space: [0; 32],
        xmm_space: [0; 64],
        padding: [0; 24],
    }
}

static XSTATE_SIZE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn regset_get(tid: i32, nt: usize, buf: &mut [u8], what: &str) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `iov` describes `buf`, live and exclusively borrowed; the
    // kernel writes at most iov_len bytes to it and updates iov_len.
    let r = unsafe {
        ptrace_raw(
            PTRACE_GETREGSET,
            tid,
            nt,
            &mut iov as *mut libc::iovec as usize,
        )
    };
    if r == -1 {
        return Err(err::last(format_args!("{what} tid {tid}")));
    }
    Ok(iov.iov_len)
}

/// The whole XSAVE area of a stopped thread (`PTRACE_GETREGSET
/// NT_X86_XSTATE`), in the kernel's user (standard, non-compacted) format:
/// 512 bytes of fxsave, the 64-byte xsave header (`xfeatures` at 512), then
/// the extended components at their CPUID offsets. Its length is the
/// kernel's user xstate size (found once by growing the buffer until the
/// kernel returns less than we offered).
pub fn get_xsave(tid: i32) -> io::Result<Vec<u8>> {
    use std::sync::atomic::Ordering;
    let known = XSTATE_SIZE.load(Ordering::Relaxed);
    let mut len = if known > 0 { known + 64 } else { 4096 };
    loop {
        let mut buf = vec![0u8; len];
        let got = regset_get(
            tid,
            NT_X86_XSTATE,
            &mut buf,
            "PTRACE_GETREGSET NT_X86_XSTATE",
        )?;
        if got < len {
            XSTATE_SIZE.store(got, Ordering::Relaxed);
            buf.truncate(got);
            return Ok(buf);
        }
        if len >= 1 << 20 {
            return Err(err::other(format!(
                "PTRACE_GETREGSET NT_X86_XSTATE tid {tid}: xstate larger than 1 MiB"
            )));
        }
        len *= 2;
    }
}

/// Sets the XSAVE area (`PTRACE_SETREGSET NT_X86_XSTATE`). `xsave` is in
/// the format [`get_xsave`] returns; its length must be a multiple of 8 and
/// at most the kernel's size; the kernel checks the header's `xfeatures`.
pub fn set_xsave(tid: i32, xsave: &[u8]) -> io::Result<()> {
    let mut copy = xsave.to_vec();
    let mut iov = libc::iovec {
        iov_base: copy.as_mut_ptr() as *mut c_void,
        iov_len: copy.len(),
    };
    // SAFETY: `iov` describes `copy`, live for the call; the kernel only
    // reads iov_len bytes from it.
    let r = unsafe {
        ptrace_raw(
            PTRACE_SETREGSET,
            tid,
            NT_X86_XSTATE,
            &mut iov as *mut libc::iovec as usize,
        )
    };
    if r == -1 {
        return Err(err::last(format_args!(
            "PTRACE_SETREGSET NT_X86_XSTATE tid {tid}"
        )));
    }
    Ok(())
}

/// A raw 128-byte `siginfo_t`, as CRIU's images store it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SigInfo {
    pub raw: [u8; 128],
}

impl SigInfo {
    fn i32_at(&self, off: usize) -> i32 {
        i32::from_ne_bytes(self.raw[off..off + 4].try_into().unwrap_or([0; 4]))
    }
    /// `si_signo`.
    pub fn signo(&self) -> i32 {
        self.i32_at(0)
    }
    /// `si_errno`.
    pub fn errno(&self) -> i32 {
        self.i32_at(4)
    }
    /// `si_code`.
    pub fn code(&self) -> i32 {
        self.i32_at(8)
    }
    /// `si_pid` (meaningful for kill/sigqueue/SIGCHLD-style siginfo).
    pub fn pid(&self) -> i32 {
        self.i32_at(16)
    }
    /// `si_uid` (same caveat).
    pub fn uid(&self) -> u32 {
        self.i32_at(20) as u32
    }
}

impl std::fmt::Debug for SigInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigInfo")
            .field("signo", &self.signo())
            .field("errno", &self.errno())
            .field("code", &self.code())
            .field("pid", &self.pid())
            .finish()
    }
}

/// The siginfo of the current stop (`PTRACE_GETSIGINFO`).
pub fn get_siginfo(tid: i32) -> io::Result<SigInfo> {
    let mut si = SigInfo { raw: [0; 128] };
    // SAFETY: PTRACE_GETSIGINFO writes one siginfo_t (128 bytes).
    unsafe { ptrace_buf(PTRACE_GETSIGINFO, tid, 0, &mut si.raw, "PTRACE_GETSIGINFO") }?;
    Ok(si)
}

/// Replaces the siginfo of the current signal-delivery stop
/// (`PTRACE_SETSIGINFO`).
pub fn set_siginfo(tid: i32, si: &SigInfo) -> io::Result<()> {
    let mut copy = si.raw;
    // SAFETY: PTRACE_SETSIGINFO reads one siginfo_t (128 bytes).
    unsafe { ptrace_buf(PTRACE_SETSIGINFO, tid, 0, &mut copy, "PTRACE_SETSIGINFO") }?;
    Ok(())
}

#[repr(C)]
struct PeekSigInfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// The signals queued and not yet delivered (`PTRACE_PEEKSIGINFO`):
/// the thread's private queue, or with `shared` the process-wide queue.
/// They stay queued.
pub fn peek_siginfo(tid: i32, shared: bool) -> io::Result<Vec<SigInfo>> {
    const BATCH: usize = 32;
    let mut out = Vec::new();
    loop {
        let mut args = PeekSigInfoArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: BATCH as i32,
        };
        let mut buf = [[0u8; 128]; BATCH];
        // SAFETY: `args` is a live PeekSigInfoArgs (the kernel reads it);
        // `buf` holds BATCH siginfo_t and the kernel writes at most
        // `args.nr` = BATCH of them.
        let r = unsafe {
            ptrace_raw(
                PTRACE_PEEKSIGINFO,
                tid,
                &mut args as *mut PeekSigInfoArgs as usize,
                buf.as_mut_ptr() as usize,
            )
        };
        if r == -1 {
            return Err(err::last(format_args!("PTRACE_PEEKSIGINFO tid {tid}")));
        }
        let n = r as usize;
        out.extend(buf[..n.min(BATCH)].iter().map(|raw| SigInfo { raw: *raw }));
        if n < BATCH {
            return Ok(out);
        }
    }
}

/// The blocked-signal mask (`PTRACE_GETSIGMASK`; bit `n-1` is signal `n`).
/// For a thread stopped inside `ppoll`/`pselect`/`sigsuspend`/
/// `epoll_pwait`, this is the thread's own mask (the kernel's
/// `saved_sigmask`), not the temporary one the call installed.
pub fn get_sigmask(tid: i32) -> io::Result<u64> {
    let mut mask: u64 = 0;
    // SAFETY: PTRACE_GETSIGMASK with addr = 8 writes one 8-byte sigset.
    unsafe { ptrace_buf(PTRACE_GETSIGMASK, tid, 8, &mut mask, "PTRACE_GETSIGMASK") }?;
    Ok(mask)
}

/// Sets the blocked-signal mask (`PTRACE_SETSIGMASK`; SIGKILL and SIGSTOP
/// are never blocked). Clears a pending "restore saved sigmask" of an
/// interrupted `ppoll`-style call: the restarted call installs its
/// temporary mask again.
pub fn set_sigmask(tid: i32, mask: u64) -> io::Result<()> {
    let mut m = mask;
    // SAFETY: PTRACE_SETSIGMASK with addr = 8 reads one 8-byte sigset.
    unsafe { ptrace_buf(PTRACE_SETSIGMASK, tid, 8, &mut m, "PTRACE_SETSIGMASK") }?;
    Ok(())
}

/// The rseq registration of a thread (`PTRACE_GET_RSEQ_CONFIGURATION`).
/// `rseq_abi_pointer == 0` means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct RseqConfig {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

/// `PTRACE_GET_RSEQ_CONFIGURATION` (Linux 5.13+).
pub fn get_rseq_config(tid: i32) -> io::Result<RseqConfig> {
    let mut c = RseqConfig::default();
    // SAFETY: addr = size of our struct; the kernel writes at most that much.
    unsafe {
        ptrace_buf(
            PTRACE_GET_RSEQ_CONFIGURATION,
            tid,
            std::mem::size_of::<RseqConfig>(),
            &mut c,
            "PTRACE_GET_RSEQ_CONFIGURATION",
        )
    }?;
    Ok(c)
}

/// If the stopped thread is inside an rseq critical section, does what the
/// kernel would do when it next returns to user space: moves `rip` to the
/// section's abort handler and clears the thread's `rseq->rseq_cs`. Returns
/// true if it did. `regs` must be the thread's current registers; they
/// are updated and written back. Does nothing (false) when the thread has
/// no rseq, is not in a section, or the section descriptor is invalid (the
/// kernel then kills the thread itself on resume).
///
/// The dump's freezer and `Injector::new` call this, so a frozen thread
/// is never inside a critical section: the registers a dump reads are the
/// ones the thread would resume with.
pub fn rseq_abort_fixup(tid: i32, regs: &mut Regs) -> io::Result<bool> {
    let cfg = match get_rseq_config(tid) {
        Ok(c) => c,
        Err(e)
            if err::errno_of(&e) == Some(libc::EIO) || err::errno_of(&e) == Some(libc::EINVAL) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    if cfg.rseq_abi_pointer == 0 {
        return Ok(false);
    }
    let cs_field = cfg.rseq_abi_pointer + 8;
    let mut w = [0u8; 8];
    if remote::read_exact(tid, cs_field, &mut w).is_err() {
        return Ok(false);
    }
    let cs_ptr = u64::from_ne_bytes(w);
    if cs_ptr == 0 {
        return Ok(false);
    }
    let mut cs = [0u8; 32];
    if remote::read_exact(tid, cs_ptr, &mut cs).is_err() {
        return Ok(false);
    }
    let u64_at = |o: usize| u64::from_ne_bytes(cs[o..o + 8].try_into().unwrap_or([0; 8]));
    let version = u32::from_ne_bytes(cs[0..4].try_into().unwrap_or([0; 4]));
    let (start, post_commit, abort) = (u64_at(8), u64_at(16), u64_at(24));
    use super::TASK_SIZE;
    let valid = version == 0
        && start < TASK_SIZE
        && start
            .checked_add(post_commit)
            .is_some_and(|e| e < TASK_SIZE)
        && abort < TASK_SIZE
        && abort.wrapping_sub(start) >= post_commit;
    if !valid || regs.rip.wrapping_sub(start) >= post_commit {
        return Ok(false);
    }
    remote::write_all(tid, cs_field, &0u64.to_ne_bytes())
        .map_err(|e| err::context(format_args!("rseq fixup tid {tid}"), e))?;
    regs.rip = abort;
    set_regs(tid, regs)?;
    Ok(true)
}

/// What `PTRACE_GET_SYSCALL_INFO` says about the current stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallInfo {
    /// `AUDIT_ARCH_*` of the thread (0xc000003e for x86-64).
    pub arch: u32,
    pub instruction_pointer: u64,
    pub stack_pointer: u64,
    pub op: SyscallOp,
}

/// The syscall state at a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallOp {
    /// Not a syscall-stop (interrupt, group, signal or event stop). A
    /// thread interrupted *inside* a blocking syscall is in this state too;
    /// see [`interrupted_syscall`].
    None,
    /// Syscall-entry stop.
    Entry { nr: u64, args: [u64; 6] },
    /// Syscall-exit stop.
    Exit { rval: i64, is_error: bool },
    /// `PTRACE_EVENT_SECCOMP` stop.
    Seccomp {
        nr: u64,
        args: [u64; 6],
        ret_data: u32,
    },
}

/// `PTRACE_GET_SYSCALL_INFO`. Needs `PTRACE_O_TRACESYSGOOD` to recognise
/// syscall-stops (which [`seize`] sets).
pub fn get_syscall_info(tid: i32) -> io::Result<SyscallInfo> {
    let mut buf = [0u64; 11];
    // SAFETY: addr = buffer size (88 bytes); the kernel writes at most that much.
    unsafe {
        ptrace_buf(
            PTRACE_GET_SYSCALL_INFO,
            tid,
            88,
            &mut buf,
            "PTRACE_GET_SYSCALL_INFO",
        )
    }?;
    let op = (buf[0] & 0xff) as u8;
    let arch = (buf[0] >> 32) as u32;
    let args = [buf[4], buf[5], buf[6], buf[7], buf[8], buf[9]];
    let op = match op {
        1 => SyscallOp::Entry { nr: buf[3], args },
        2 => SyscallOp::Exit {
            rval: buf[3] as i64,
            is_error: buf[4] & 0xff != 0,
        },
        3 => SyscallOp::Seccomp {
            nr: buf[3],
            args,
            ret_data: buf[10] as u32,
        },
        _ => SyscallOp::None,
    };
    Ok(SyscallInfo {
        arch,
        instruction_pointer: buf[1],
        stack_pointer: buf[2],
        op,
    })
}

/// A syscall a stopped thread was inside when it was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterruptedSyscall {
    /// The syscall number (`orig_rax`).
    pub nr: u64,
    /// The restart code in `rax`, as a positive number: [`ERESTARTSYS`],
    /// [`ERESTARTNOINTR`], [`ERESTARTNOHAND`] or [`ERESTART_RESTARTBLOCK`].
    pub restart: i64,
}

/// Whether registers taken at an interrupt/group stop show a syscall that
/// was interrupted and will be restarted when the thread resumes
/// (`orig_rax >= 0` and `rax` = `-ERESTART*`). When the thread is resumed
/// from such a stop with these registers, the kernel sets `rax = orig_rax`
/// (or `__NR_restart_syscall`) and `rip -= 2`, re-entering the call. A
/// restore that puts such registers back on a thread in an interrupt stop
/// gets the same behaviour.
pub fn interrupted_syscall(regs: &Regs) -> Option<InterruptedSyscall> {
    let nr = regs.orig_rax as i64;
    let rax = regs.rax as i64;
    if nr >= 0 && (-ERESTART_RESTARTBLOCK..=-ERESTARTSYS).contains(&rax) && rax != -515 {
        Some(InterruptedSyscall {
            nr: nr as u64,
            restart: -rax,
        })
    } else {
        None
    }
}

// ---------------------------------------------------------------------
// Reaching an interrupt stop
// ---------------------------------------------------------------------

/// Where a seized and interrupted thread ended up ([`wait_event_stops`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// At rest in [`Stop::Interrupt`] or [`Stop::Group`].
    Stopped(Stop),
    /// Exited (its exit notification is consumed).
    Gone,
    /// Not stopped when the time was up.
    Timeout,
}

/// One non-blocking look at a seized, interrupted thread: stopped, gone,
/// or not yet (`None`). A signal-delivery stop on the way is passed on
/// (the signal is delivered, and a new interrupt makes the thread stop
/// right after the kernel has set up the handler frame, before any handler
/// code runs: any trap consumes a pending interrupt, so it is re-armed).
fn step_event_stop(tid: i32) -> io::Result<Option<Settled>> {
    let Some(status) = waitpid_raw(tid, libc::WNOHANG)? else {
        return Ok(None);
    };
    let stop = classify(tid, status)?;
    let sig = match stop {
        Stop::Interrupt | Stop::Group(_) => return Ok(Some(Settled::Stopped(stop))),
        Stop::Exited(_) | Stop::Killed { .. } => return Ok(Some(Settled::Gone)),
        Stop::Signal(sig) => sig,
        Stop::Syscall | Stop::Event { .. } => 0,
    };
    // ESRCH here means it died meanwhile: its exit is reported next.
    let r = interrupt(tid).and_then(|_| cont(tid, sig));
    match r {
        Err(e) if err::errno_of(&e) != Some(libc::ESRCH) => Err(e),
        _ => Ok(None),
    }
}

/// Waits until each of `tids` (seized and [`interrupt`]ed) rests in an
/// interrupt or group stop, or is gone, or `timeout` passes; a
/// signal-delivery stop on the way is passed on, so no signal is lost.
/// Looks at all of them in turn, so that no thread's report waits behind
/// another's (a leader's exit is only reported after its other threads'
/// exits have been collected). Returns each tid's outcome, in order.
pub fn wait_event_stops(tids: &[i32], timeout: Duration) -> io::Result<Vec<(i32, Settled)>> {
    let deadline = Instant::now() + timeout;
    let mut out: Vec<(i32, Option<Settled>)> = tids.iter().map(|&t| (t, None)).collect();
    let mut nap = Duration::from_micros(20);
    loop {
        let mut open = 0;
        let mut progress = false;
        for (tid, res) in out.iter_mut() {
            if res.is_some() {
                continue;
            }
            match step_event_stop(*tid)? {
                Some(w) => {
                    *res = Some(w);
                    progress = true;
                }
                None => open += 1,
            }
        }
        if open == 0 {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if progress {
            nap = Duration::from_micros(20);
        } else {
            std::thread::sleep(nap.min(deadline - now));
            nap = (nap * 2).min(Duration::from_millis(5));
        }
    }
    Ok(out
        .into_iter()
        .map(|(t, r)| (t, r.unwrap_or(Settled::Timeout)))
        .collect())
}

fn wait_event_stop(tid: i32, timeout: Duration) -> io::Result<Settled> {
    Ok(wait_event_stops(&[tid], timeout)?
        .pop()
        .map(|(_, w)| w)
        .unwrap_or(Settled::Timeout))
}

/// Brings a traced, stopped thread to an interrupt (or group) stop — the
/// stop syscalls can be injected from — from any other stop (syscall,
/// event or signal-delivery stop; a pending signal is delivered on the
/// way, as in [`wait_event_stops`]). Returns the new stop. Fails if the
/// thread exits.
pub fn to_event_stop(tid: i32) -> io::Result<Stop> {
    let now = stop_kind(tid)?;
    if now.is_event_stop() {
        return Ok(now);
    }
    let sig = if let Stop::Signal(s) = now { s } else { 0 };
    interrupt(tid)?;
    cont(tid, sig)?;
    match wait_event_stop(tid, Duration::from_secs(3600))? {
        Settled::Stopped(s) => Ok(s),
        Settled::Gone => Err(err::os(
            format_args!("tid {tid} exited while being stopped"),
            libc::ESRCH,
        )),
        Settled::Timeout => Err(err::other(format!("tid {tid} did not stop"))),
    }
}
