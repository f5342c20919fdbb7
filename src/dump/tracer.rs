//! What only the tracer of a stopped thread can read: registers,
//! FPU/xsave, TLS, signal mask, rseq and queued signals through ptrace,
//! and, by syscalls injected into the thread, signal actions, itimers,
//! POSIX timer values, sigaltstack, tid address, brk, dumpable,
//! securebits, pdeath signal and child-subreaper. Every thread passed in
//! must be frozen by the calling thread (see [`super::freeze`]).

use super::core::{self as kcore, ThreadRegs};
use super::error::{DumpError, ProcFault};
use super::mm::MmExtra;
use crate::error::Result;
use crate::image::pb;
use crate::sys::{inject::Injector, ptrace, tls};
use nix::libc;

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
    /// Memory-deny-write-execute is set (`PR_SET_MDWE`).
    pub mdwe: bool,
}

/// A failed call `what` on stopped thread `tid`.
fn on_thread(tid: i32, what: &'static str) -> impl FnOnce(std::io::Error) -> DumpError {
    move |source| DumpError::Thread { tid, what, source }
}

/// A failed call `what` on thread `tid` of `pid`.
fn on_task_thread(
    pid: i32,
    tid: i32,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> DumpError {
    move |source| DumpError::TaskThread {
        pid,
        tid,
        what,
        source,
    }
}

/// A failed call `what` on task `pid`.
fn on_task(pid: i32, what: &'static str) -> impl FnOnce(std::io::Error) -> DumpError {
    move |source| DumpError::Task { pid, what, source }
}

/// Registers and per-thread state of a stopped thread.
pub fn thread_regs(tid: i32, te: &ThreadExtra) -> Result<ThreadRegs> {
    let r = ptrace::get_regs(tid).map_err(on_thread(tid, "registers"))?;
    if r.cs != 0x33 {
        return Err(DumpError::Compat32 { tid }.into());
    }
    let gp = gp_regs(&r);
    let xsave = ptrace::get_xsave(tid).map_err(on_thread(tid, "xsave"))?;
    let tls = gdt_tls(tid)?;
    let blocked = ptrace::get_sigmask(tid).map_err(on_thread(tid, "signal mask"))?;
    let rc = ptrace::get_rseq_config(tid).map_err(on_thread(tid, "rseq"))?;
    let rseq = Some(pb::RseqEntry {
        rseq_abi_pointer: rc.rseq_abi_pointer,
        rseq_abi_size: rc.rseq_abi_size,
        signature: rc.signature,
        rseq_cs_pointer: None,
    });
    Ok(ThreadRegs {
        gp,
        xsave,
        tls,
        blocked,
        rseq,
        clear_tid_addr: te.tid_addr,
        sas: te.sas,
    })
}

/// The general-purpose registers in CRIU's form.
fn gp_regs(r: &ptrace::Regs) -> pb::UserX86RegsEntry {
    pb::UserX86RegsEntry {
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
    }
}

/// The thread's GDT TLS entries 12..14.
fn gdt_tls(tid: i32) -> Result<Vec<pb::UserDescT>> {
    let mut tlsv = Vec::new();
    for e in 12..15u32 {
        let d = tls::get_thread_area(tid, e).map_err(|source| DumpError::ThreadArea {
            tid,
            entry: e,
            source,
        })?;
        tlsv.push(kcore::user_desc(&d));
    }
    Ok(tlsv)
}

/// Task-wide and per-thread state read by injected syscalls. Every
/// injection is undone (registers, mask, scratch memory) before this
/// returns, also on failure. `vdso`: the task's `[vdso]` (start, end),
/// when known.
pub fn task_extra(
    pid: i32,
    threads: &[i32],
    vdso: Option<(u64, u64)>,
    also: &mut dyn FnMut(&mut Injector) -> Result<()>,
) -> Result<TaskExtra> {
    let mut x = TaskExtra {
        personality: u32::from_str_radix(
            super::procfs::read_string(pid, "personality")?.trim(),
            16,
        )
        .unwrap_or(0),
        ..Default::default()
    };
    x.posix_timers = posix_timers(pid)?;
    let main = inject_task(pid, vdso, &mut x, also)?;
    for &tid in threads {
        let te = match tid == pid {
            true => main.clone(),
            false => inject_thread(pid, tid)?,
        };
        x.threads.push(te);
    }
    Ok(x)
}

/// The per-thread state injected calls read: tid address, sigaltstack.
fn inject_thread(pid: i32, tid: i32) -> Result<ThreadExtra> {
    super::guard::check()?;
    let mut inj = Injector::new(tid).map_err(on_task_thread(pid, tid, "inject"))?;
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
    let te = res.map_err(on_task_thread(pid, tid, "injected calls"))?;
    fin.map_err(on_task_thread(pid, tid, "restoring after injection"))?;
    Ok(te)
}

/// Signals queued for `tid` (or, `shared`, for its whole process) and
/// not yet delivered, as CRIU stores them (raw siginfo). They stay
/// queued.
pub fn pending(tid: i32, shared: bool) -> Result<pb::SignalQueueEntry> {
    let v = ptrace::peek_siginfo(tid, shared).map_err(on_thread(tid, "pending signals"))?;
    Ok(pb::SignalQueueEntry {
        signals: v
            .into_iter()
            .map(|si| pb::SiginfoEntry {
                siginfo: si.raw.to_vec(),
            })
            .collect(),
    })
}

/// The POSIX timers of `pid` as /proc/PID/timers lists them (values are
/// filled in by injected timer_gettime/timer_getoverrun).
fn posix_timers(pid: i32) -> Result<Vec<pb::PosixTimerEntry>> {
    let text = super::procfs::read_string(pid, "timers").unwrap_or_default();
    let bad = |l: &str| DumpError::ProcParse {
        pid,
        file: "timers",
        fault: ProcFault::CannotParse(l.to_string()),
    };
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
const PR_GET_MDWE: i32 = 66;

/// Where [`inject_task`]'s calls leave their results in the scratch area.
const SA_AT: usize = 0; // 64 kernel sigactions of 32 bytes
const ITIMER_AT: usize = 64 * 32; // 3 itimervals of 32 bytes
const SUBREAPER_AT: usize = ITIMER_AT + 3 * 32;
const PDEATHSIG_AT: usize = SUBREAPER_AT + 8;
const TID_ADDR_AT: usize = PDEATHSIG_AT + 8;
const SAS_AT: usize = TID_ADDR_AT + 8; // a stack_t of 24 bytes
const SCRATCH: usize = SAS_AT + 24;

/// Fills in the task-wide state of `x`, then runs `also` in the same
/// injection; returns the main thread's own state.
fn inject_task(
    pid: i32,
    vdso: Option<(u64, u64)>,
    x: &mut TaskExtra,
    also: &mut dyn FnMut(&mut Injector) -> Result<()>,
) -> Result<ThreadExtra> {
    super::guard::check()?;
    let mut inj = Injector::with_scratch(pid, SCRATCH, vdso).map_err(on_task(pid, "inject"))?;
    let res = (|| -> std::io::Result<ThreadExtra> {
        // Everything with a fixed place in one go; the values come back in
        // one read of the scratch area.
        let (base, _) = inj.scratch().unwrap_or((0, 0));
        let at = |off: usize| base + off as u64;
        let sigs: Vec<i32> = (1..=64)
            .filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
            .collect();
        let mut calls: Vec<(i64, [u64; 6])> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for &sig in &sigs {
            let old = at(SA_AT + 32 * (sig as usize - 1));
            calls.push((libc::SYS_rt_sigaction, [sig as u64, 0, old, 8, 0, 0]));
            names.push(format!("rt_sigaction({sig})"));
        }
        for which in 0..3u64 {
            let out = at(ITIMER_AT + 32 * which as usize);
            calls.push((libc::SYS_getitimer, [which, out, 0, 0, 0, 0]));
            names.push(format!("getitimer({which})"));
        }
        for (opt, out) in [
            (PR_GET_CHILD_SUBREAPER, at(SUBREAPER_AT)),
            (PR_GET_PDEATHSIG, at(PDEATHSIG_AT)),
            (PR_GET_SECUREBITS, 0),
            (PR_GET_DUMPABLE, 0),
        ] {
            calls.push((libc::SYS_prctl, [opt as u64, out, 0, 0, 0, 0]));
            names.push("prctl".to_string());
        }
        calls.push((libc::SYS_brk, [0; 6]));
        names.push("brk".to_string());
        // The main thread's own state, while we are here.
        let tid_addr = libc::PR_GET_TID_ADDRESS as u64;
        calls.push((libc::SYS_prctl, [tid_addr, at(TID_ADDR_AT), 0, 0, 0, 0]));
        names.push("prctl(PR_GET_TID_ADDRESS)".to_string());
        calls.push((libc::SYS_sigaltstack, [0, at(SAS_AT), 0, 0, 0, 0]));
        names.push("sigaltstack".to_string());
        // Last and unchecked: kernels before 6.3 answer EINVAL (no MDWE).
        calls.push((libc::SYS_prctl, [PR_GET_MDWE as u64, 0, 0, 0, 0, 0]));
        let got = inj.syscalls(&calls)?;
        for (r, name) in got.iter().zip(&names) {
            inj.check(name, *r)?;
        }
        x.mdwe = got.last().is_some_and(|&r| r > 0);
        let mut b = vec![0u8; SCRATCH];
        inj.read_scratch(0, &mut b)?;
        let u64_at = |off: usize| u64::from_ne_bytes(b[off..off + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |off: usize| u32::from_ne_bytes(b[off..off + 4].try_into().unwrap_or([0; 4]));
        for &sig in &sigs {
            let o = SA_AT + 32 * (sig as usize - 1);
            x.sigactions.push(pb::SaEntry {
                sigaction: u64_at(o),
                flags: u64_at(o + 8),
                restorer: u64_at(o + 16),
                mask: u64_at(o + 24),
                compat_sigaction: Some(false),
                mask_extended: None,
            });
        }
        for (i, t) in x.itimers.iter_mut().enumerate() {
            let o = ITIMER_AT + 32 * i;
            *t = pb::ItimerEntry {
                isec: u64_at(o),
                iusec: u64_at(o + 8),
                vsec: u64_at(o + 16),
                vusec: u64_at(o + 24),
            };
        }
        x.child_subreaper = u32_at(SUBREAPER_AT) != 0;
        x.pdeath_sig = u32_at(PDEATHSIG_AT);
        let n = sigs.len() + 3;
        x.secbits = got[n + 2] as u32;
        x.mm.dumpable = got[n + 3] as i32;
        x.mm.brk = got[n + 4] as u64;
        let main = ThreadExtra {
            tid_addr: u64_at(TID_ADDR_AT),
            sas: pb::ThreadSasEntry {
                ss_sp: u64_at(SAS_AT),
                ss_flags: u32_at(SAS_AT + 8),
                ss_size: u64_at(SAS_AT + 16),
            },
        };
        for t in x.posix_timers.iter_mut() {
            let v = inj.remote_timer_gettime(t.it_id as i32)?;
            t.isec = v.interval.sec as u64;
            t.insec = v.interval.nsec as u64;
            t.vsec = v.value.sec as u64;
            t.vnsec = v.value.nsec as u64;
            let o = inj.syscall(libc::SYS_timer_getoverrun, [t.it_id as u64, 0, 0, 0, 0, 0])?;
            t.overrun = if o < 0 { 0 } else { o as u32 };
        }
        Ok(main)
    })();
    let more = match res {
        Ok(_) => also(&mut inj),
        Err(_) => Ok(()),
    };
    let fin = inj.finish();
    let main = res.map_err(on_task(pid, "injected calls"))?;
    more?;
    fin.map_err(on_task(pid, "restoring after injection"))?;
    Ok(main)
}
