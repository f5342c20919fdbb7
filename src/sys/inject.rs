//! Running system calls inside a stopped tracee.
//!
//! # How
//!
//! [`Injector::new`] takes a thread that is a tracee of the calling thread
//! and rests in an interrupt or group stop (what a freeze leaves, or what
//! [`ptrace::to_event_stop`] makes). It saves the thread's
//! registers and blocked-signal mask and finds a `syscall` instruction
//! (`0f 05`) in the thread's address space, the *gate*: in the `[vdso]`
//! text if there is one, otherwise it patches two bytes at the thread's
//! `rip` through `/proc/PID/mem` (restored by `finish`; other threads of
//! the process must be stopped then, since they could run the patched
//! code).
//!
//! One [`Injector::syscall`]:
//! 1. on the first call, blocks every signal (`PTRACE_SETSIGMASK`), so that
//!    no signal can be dequeued, and so no handler can run, while we drive
//!    the thread (SIGKILL still kills it; for SIGSTOP see "Signals");
//! 2. sets `rax` = nr, `rdi, rsi, rdx, r10, r8, r9` = args, `rip` = gate and
//!    `orig_rax = -1`, so that a thread stopped inside an interrupted
//!    syscall does not get that syscall restarted over our registers;
//! 3. resumes with `PTRACE_SYSCALL` to the syscall-entry stop (checking
//!    with `PTRACE_GET_SYSCALL_INFO` that it is ours) and again to the
//!    syscall-exit stop, and reads `rax`.
//!
//! No breakpoint and no single-step is used: those raise SIGTRAP with
//! `force_sig`, which resets a blocked or ignored SIGTRAP's disposition to
//! SIG_DFL — a visible change to the target. Syscall-stops raise no signal.
//!
//! [`Injector::finish`] (and `Drop`): unmaps the scratch area and gate page
//! if any, brings the thread from the syscall-exit stop back to an
//! interrupt stop (`PTRACE_INTERRUPT` + `PTRACE_CONT`: the thread traps in
//! the kernel's signal path before running any user code), then puts back
//! the saved registers and signal mask exactly, and un-patches the gate.
//!
//! # Interrupted syscalls
//!
//! A thread frozen while blocked in, say, `read()` sits in an interrupt
//! stop with `rax = -ERESTARTSYS`, `orig_rax = 0` and `rip` just after its
//! `syscall` instruction ([`ptrace::interrupted_syscall`]). The kernel
//! decides to restart the call when the thread leaves that stop, from the
//! registers it has *then*. Because `finish` returns the thread to an
//! interrupt stop and puts the saved registers back, the syscall restarts
//! as if nothing happened (`read()` keeps waiting and gets the data written
//! later). Had we left the thread in the syscall-exit stop, `-ERESTARTSYS`
//! would leak to user space. Calls restarted through
//! `ERESTART_RESTARTBLOCK` (`nanosleep`, `poll`, `futex` with a timeout)
//! keep working unless you inject one of those same calls, which
//! overwrite the thread's restart block.
//!
//! A thread interrupted inside `ppoll`/`pselect`/`sigsuspend`/`epoll_pwait`
//! has a temporary signal mask: we save and restore its real mask
//! ([`ptrace::get_sigmask`] returns that), and the restarted call
//! installs its temporary mask again.
//!
//! # Syscall-stop vs interrupt stop
//!
//! Injection starts only from an interrupt or group stop (`new` refuses
//! other stops). From a syscall-entry stop, the kernel would run the
//! syscall in `orig_rax` after the stop — our registers would replace the
//! thread's pending call; from a syscall-exit or event stop (`clone`,
//! `exec`), the kernel is in the middle of the thread's own call and
//! writes its result over `rax` after we resume. Call
//! [`ptrace::to_event_stop`] first: it lets the thread's own call finish
//! (or be interrupted and marked for restart) and stops it in the signal
//! path, where the thread's user state is complete.
//!
//! # Signals
//!
//! With every signal blocked, signals sent meanwhile stay queued and are
//! delivered after the thread resumes: nothing is lost. The exceptions:
//! SIGKILL (the thread dies: every call then fails with a message naming
//! the tid) and SIGSTOP, which cannot be blocked: if it is dequeued during
//! an injection it is suppressed and sent again (with `tgkill`, so its
//! siginfo shows us as sender) by `finish`, after the mask is restored.
//!
//! # Side effects the target can see
//!
//! Only those of the syscalls you inject, plus: the scratch area and gate
//! page exist between creation and `finish` (a dump must read
//! `/proc/PID/maps` before creating them or skip [`Injector::scratch`] and
//! [`Injector::gate_page`]); the kernel clears `rseq->rseq_cs` when the
//! thread passes through user mode ([`ptrace::rseq_abort_fixup`] is
//! applied first, so a thread inside an rseq critical section is moved
//! to its abort handler, as the kernel would do anyway); with the `rip`
//! gate fallback, the patched text page becomes a private anonymous copy.
//! Seccomp: if the thread has a seccomp mode, `new` sets
//! `PTRACE_O_SUSPEND_SECCOMP` on it (kept until detach), so filters
//! cannot kill it for our calls.
//!
//! If you unmap or remap the gate (a restore rebuilding the address space
//! does), first move it with [`Injector::map_gate_page`] or
//! [`Injector::set_gate`]; executing at an unmapped gate raises a SIGSEGV
//! that the kernel forces (resetting that signal's handler to SIG_DFL).
//! The call that unmaps the gate itself may be the last one.

