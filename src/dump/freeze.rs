//! Freezing the tree and reading what only a tracer can read: registers,
//! FPU/xsave, TLS, signal masks, rseq, and (by syscalls injected into the
//! stopped threads) signal actions, itimers, sigaltstack, tid address,
//! brk, dumpable, securebits, child-subreaper. All kernel access goes
//! through crate::sys (ptrace, inject, remote, pidfd, tls).
//!
//! The freezer belongs to the thread that froze (ptrace is per thread):
//! the whole dump runs on one thread. Dropping [`Frozen`] detaches every
//! thread, so any early return leaves the tree running.

use super::core::{self as kcore, ThreadRegs};
use super::mm::MmExtra;
use super::tree;
use crate::error::{Error, Result};
use crate::image::pb;
use crate::sys::{inject::Injector, pidfd, ptrace, remote, tls};
use nix::libc;
use std::os::fd::OwnedFd;

#[derive(Debug, Clone, Default)]
pub struct ThreadExtra {
    pub tid_addr: u64,
    pub sas: pb::ThreadSasEntry,
}

#[derive(Debug, Clone, Default)]
pub struct TaskExtra {
    pub sigactions: Vec<pb::SaEntry>,
    pub itimers: [pb::ItimerEntry; 3],
    pub personality: u32,
    pub child_subreaper: bool,
    pub secbits: u32,
    pub pdeath_sig: u32,
    pub mm: MmExtra,
    pub threads: Vec<ThreadExtra>,
    pub posix_timers: Vec<pb::PosixTimerEntry>,
}

pub struct Frozen {
    inner: Option<ptrace::Frozen>,
    /// The tree in pstree order (depth first from the root).
    pub tasks: Vec<tree::Task>,
    /// Tasks that were in group-stop (stopped by a signal) when frozen.
    pub stopped: Vec<i32>,
    pidfds: std::cell::RefCell<std::collections::HashMap<i32, OwnedFd>>,
}

