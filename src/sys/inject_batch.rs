//! Many injected syscalls in one resumption of the thread.
//!
//! [`Injector::syscall`] costs two ptrace stops per call (entry and exit)
//! and a few ptrace requests around them: tens of microseconds. A dump
//! reads some seventy values per task that way (signal actions, timers,
//! prctl state). [`Injector::syscalls`] writes the calls into a table in
//! the target, points the thread at a small runner ([`BATCH_CODE`]) that
//! makes them back to back, and takes the thread back at the `int3` that
//! ends the runner.
//!
//! The trap raises SIGTRAP through the kernel's `force_sig`, which resets
//! the handler to SIG_DFL if the signal is blocked or ignored. So during a
//! run SIGTRAP alone is unblocked, and runs are used only where the task
//! neither ignores SIGTRAP nor has one pending (that one would be taken
//! for ours): then the trap is seen by the tracer as a signal-delivery
//! stop and suppressed, and nothing the task can see has changed. Where
//! that does not hold, the calls are made one by one.

use super::{err, ptrace, remote, Injector, Stop, PAGE};
use std::io;

/// The batch runner: for each 64-byte entry {nr, a1..a6, result} at rbx,
/// r12 entries: load, `syscall`, store rax, next; then `int3`.
pub const BATCH_CODE: [u8; 43] = [
    0x48, 0x8b, 0x03, // mov rax,[rbx]
    0x48, 0x8b, 0x7b, 0x08, // mov rdi,[rbx+8]
    0x48, 0x8b, 0x73, 0x10, // mov rsi,[rbx+16]
    0x48, 0x8b, 0x53, 0x18, // mov rdx,[rbx+24]
    0x4c, 0x8b, 0x53, 0x20, // mov r10,[rbx+32]
    0x4c, 0x8b, 0x43, 0x28, // mov r8,[rbx+40]
    0x4c, 0x8b, 0x4b, 0x30, // mov r9,[rbx+48]
    0x0f, 0x05, // syscall
    0x48, 0x89, 0x43, 0x38, // mov [rbx+56],rax
    0x48, 0x83, 0xc3, 0x40, // add rbx,64
    0x49, 0xff, 0xcc, // dec r12
    0x75, 0xd6, // jnz loop
    0xcc, // int3
];

/// Bytes of call table: 256 calls per run.
const TABLE: u64 = 16 << 10;
/// Fewer calls than this go one by one until the runner is mapped (mapping
/// it costs a few calls itself).
const MIN_RUN: usize = 4;

/// Where the runner and its table are in the target: one page of code
/// (read and execute), then the table, then `extra` bytes of scratch
/// memory mapped with them (one mapping instead of two).
#[derive(Debug, Clone, Copy)]
pub(super) struct Area {
    code: u64,
    extra: u64,
}

impl Area {
    pub(super) fn addr(&self) -> u64 {
        self.code
    }
    pub(super) fn len(&self) -> u64 {
        PAGE + TABLE + self.extra
    }
    fn table(&self) -> u64 {
        self.code + PAGE
    }
    /// The scratch memory after the table, if any: (address, length).
    pub(super) fn extra(&self) -> Option<(u64, u64)> {
        (self.extra > 0).then(|| (self.code + PAGE + TABLE, self.extra))
    }
}

/// Whether a run's trap would go unnoticed, from the thread's status
/// lines SigPnd, ShdPnd and SigIgn: SIGTRAP neither pending (thread or
/// process) nor ignored; an unreadable field counts as "yes".
pub(super) fn trap_unnoticed(masks: [Option<String>; 3]) -> bool {
    let bit = 1u64 << (libc::SIGTRAP - 1);
    masks.iter().all(|v| {
        v.as_deref()
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .is_some_and(|m| m & bit == 0)
    })
}

impl Injector {
    /// Runs `calls` (syscall number, arguments) in order and returns each
    /// raw result (`-errno` on failure), as [`Injector::syscall`] one by
    /// one would, in as few resumptions of the thread as is safe (see the
    /// module docs). Pointer arguments must point into the target.
    pub fn syscalls(&mut self, calls: &[(i64, [u64; 6])]) -> io::Result<Vec<i64>> {
        // Once the runner is mapped, even one call is cheaper through it
        // (one stop instead of two).
        let few = calls.len() < MIN_RUN && self.batch.is_none();
        if few || !self.can_batch() {
            return calls.iter().map(|&(nr, a)| self.syscall(nr, a)).collect();
        }
        let area = self.batch_area()?;
        let mut out = Vec::with_capacity(calls.len());
        for chunk in calls.chunks((TABLE / 64) as usize) {
            out.extend(self.run(area, chunk)?);
        }
        Ok(out)
    }

    /// Whether [`Injector::syscalls`] makes its calls in runs (one stop
    /// per 256 calls) rather than one by one (two stops per call).
    pub fn runs_calls(&self) -> bool {
        self.can_batch()
    }