use std::io;
use std::marker::PhantomData;

use libc::c_long;

use super::err;
use super::procfs;
use super::ptrace::{self, Regs, Stop, SyscallOp};
use super::remote;

#[path = "inject_batch.rs"]
mod batch;
pub use batch::BATCH_CODE;

const PAGE: u64 = 4096;

/// The kernel's `struct sigaction` for `rt_sigaction` on x86-64 (not
/// glibc's): handler (or SIG_DFL = 0 / SIG_IGN = 1), `SA_*` flags,
/// restorer, and the 64-bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

impl KSigaction {
    fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&self.handler.to_ne_bytes());
        b[8..16].copy_from_slice(&self.flags.to_ne_bytes());
        b[16..24].copy_from_slice(&self.restorer.to_ne_bytes());
        b[24..32].copy_from_slice(&self.mask.to_ne_bytes());
        b
    }
    fn from_bytes(b: &[u8; 32]) -> Self {
        KSigaction {
            handler: u64_at(b, 0),
            flags: u64_at(b, 8),
            restorer: u64_at(b, 16),
            mask: u64_at(b, 24),
        }
    }
}

/// `stack_t` for `sigaltstack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SigAltStack {
    pub sp: u64,
    /// `SS_ONSTACK` = 1, `SS_DISABLE` = 2, `SS_AUTODISARM` = 1 << 31.
    pub flags: i32,
    pub size: u64,
}

/// `struct timeval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeVal {
    pub sec: i64,
    pub usec: i64,
}

/// `struct itimerval` (for `getitimer`/`setitimer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ITimerVal {
    pub interval: TimeVal,
    pub value: TimeVal,
}

/// `struct timespec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeSpec {
    pub sec: i64,
    pub nsec: i64,
}

/// `struct itimerspec` (for `timer_gettime`/`timer_settime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ITimerSpec {
    pub interval: TimeSpec,
    pub value: TimeSpec,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap_or([0; 8]))
}

fn i64_at(b: &[u8], off: usize) -> i64 {
    u64_at(b, off) as i64
}

/// Where [`Injector::create`] takes its gate from.
enum Gate {
    /// This address.
    At(u64),
    /// The first `syscall` instruction in the vDSO (at this range, if
    /// known).
    Search(Option<(u64, u64)>),
}

/// The address of the first `syscall` instruction in `start..end` of
/// `tid`'s memory, if it can be read and has one.
fn syscall_in(tid: i32, start: u64, end: u64) -> Option<u64> {
    let len = usize::try_from(end.checked_sub(start)?).ok()?;
    // A vDSO is two pages or so; anything much larger is not one.
    if len > 1 << 20 {
        return None;
    }
    let mut text = vec![0u8; len];
    remote::read_exact(tid, start, &mut text).ok()?;
    let i = text.windows(2).position(|w| w == [0x0f, 0x05])?;
    Some(start + i as u64)
}