fn sys(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

impl Frozen {
    /// Stops every thread of every task of the tree rooted at `root`.
    pub fn freeze(root: i32) -> Result<Frozen> {
        let inner = ptrace::freeze_tree(root)?;
        if inner.task(root).map(|t| t.zombie).unwrap_or(false) {
            return Err(Error::msg(format!(
                "pid {root}: the root of the tree is a zombie (exited, not reaped); there is nothing to dump"
            )));
        }
        // Depth-first pstree order, children by pid, as CRIU writes it.
        let frozen = inner.tasks().to_vec();
        let mut order = Vec::new();
        let mut stack = vec![root];
        while let Some(pid) = stack.pop() {
            let Some(ft) = frozen.iter().find(|t| t.pid == pid) else {
                continue;
            };
            let stat = super::procfs::stat(pid)?;
            order.push(tree::Task {
                pid,
                ppid: ft.parent.unwrap_or(0),
                pgid: stat.pgid,
                sid: stat.sid,
                threads: if ft.zombie {
                    vec![pid]
                } else {
                    ft.threads.iter().map(|t| t.tid).collect()
                },
                stat,
                zombie: ft.zombie,
            });
            let mut kids: Vec<i32> = frozen
                .iter()
                .filter(|t| t.parent == Some(pid))
                .map(|t| t.pid)
                .collect();
            kids.sort();
            stack.extend(kids.into_iter().rev());
        }
        let stopped = frozen
            .iter()
            .filter(|t| {
                t.threads
                    .first()
                    .map(|th| matches!(th.stop, ptrace::Stop::Group(_)))
                    .unwrap_or(false)
            })
            .map(|t| t.pid)
            .collect();
        Ok(Frozen {
            inner: Some(inner),
            tasks: order,
            stopped,
            pidfds: Default::default(),
        })
    }

    /// Registers and per-thread state of a stopped thread.
    pub fn thread_regs(&self, tid: i32, te: &ThreadExtra) -> Result<ThreadRegs> {
        let r = ptrace::get_regs(tid).map_err(sys(format!("thread {tid}: registers")))?;
        if r.cs != 0x33 {
            return Err(Error::msg(format!(
                "thread {tid}: runs in 32-bit mode; not supported"
            )));
        }
        let gp = pb::UserX86RegsEntry {
            r15: r.r15,
            r14: r.r14,
            r13: r.r13,
            r12: r.r12,
            bp: r.rbp,
            bx: r.rbx,
            r11: r.r11,
            r10: r.r10,
            r9: r.r9,
            r8: r.r8,
            ax: r.rax,
            cx: r.rcx,
            dx: r.rdx,
            si: r.rsi,
            di: r.rdi,
            orig_ax: r.orig_rax,
            ip: r.rip,
            cs: r.cs,
            flags: r.eflags,
            sp: r.rsp,
            ss: r.ss,
            fs_base: r.fs_base,
            gs_base: r.gs_base,
            ds: r.ds,
            es: r.es,
            fs: r.fs,
            gs: r.gs,
            mode: Some(pb::UserX86RegsMode::Native as i32),
        };
        let xsave = ptrace::get_xsave(tid).map_err(sys(format!("thread {tid}: xsave")))?;
        let mut tlsv = Vec::new();
        for e in 12..15u32 {
            let d = tls::get_thread_area(tid, e)
                .map_err(sys(format!("thread {tid}: PTRACE_GET_THREAD_AREA {e}")))?;
            tlsv.push(kcore::user_desc(&d));
        }
        let blocked =
            ptrace::get_sigmask(tid).map_err(sys(format!("thread {tid}: signal mask")))?;
        let rc = ptrace::get_rseq_config(tid).map_err(sys(format!("thread {tid}: rseq")))?;
        let rseq = Some(pb::RseqEntry {
            rseq_abi_pointer: rc.rseq_abi_pointer,
            rseq_abi_size: rc.rseq_abi_size,
            signature: rc.signature,
            rseq_cs_pointer: None,
        });
        Ok(ThreadRegs {
            gp,
            xsave,
            tls: tlsv,
            blocked,
            rseq,
            clear_tid_addr: te.tid_addr,
            sas: te.sas,
        })
    }

    /// Task-wide and per-thread state read by injected syscalls. Every
    /// injection is undone (registers, mask, scratch memory) before this
    /// returns, also on failure.
    pub fn task_extra(&self, pid: i32, threads: &[i32]) -> Result<TaskExtra> {
        let mut x = TaskExtra {
            personality: u32::from_str_radix(
                super::procfs::read_string(pid, "personality")?.trim(),
                16,
            )
            .unwrap_or(0),
            ..Default::default()
        };
        x.posix_timers = posix_timers(pid)?;
        let r = inject_task(pid, &mut x);
        r?;
        for &tid in threads {
            super::guard::check()?;
            let mut inj =
                Injector::new(tid).map_err(sys(format!("pid {pid} thread {tid}: inject")))?;
            let res = (|| -> std::io::Result<ThreadExtra> {
                let tid_addr = inj.remote_get_tid_address()?;
                let ss = inj.remote_sigaltstack(None)?;
                Ok(ThreadExtra {
                    tid_addr,
                    sas: pb::ThreadSasEntry {
                        ss_sp: ss.sp,
                        ss_size: ss.size,
                        ss_flags: ss.flags as u32,
                    },
                })
            })();
            let fin = inj.finish();
            let te = res.map_err(sys(format!("pid {pid} thread {tid}: injected calls")))?;
            fin.map_err(sys(format!(
                "pid {pid} thread {tid}: restoring after injection"
            )))?;
            x.threads.push(te);
        }
        Ok(x)
    }

    /// Signals queued for `tid` (or, `shared`, for its whole process) and
    /// not yet delivered, as CRIU stores them (raw siginfo). They stay
    /// queued.
    pub fn pending(&self, tid: i32, shared: bool) -> Result<pb::SignalQueueEntry> {
        let v = ptrace::peek_siginfo(tid, shared)
            .map_err(sys(format!("thread {tid}: pending signals")))?;
        Ok(pb::SignalQueueEntry {
            signals: v
                .into_iter()
                .map(|si| pb::SiginfoEntry {
                    siginfo: si.raw.to_vec(),
                })
                .collect(),
        })
    }

    /// A copy of `pid`'s descriptor `fd` (pidfd_getfd).
    pub fn getfd(&self, pid: i32, fd: i32) -> Result<OwnedFd> {
        let mut m = self.pidfds.borrow_mut();
        let p = match m.entry(pid) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(pidfd::pidfd_open(pid).map_err(sys(format!("pid {pid}: pidfd_open")))?)
            }
        };
        pidfd::pidfd_getfd(p, fd).map_err(sys(format!("pid {pid} fd {fd}: pidfd_getfd")))
    }

    /// Lets the tree go: resumed as it was, or killed (`kill`).
    pub fn release(mut self, kill: bool) -> Result<()> {
        match self.inner.take() {
            Some(f) if kill => f.kill(),
            Some(f) => f.resume(),
            None => Ok(()),
        }
    }
}

/// Copies the (address, length) pieces of `pid`'s memory back to back
/// into `buf` (batched process_vm_readv); all or nothing. Needs no tracer,
/// so the page writer thread calls it.
pub fn read_mem(pid: i32, pieces: &[(u64, usize)], buf: &mut [u8]) -> Result<()> {
    let iov: Vec<remote::RemoteIoVec> = pieces
        .iter()
        .map(|&(base, len)| remote::RemoteIoVec { base, len })
        .collect();
    let want: usize = pieces.iter().map(|p| p.1).sum();
    let got = remote::read_ranges(pid, &mut buf[..want], &iov)
        .map_err(sys(format!("pid {pid}: reading memory")))?;
    if got != want {
        let at = pieces.first().map(|p| p.0).unwrap_or(0);
        return Err(Error::msg(format!(
            "pid {pid}: read {got} of {want} bytes of memory from {at:#x} on; a mapping changed under the dump"
        )));
    }
    Ok(())
}