    /// Whether a run's trap would go unnoticed (see [`trap_unnoticed`]).
    pub(super) fn can_batch(&self) -> bool {
        self.batch_ok
    }

    /// Maps the runner and its table (unmapped by `finish`).
    fn batch_area(&mut self) -> io::Result<Area> {
        match self.batch {
            Some(a) => Ok(a),
            None => self.map_batch_area(0),
        }
    }

    /// Maps the runner, its table and `extra` bytes (a multiple of the
    /// page size) of read/write memory after them, all unmapped by
    /// `finish`.
    ///
    /// Mapped writable and executable in one call, which spares an
    /// `mprotect` (two stops of the thread; the task is stopped, and only
    /// the runner runs there). Where that is refused (a security module,
    /// or the task's memory-deny-write-execute, `PR_SET_MDWE`), mapped
    /// read and execute, the runner written in through `/proc/PID/mem`
    /// (as a debugger sets a breakpoint), and the rest made read/write, as
    /// CRIU maps its parasite: no page is both writable and executable,
    /// and none gains execute.
    pub(super) fn map_batch_area(&mut self, extra: u64) -> io::Result<Area> {
        let mut area = Area { code: 0, extra };
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let (r, w, x) = (libc::PROT_READ, libc::PROT_WRITE, libc::PROT_EXEC);
        if let Ok(code) = self.remote_mmap(0, area.len(), r | w | x, flags, -1, 0) {
            area.code = code;
            self.batch = Some(area);
            remote::write_all(self.tid, code, &BATCH_CODE)?;
            return Ok(area);
        }
        area.code = self.remote_mmap(0, area.len(), r | x, flags, -1, 0)?;
        self.batch = Some(area);
        remote::mem_write(self.tid, area.code, &BATCH_CODE)?;
        self.remote_mprotect(area.code + PAGE, area.len() - PAGE, r | w)?;
        Ok(area)
    }

    /// One run of at most `TABLE / 64` calls.
    fn run(&mut self, area: Area, calls: &[(i64, [u64; 6])]) -> io::Result<Vec<i64>> {
        let tid = self.tid;
        let n = calls.len();
        let ctx = |e: io::Error| err::context(format_args!("run {n} calls in tid {tid}"), e);
        let mut t = Vec::with_capacity(n * 64);
        for (nr, a) in calls {
            t.extend_from_slice(&nr.to_le_bytes());
            for v in a {
                t.extend_from_slice(&v.to_le_bytes());
            }
            t.extend_from_slice(&0u64.to_le_bytes());
        }
        remote::write_all(tid, area.table(), &t).map_err(ctx)?;
        let mut r = self.orig_regs;
        r.rip = area.code;
        r.rbx = area.table();
        r.r12 = n as u64;
        r.rax = 0;
        r.orig_rax = u64::MAX;
        ptrace::set_regs(tid, &r).map_err(ctx)?;
        self.moved = true;
        ptrace::set_sigmask(tid, !(1u64 << (libc::SIGTRAP - 1))).map_err(ctx)?;
        self.masked = true;
        let end = area.code + BATCH_CODE.len() as u64;
        ptrace::cont(tid, 0).map_err(ctx)?;
        loop {
            match ptrace::wait_stop(tid).map_err(ctx)? {
                Stop::Signal(libc::SIGTRAP) => {
                    let at = ptrace::get_regs(tid).map_err(ctx)?.rip;
                    if at == end {
                        break;
                    }
                    // Sent from outside meanwhile: delivered again by
                    // `finish`, like any signal an injection holds back.
                    self.deferred.push(libc::SIGTRAP);
                    ptrace::cont(tid, 0).map_err(ctx)?;
                }
                Stop::Signal(sig)
                    if matches!(
                        sig,
                        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
                    ) =>
                {
                    let at = ptrace::get_regs(tid).map(|r| r.rip).unwrap_or(0);
                    return Err(err::other(format!(
                        "run {n} calls in tid {tid}: signal {sig} at {at:#x}"
                    )));
                }
                Stop::Signal(sig) => {
                    self.deferred.push(sig);
                    ptrace::cont(tid, 0).map_err(ctx)?;
                }
                s @ (Stop::Exited(_) | Stop::Killed { .. }) => {
                    self.finished = true;
                    return Err(err::os(
                        format_args!("run {n} calls in tid {tid}: the thread ended ({s:?})"),
                        libc::ESRCH,
                    ));
                }
                _ => ptrace::cont(tid, 0).map_err(ctx)?,
            }
        }
        ptrace::set_sigmask(tid, !0u64).map_err(ctx)?;
        let mut back = vec![0u8; t.len()];
        remote::read_exact(tid, area.table(), &mut back).map_err(ctx)?;
        Ok(back
            .chunks(64)
            .map(|c| i64::from_le_bytes(c[56..64].try_into().unwrap_or([0; 8])))
            .collect())
    }
}