/// A stopped thread we run syscalls in. See the module docs. `!Send`:
/// use it on the thread that traces the target.
#[derive(Debug)]
pub struct Injector {
    tid: i32,
    tgid: i32,
    orig_regs: Regs,
    orig_sigmask: u64,
    gate: u64,
    /// The gate was patched at this address over these bytes.
    poked: Option<(u64, [u8; 2])>,
    /// A gate page we mapped (address).
    gate_page: Option<u64>,
    /// All signals are blocked (must put `orig_sigmask` back).
    masked: bool,
    /// The thread has left its original stop (must be brought back).
    moved: bool,
    scratch: Option<(u64, usize)>,
    /// The batch runner, once mapped ([`Injector::syscalls`]).
    batch: Option<batch::Area>,
    /// Whether runs are safe here (read with the thread's status at
    /// creation).
    batch_ok: bool,
    deferred: Vec<i32>,
    finished: bool,
    _not_send: PhantomData<*const ()>,
}

impl Injector {
    /// Prepares to inject into `tid`, which must be a tracee of the calling
    /// thread (seized through [`ptrace`]) resting in an interrupt or group
    /// stop. Saves its registers and signal mask; finds the gate.
    pub fn new(tid: i32) -> io::Result<Injector> {
        Self::create(tid, Gate::Search(None))
    }

    /// Like [`Injector::new`], using the `syscall` instruction at `gate`
    /// (which must be `0f 05` in an executable mapping of the target).
    pub fn with_gate(tid: i32, gate: u64) -> io::Result<Injector> {
        Self::create(tid, Gate::At(gate))
    }

    /// [`Injector::new`] plus a scratch area of at least `len` bytes
    /// ([`Injector::ensure_scratch`]). `vdso`: where the caller saw the
    /// thread's `[vdso]` (start, end), which spares reading its maps to
    /// find the gate (still read should no gate be there).
    pub fn with_scratch(tid: i32, len: usize, vdso: Option<(u64, u64)>) -> io::Result<Injector> {
        let mut inj = Self::create(tid, Gate::Search(vdso))?;
        inj.ensure_scratch(len)?;
        Ok(inj)
    }

    fn create(tid: i32, gate: Gate) -> io::Result<Injector> {
        let ctx = |e: io::Error| err::context(format_args!("inject into tid {tid}"), e);
        let stop = ptrace::stop_kind(tid).map_err(ctx)?;
        if !stop.is_event_stop() {
            return Err(err::other(format!(
                "inject into tid {tid}: the thread is in {stop:?}, not an interrupt or group stop \
                 (use ptrace::to_event_stop first)"
            )));
        }
        let opts = ptrace::options_of(tid).ok_or_else(|| {
            err::other(format!(
                "inject into tid {tid}: not a tracee seized by this thread through crit::sys::ptrace"
            ))
        })?;
        let mut want = opts | ptrace::O_TRACESYSGOOD;
        let [seccomp, tgid, pnd, shd_pnd, ign] =
            procfs::status_fields(tid, ["Seccomp", "Tgid", "SigPnd", "ShdPnd", "SigIgn"])
                .map_err(ctx)?;
        let batch_ok = batch::trap_unnoticed([pnd, shd_pnd, ign]);
        let seccomp = seccomp.unwrap_or_default();
        if !seccomp.is_empty() && seccomp != "0" {
            want |= ptrace::O_SUSPEND_SECCOMP;
        }
        if want != opts {
            ptrace::set_options(tid, want).map_err(|e| {
                err::context(
                    format_args!(
                        "inject into tid {tid} (seccomp mode {seccomp}): setting ptrace options"
                    ),
                    e,
                )
            })?;
        }
        let mut regs = ptrace::get_regs(tid).map_err(ctx)?;
        if regs.cs != 0x33 {
            return Err(err::other(format!(
                "inject into tid {tid}: the thread runs in 32-bit mode (cs = {:#x}); not supported",
                regs.cs
            )));
        }
        ptrace::rseq_abort_fixup(tid, &mut regs).map_err(ctx)?;
        let sigmask = ptrace::get_sigmask(tid).map_err(ctx)?;
        let tgid = tgid.and_then(|s| s.parse().ok()).unwrap_or(tid);
        let mut inj = Injector {
            tid,
            tgid,
            orig_regs: regs,
            orig_sigmask: sigmask,
            gate: 0,
            poked: None,
            gate_page: None,
            masked: false,
            moved: false,
            scratch: None,
            batch: None,
            batch_ok,
            deferred: Vec::new(),
            finished: false,
            _not_send: PhantomData,
        };
        match gate {
            Gate::At(g) => inj.gate = g,
            Gate::Search(vdso) => inj.find_gate(vdso)?,
        }
        Ok(inj)
    }