/// The POSIX timers of `pid` as /proc/PID/timers lists them (values are
/// filled in by injected timer_gettime/timer_getoverrun).
fn posix_timers(pid: i32) -> Result<Vec<pb::PosixTimerEntry>> {
    let text = super::procfs::read_string(pid, "timers").unwrap_or_default();
    let bad = |l: &str| Error::msg(format!("pid {pid}: /proc/{pid}/timers: cannot parse {l:?}"));
    let mut out: Vec<pb::PosixTimerEntry> = Vec::new();
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("ID: ") {
            out.push(pb::PosixTimerEntry {
                it_id: v.trim().parse().map_err(|_| bad(l))?,
                ..Default::default()
            });
            continue;
        }
        let Some(t) = out.last_mut() else { continue };
        if let Some(v) = l.strip_prefix("signal: ") {
            let (sig, ptr) = v.split_once('/').ok_or_else(|| bad(l))?;
            t.si_signo = sig.trim().parse().map_err(|_| bad(l))?;
            t.sival_ptr = u64::from_str_radix(ptr.trim(), 16).unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("notify: ") {
            // "signal/pid.N", "thread/pid.N", "none/pid.N", "signal/tid.N"
            let (how, who) = v.split_once('/').ok_or_else(|| bad(l))?;
            if let Some(tid) = who.strip_prefix("tid.") {
                t.it_sigev_notify = 4; // SIGEV_THREAD_ID
                t.notify_thread_id = Some(tid.trim().parse().map_err(|_| bad(l))?);
            } else {
                t.it_sigev_notify = match how {
                    "signal" => 0,
                    "thread" => 2,
                    _ => 1, // SIGEV_NONE
                };
            }
        } else if let Some(v) = l.strip_prefix("ClockID: ") {
            t.clock_id = v.trim().parse().map_err(|_| bad(l))?;
        }
    }
    Ok(out)
}

const PR_GET_PDEATHSIG: i32 = 2;
const PR_GET_DUMPABLE: i32 = 3;
const PR_GET_SECUREBITS: i32 = 27;
const PR_GET_CHILD_SUBREAPER: i32 = 37;

fn inject_task(pid: i32, x: &mut TaskExtra) -> Result<()> {
    super::guard::check()?;
    let mut inj = Injector::with_scratch(pid, 64).map_err(sys(format!("pid {pid}: inject")))?;
    let res = (|| -> std::io::Result<()> {
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let a = inj.remote_rt_sigaction(sig, None)?;
            x.sigactions.push(pb::SaEntry {
                sigaction: a.handler,
                flags: a.flags,
                restorer: a.restorer,
                mask: a.mask,
                compat_sigaction: Some(false),
                mask_extended: None,
            });
        }
        for (i, t) in x.itimers.iter_mut().enumerate() {
            let v = inj.remote_getitimer(i as i32)?;
            *t = pb::ItimerEntry {
                isec: v.interval.sec as u64,
                iusec: v.interval.usec as u64,
                vsec: v.value.sec as u64,
                vusec: v.value.usec as u64,
            };
        }
        let (base, _) = inj.scratch().unwrap_or((0, 0));
        let mut b = [0u8; 4];
        inj.remote_prctl(PR_GET_CHILD_SUBREAPER, [base, 0, 0, 0])?;
        inj.read_scratch(0, &mut b)?;
        x.child_subreaper = u32::from_ne_bytes(b) != 0;
        inj.remote_prctl(PR_GET_PDEATHSIG, [base, 0, 0, 0])?;
        inj.read_scratch(0, &mut b)?;
        x.pdeath_sig = u32::from_ne_bytes(b);
        x.secbits = inj.remote_prctl(PR_GET_SECUREBITS, [0; 4])? as u32;
        x.mm.dumpable = inj.remote_prctl(PR_GET_DUMPABLE, [0; 4])? as i32;
        x.mm.brk = inj.syscall(libc::SYS_brk, [0; 6])? as u64;
        for t in x.posix_timers.iter_mut() {
            let v = inj.remote_timer_gettime(t.it_id as i32)?;
            t.isec = v.interval.sec as u64;
            t.insec = v.interval.nsec as u64;
            t.vsec = v.value.sec as u64;
            t.vnsec = v.value.nsec as u64;
            let o = inj.syscall(libc::SYS_timer_getoverrun, [t.it_id as u64, 0, 0, 0, 0, 0])?;
            t.overrun = if o < 0 { 0 } else { o as u32 };
        }
        Ok(())
    })();
    let fin = inj.finish();
    res.map_err(sys(format!("pid {pid}: injected calls")))?;
    fin.map_err(sys(format!("pid {pid}: restoring after injection")))?;
    Ok(())
}