    /// A `syscall` instruction in the `[vdso]` text (the range given, or
    /// the one maps shows), else the thread's `rip` patched.
    fn find_gate(&mut self, vdso: Option<(u64, u64)>) -> io::Result<()> {
        let tid = self.tid;
        if let Some(g) = vdso.and_then(|(start, end)| syscall_in(tid, start, end)) {
            self.gate = g;
            return Ok(());
        }
        let maps = procfs::maps(tid)
            .map_err(|e| err::context(format_args!("inject into tid {tid}"), e))?;
        if let Some(g) = maps
            .iter()
            .find(|m| m.name == "[vdso]" && m.perms.contains('x'))
            .and_then(|v| syscall_in(tid, v.start, v.end))
        {
            self.gate = g;
            return Ok(());
        }
        // No vdso (or no syscall in it): patch the instruction at rip.
        let rip = self.orig_regs.rip;
        let exec = maps
            .iter()
            .any(|m| m.start <= rip && rip + 2 <= m.end && m.perms.contains('x'));
        if !exec {
            return Err(err::other(format!(
                "inject into tid {tid}: no [vdso] with a syscall instruction, and rip {rip:#x} is not in an executable mapping"
            )));
        }
        let mut old = [0u8; 2];
        remote::mem_read(tid, rip, &mut old)?;
        remote::mem_write(tid, rip, &[0x0f, 0x05])?;
        self.poked = Some((rip, old));
        self.gate = rip;
        Ok(())
    }

    /// The thread.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// The registers saved at creation (what `finish` puts back).
    pub fn saved_regs(&self) -> &Regs {
        &self.orig_regs
    }

    /// Replaces the registers `finish` puts back (a restore sets the
    /// thread's final registers this way, so that they are applied after
    /// the last injected call).
    pub fn set_saved_regs(&mut self, regs: Regs) {
        self.orig_regs = regs;
    }

    /// The signal mask saved at creation (what `finish` puts back).
    pub fn saved_sigmask(&self) -> u64 {
        self.orig_sigmask
    }

    /// Replaces the signal mask `finish` puts back.
    pub fn set_saved_sigmask(&mut self, mask: u64) {
        self.orig_sigmask = mask;
    }

    /// The address of the `syscall` instruction in use.
    pub fn gate(&self) -> u64 {
        self.gate
    }

    /// Uses the `syscall` instruction at `gate` from now on.
    pub fn set_gate(&mut self, gate: u64) {
        self.gate = gate;
    }

    /// Maps one page holding a `syscall` instruction (read+exec, private
    /// anonymous) at `at` (exactly, with `MAP_FIXED_NOREPLACE`) or where
    /// the kernel likes (`None`), and uses it as the gate from now on. The
    /// page is unmapped by `finish`. For a restore that is about to unmap
    /// everything else (vdso included). Returns its address.
    pub fn map_gate_page(&mut self, at: Option<u64>) -> io::Result<u64> {
        let flags = libc::MAP_PRIVATE
            | libc::MAP_ANONYMOUS
            | if at.is_some() {
                libc::MAP_FIXED_NOREPLACE
            } else {
                0
            };
        let addr = self.remote_mmap(
            at.unwrap_or(0),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )?;
        if let Some(want) = at {
            if addr != want {
                let _ = self.remote_munmap(addr, PAGE);
                return Err(err::other(format!(
                    "inject into tid {}: gate page wanted at {want:#x}, got {addr:#x}",
                    self.tid
                )));
            }
        }
        let r = remote::write_all(self.tid, addr, &[0x0f, 0x05, 0xcc, 0xcc])
            .and_then(|_| self.remote_mprotect(addr, PAGE, libc::PROT_READ | libc::PROT_EXEC));
        if let Err(e) = r {
            let _ = self.remote_munmap(addr, PAGE);
            return Err(e);
        }
        if let Some(old) = self.gate_page.take() {
            let _ = self.remote_munmap(old, PAGE);
        }
        self.gate_page = Some(addr);
        self.gate = addr;
        Ok(addr)
    }

    /// The gate page mapped by [`Injector::map_gate_page`], if any.
    pub fn gate_page(&self) -> Option<(u64, usize)> {
        self.gate_page.map(|a| (a, PAGE as usize))
    }

    /// Runs syscall `nr` with `args` in the thread and returns the raw
    /// result as the kernel gives it (`-errno` in -4095..-1 on failure).
    /// Errors are about the injection itself (the thread died, a ptrace
    /// call failed, the gate faulted), and name the tid and nr.
    pub fn syscall(&mut self, nr: i64, args: [u64; 6]) -> io::Result<i64> {
        let tid = self.tid;
        if self.finished {
            return Err(err::other(format!(
                "inject syscall {nr} into tid {tid}: injector already finished"
            )));
        }
        let ctx =
            |e: io::Error| err::context(format_args!("inject syscall {nr} into tid {tid}"), e);
        if !self.masked {
            ptrace::set_sigmask(tid, !0u64).map_err(ctx)?;
            self.masked = true;
        }
        let mut r = self.orig_regs;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        r.rip = self.gate;
        r.rdi = args[0];
        r.rsi = args[1];
        r.rdx = args[2];
        r.r10 = args[3];
        r.r8 = args[4];
        r.r9 = args[5];
        ptrace::set_regs(tid, &r).map_err(ctx)?;
        self.moved = true;
        ptrace::cont_syscall(tid, 0).map_err(ctx)?;
        self.wait_syscall_stop(nr, true)?;
        match ptrace::get_syscall_info(tid).map_err(ctx)?.op {
            SyscallOp::Entry { nr: got, .. } if got as i64 == nr => {}
            other => {
                return Err(err::other(format!(
                    "inject syscall {nr} into tid {tid}: expected its entry stop, got {other:?}"
                )))
            }
        }
        ptrace::cont_syscall(tid, 0).map_err(ctx)?;
        self.wait_syscall_stop(nr, false)?;
        let after = ptrace::get_regs(tid).map_err(ctx)?;
        Ok(after.rax as i64)
    }

    fn wait_syscall_stop(&mut self, nr: i64, entry: bool) -> io::Result<()> {
        let tid = self.tid;
        let ctx =
            |e: io::Error| err::context(format_args!("inject syscall {nr} into tid {tid}"), e);
        loop {
            match ptrace::wait_stop(tid).map_err(ctx)? {
                Stop::Syscall => return Ok(()),
                Stop::Signal(sig) => {
                    if entry
                        && matches!(
                            sig,
                            libc::SIGSEGV
                                | libc::SIGBUS
                                | libc::SIGILL
                                | libc::SIGTRAP
                                | libc::SIGFPE
                        )
                    {
                        return Err(err::other(format!(
                            "inject syscall {nr} into tid {tid}: signal {sig} at the gate {:#x} (not mapped executable?)",
                            self.gate
                        )));
                    }
                    self.deferred.push(sig);
                    ptrace::cont_syscall(tid, 0).map_err(ctx)?;
                }
                Stop::Interrupt | Stop::Group(_) | Stop::Event { .. } => {
                    ptrace::cont_syscall(tid, 0).map_err(ctx)?;
                }
                s @ (Stop::Exited(_) | Stop::Killed { .. }) => {
                    self.finished = true;
                    return Err(err::os(
                        format_args!(
                            "inject syscall {nr} into tid {tid}: the thread ended ({s:?})"
                        ),
                        libc::ESRCH,
                    ));
                }
            }
        }
    }

    /// A raw result as an error naming the call `what` and the thread,
    /// if it is `-errno`.
    pub fn check(&self, what: &str, r: i64) -> io::Result<i64> {
        if (-4095..0).contains(&r) {
            return Err(err::os(
                format_args!("injected {what} in tid {}", self.tid),
                (-r) as i32,
            ));
        }
        Ok(r)
    }

    /// Ensures a private anonymous read/write scratch area of at least
    /// `len` bytes exists in the target (mapping a new one if the current
    /// one is smaller) and returns its address. Unmapped by `finish`.
    pub fn ensure_scratch(&mut self, len: usize) -> io::Result<u64> {
        if let Some((a, l)) = self.scratch {
            if l >= len {
                return Ok(a);
            }
            self.release_scratch()?;
        }
        let size = (len.max(1) as u64).div_ceil(PAGE) * PAGE;
        // The first scratch of an injector that can run batches goes
        // after the runner's table: one mmap and one munmap fewer (each
        // two stops of the thread).
        if self.batch.is_none() && self.can_batch() {
            if let Some((a, l)) = self.map_batch_area(size)?.extra() {
                self.scratch = Some((a, l as usize));
                return Ok(a);
            }
        }
        let a = self.remote_mmap(
            0,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )?;
        self.scratch = Some((a, size as usize));
        Ok(a)
    }

    /// The scratch area (address, length), if mapped.
    pub fn scratch(&self) -> Option<(u64, usize)> {
        self.scratch
    }

    /// Unmaps the scratch area now (one mapped with the batch runner goes
    /// with it, in `finish`).
    pub fn release_scratch(&mut self) -> io::Result<()> {
        if let Some((a, l)) = self.scratch.take() {
            let with_runner = self.batch.and_then(|b| b.extra()).is_some_and(|e| e.0 == a);
            if !with_runner {
                self.remote_munmap(a, l as u64)?;
            }
        }
        Ok(())
    }

    /// Writes `bytes` at `off` into the scratch area (growing it if
    /// needed) and returns their address in the target.
    pub fn write_scratch(&mut self, off: usize, bytes: &[u8]) -> io::Result<u64> {
        let base = self.ensure_scratch(off + bytes.len())?;
        remote::write_all(self.tid, base + off as u64, bytes)?;
        Ok(base + off as u64)
    }

    /// Reads `buf.len()` bytes at `off` of the scratch area.
    pub fn read_scratch(&mut self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        let base = self.ensure_scratch(off + buf.len())?;
        remote::read_exact(self.tid, base + off as u64, buf)
    }

    /// `mmap` in the target; returns the address. `fd` is the target's.
    pub fn remote_mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: i32,
        flags: i32,
        fd: i32,
        off: u64,
    ) -> io::Result<u64> {
        let r = self.syscall(
            libc::SYS_mmap,
            [addr, len, prot as u64, flags as u64, fd as i64 as u64, off],
        )?;
        if r == -(libc::ENOMEM as i64) {
            if let Some(why) = at_map_limit(self.tid) {
                return Err(err::os(
                    format_args!("injected mmap in tid {} ({why})", self.tid),
                    libc::ENOMEM,
                ));
            }
        }
        self.check("mmap", r).map(|a| a as u64)
    }

    /// `munmap` in the target.
    pub fn remote_munmap(&mut self, addr: u64, len: u64) -> io::Result<()> {
        let r = self.syscall(libc::SYS_munmap, [addr, len, 0, 0, 0, 0])?;
        self.check("munmap", r).map(|_| ())
    }

    /// `mprotect` in the target.
    pub fn remote_mprotect(&mut self, addr: u64, len: u64, prot: i32) -> io::Result<()> {
        let r = self.syscall(libc::SYS_mprotect, [addr, len, prot as u64, 0, 0, 0])?;
        self.check("mprotect", r).map(|_| ())
    }

    /// `mremap` in the target; returns the new address.
    pub fn remote_mremap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: i32,
        new_addr: u64,
    ) -> io::Result<u64> {
        let r = self.syscall(
            libc::SYS_mremap,
            [old, old_len, new_len, flags as u64, new_addr, 0],
        )?;
        self.check("mremap", r).map(|a| a as u64)
    }

    /// `prctl(option, args...)` in the target; returns its result. Pointer
    /// arguments must point into the target (use the scratch area).
    pub fn remote_prctl(&mut self, option: i32, args: [u64; 4]) -> io::Result<i64> {
        let r = self.syscall(
            libc::SYS_prctl,
            [option as u64, args[0], args[1], args[2], args[3], 0],
        )?;
        self.check("prctl", r)
    }

    /// `arch_prctl(code, addr)` in the target. For the `ARCH_GET_*` codes
    /// `addr` must point into the target (scratch). (`fs_base`/`gs_base`
    /// are also in [`ptrace::get_regs`].)
    pub fn remote_arch_prctl(&mut self, code: i32, addr: u64) -> io::Result<i64> {
        let r = self.syscall(libc::SYS_arch_prctl, [code as u64, addr, 0, 0, 0, 0])?;
        self.check("arch_prctl", r)
    }

    /// `rt_sigaction(sig, new, &old, 8)` in the target: installs `new` if
    /// given, and returns the action in effect before.
    pub fn remote_rt_sigaction(
        &mut self,
        sig: i32,
        new: Option<&KSigaction>,
    ) -> io::Result<KSigaction> {
        let base = self.ensure_scratch(64)?;
        let act = match new {
            Some(a) => self.write_scratch(0, &a.to_bytes())?,
            None => 0,
        };
        let r = self.syscall(
            libc::SYS_rt_sigaction,
            [sig as u64, act, base + 32, 8, 0, 0],
        )?;
        self.check(&format!("rt_sigaction({sig})"), r)?;
        let mut b = [0u8; 32];
        self.read_scratch(32, &mut b)?;
        Ok(KSigaction::from_bytes(&b))
    }

    /// `sigaltstack(new, &old)` in the target; returns the old stack.
    pub fn remote_sigaltstack(&mut self, new: Option<&SigAltStack>) -> io::Result<SigAltStack> {
        let base = self.ensure_scratch(48)?;
        let ss = match new {
            Some(s) => {
                let mut b = [0u8; 24];
                b[0..8].copy_from_slice(&s.sp.to_ne_bytes());
                b[8..12].copy_from_slice(&s.flags.to_ne_bytes());
                b[16..24].copy_from_slice(&s.size.to_ne_bytes());
                self.write_scratch(0, &b)?
            }
            None => 0,
        };
        let r = self.syscall(libc::SYS_sigaltstack, [ss, base + 24, 0, 0, 0, 0])?;
        self.check("sigaltstack", r)?;
        let mut b = [0u8; 24];
        self.read_scratch(24, &mut b)?;
        Ok(SigAltStack {
            sp: u64_at(&b, 0),
            flags: i32::from_ne_bytes(b[8..12].try_into().unwrap_or([0; 4])),
            size: u64_at(&b, 16),
        })
    }

    fn itimerval_bytes(v: &ITimerVal) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&v.interval.sec.to_ne_bytes());
        b[8..16].copy_from_slice(&v.interval.usec.to_ne_bytes());
        b[16..24].copy_from_slice(&v.value.sec.to_ne_bytes());
        b[24..32].copy_from_slice(&v.value.usec.to_ne_bytes());
        b
    }

    fn itimerval_from(b: &[u8; 32]) -> ITimerVal {
        ITimerVal {
            interval: TimeVal {
                sec: i64_at(b, 0),
                usec: i64_at(b, 8),
            },
            value: TimeVal {
                sec: i64_at(b, 16),
                usec: i64_at(b, 24),
            },
        }
    }

    /// `getitimer(which)` in the target (`ITIMER_REAL` = 0, `VIRTUAL` = 1,
    /// `PROF` = 2).
    pub fn remote_getitimer(&mut self, which: i32) -> io::Result<ITimerVal> {
        let base = self.ensure_scratch(32)?;
        let r = self.syscall(libc::SYS_getitimer, [which as u64, base, 0, 0, 0, 0])?;
        self.check(&format!("getitimer({which})"), r)?;
        let mut b = [0u8; 32];
        self.read_scratch(0, &mut b)?;
        Ok(Self::itimerval_from(&b))
    }

    /// `setitimer(which, new, &old)` in the target; returns the old value.
    pub fn remote_setitimer(&mut self, which: i32, new: &ITimerVal) -> io::Result<ITimerVal> {
        let base = self.ensure_scratch(64)?;
        self.write_scratch(0, &Self::itimerval_bytes(new))?;
        let r = self.syscall(
            libc::SYS_setitimer,
            [which as u64, base, base + 32, 0, 0, 0],
        )?;
        self.check(&format!("setitimer({which})"), r)?;
        let mut b = [0u8; 32];
        self.read_scratch(32, &mut b)?;
        Ok(Self::itimerval_from(&b))
    }

    /// `timer_gettime(id)` in the target (ids from `/proc/PID/timers`).
    pub fn remote_timer_gettime(&mut self, id: i32) -> io::Result<ITimerSpec> {
        let base = self.ensure_scratch(32)?;
        let r = self.syscall(libc::SYS_timer_gettime, [id as u64, base, 0, 0, 0, 0])?;
        self.check(&format!("timer_gettime({id})"), r)?;
        let mut b = [0u8; 32];
        self.read_scratch(0, &mut b)?;
        Ok(ITimerSpec {
            interval: TimeSpec {
                sec: i64_at(&b, 0),
                nsec: i64_at(&b, 8),
            },
            value: TimeSpec {
                sec: i64_at(&b, 16),
                nsec: i64_at(&b, 24),
            },
        })
    }

    /// The thread's `clear_child_tid` address (`prctl(PR_GET_TID_ADDRESS)`;
    /// needs CONFIG_CHECKPOINT_RESTORE).
    pub fn remote_get_tid_address(&mut self) -> io::Result<u64> {
        let base = self.ensure_scratch(8)?;
        self.remote_prctl(libc::PR_GET_TID_ADDRESS, [base, 0, 0, 0])?;
        let mut b = [0u8; 8];
        self.read_scratch(0, &mut b)?;
        Ok(u64::from_ne_bytes(b))
    }

    /// `set_tid_address(addr)` in the target (sets `clear_child_tid`).
    pub fn remote_set_tid_address(&mut self, addr: u64) -> io::Result<()> {
        let r = self.syscall(libc::SYS_set_tid_address, [addr, 0, 0, 0, 0, 0])?;
        self.check("set_tid_address", r).map(|_| ())
    }

    /// `set_robust_list(head, len)` in the target.
    pub fn remote_set_robust_list(&mut self, head: u64, len: u64) -> io::Result<()> {
        let r = self.syscall(libc::SYS_set_robust_list, [head, len, 0, 0, 0, 0])?;
        self.check("set_robust_list", r).map(|_| ())
    }

    /// Unmaps the scratch area and gate page, returns the thread to an
    /// interrupt (or group) stop with exactly the saved registers and
    /// signal mask, un-patches the gate and re-sends suppressed SIGSTOPs.
    /// Tries every step and returns the first failure.
    pub fn finish(mut self) -> io::Result<()> {
        self.restore()
    }

    fn restore(&mut self) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        let tid = self.tid;
        let mut first: Option<io::Error> = None;
        let mut keep = |r: io::Result<()>| {
            if let Err(e) = r {
                if first.is_none() {
                    first = Some(e);
                }
            }
        };
        keep(self.release_scratch());
        if let Some(a) = self.batch.take() {
            keep(self.remote_munmap(a.addr(), a.len()));
        }
        if let Some(p) = self.gate_page.take() {
            keep(self.remote_munmap(p, PAGE));
        }
        self.finished = true;
        if self.moved {
            keep(self.back_to_event_stop());
        }
        keep(ptrace::set_regs(tid, &self.orig_regs));
        if self.masked {
            keep(ptrace::set_sigmask(tid, self.orig_sigmask));
        }
        if let Some((addr, old)) = self.poked.take() {
            keep(remote::mem_write(tid, addr, &old));
        }
        for sig in std::mem::take(&mut self.deferred) {
            keep(ptrace::tgkill(self.tgid, tid, sig));
        }
        match first {
            Some(e) => Err(err::context(
                format_args!("finish injection into tid {tid}"),
                e,
            )),
            None => Ok(()),
        }
    }

    /// From the syscall-exit stop (or a signal stop after a gate fault) to
    /// an interrupt/group stop in the kernel's signal path.
    fn back_to_event_stop(&mut self) -> io::Result<()> {
        let tid = self.tid;
        if ptrace::stop_kind(tid)?.is_event_stop() {
            return Ok(());
        }
        ptrace::interrupt(tid)?;
        ptrace::cont(tid, 0)?;
        loop {
            match ptrace::wait_stop(tid)? {
                Stop::Interrupt | Stop::Group(_) => return Ok(()),
                Stop::Signal(sig) => {
                    if !matches!(
                        sig,
                        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGTRAP | libc::SIGFPE
                    ) {
                        self.deferred.push(sig);
                    }
                    ptrace::interrupt(tid)?;
                    ptrace::cont(tid, 0)?;
                }
                Stop::Syscall | Stop::Event { .. } => {
                    ptrace::interrupt(tid)?;
                    ptrace::cont(tid, 0)?;
                }
                s @ (Stop::Exited(_) | Stop::Killed { .. }) => {
                    return Err(err::os(
                        format_args!("tid {tid} ended ({s:?})"),
                        libc::ESRCH,
                    ));
                }
            }
        }
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

/// The robust-futex list head and length of thread `tid`
/// (`get_robust_list`, from outside; needs ptrace-read permission).
pub fn get_robust_list(tid: i32) -> io::Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: u64 = 0;
    // SAFETY: `head` and `len` are live u64s (pointer- and size_t-sized on
    // x86-64) the kernel writes one value each to.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid as c_long,
            &mut head as *mut u64,
            &mut len as *mut u64,
        )
    };
    if r == -1 {
        return Err(err::last(format_args!("get_robust_list tid {tid}")));
    }
    Ok((head, len))
}

/// Why an mmap in `tid` found no memory, when the reason is that its
/// process has as many mappings as `vm.max_map_count` allows (or all but
/// one: a new mapping may split another).
fn at_map_limit(tid: i32) -> Option<String> {
    let maps = std::fs::read(format!("/proc/{tid}/maps")).ok()?;
    let n = maps.iter().filter(|&&c| c == b'\n').count();
    let max: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (n + 1 >= max).then(|| format!("it has {n} mappings, and vm.max_map_count allows {max}"))
}
