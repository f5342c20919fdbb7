//! The [`Tracee`] of the restore on top of `crate::sys`: ptrace for the
//! stop and registers, the injector for syscalls, process_vm_writev for
//! memory.
//!
//! The injector's gate (its `syscall` instruction) is first found in the
//! forked task's vdso; before the address space is torn down it moves to a
//! gate page crit maps in a hole free in both the current and the dumped
//! layout, just below the scratch area. Both go at the very end.

use super::error::TaskError;
use super::remote::{Regs, Tracee};
use crate::error::Result;
use crate::sys::inject::{Injector, BATCH_CODE};
use crate::sys::{ptrace, remote};
use std::io::IoSlice;

pub struct SysTracee {
    /// The thread's id in crit's pid namespace (what ptrace takes).
    host: u32,
    /// Its id in the images (in the tree's own pid namespace, if any).
    id: u32,
    /// The tree has a pid namespace of its own (`host` and `id` differ).
    own_ns: bool,
    inj: Injector,
    /// This thread's injector owns the gate page (the main thread).
    owns_gate: bool,
    /// Where the batch runner's code and call table go (see [`BATCH_CODE`]).
    batch_area: Option<(u64, u64, usize)>,
}

/// A failed call on a task, as an error naming it.
fn on_pid(pid: u32, what: &'static str) -> impl FnOnce(std::io::Error) -> TaskError {
    move |source| TaskError::Call { pid, what, source }
}

/// A failed call on a thread, as an error naming it.
fn on_tid(tid: u32, what: &'static str) -> impl FnOnce(std::io::Error) -> TaskError {
    move |source| TaskError::Thread { tid, what, source }
}

/// Seizes a forked task (blocked in its wait for crit) and stops it:
/// `pid` is its id in the images, `host` in crit's pid namespace.
pub fn seize(host: u32, pid: u32) -> Result<SysTracee> {
    let tid = host as i32;
    // EXITKILL: if crit dies mid-restore, a half-rebuilt task must not run.
    ptrace::seize_with(tid, ptrace::DEFAULT_OPTIONS | ptrace::O_EXITKILL)
        .map_err(on_pid(pid, "seize"))?;
    ptrace::interrupt(tid).map_err(on_pid(pid, "interrupt"))?;
    match ptrace::wait_stop(tid).map_err(on_pid(pid, "wait for stop"))? {
        s if s.is_event_stop() => {}
        s if s.is_exit() => return Err(TaskError::ExitedEarly { pid, stop: s }.into()),
        _ => {
            ptrace::to_event_stop(tid).map_err(on_pid(pid, "stop"))?;
        }
    }
    let inj = Injector::new(tid).map_err(on_pid(pid, "injector"))?;
    Ok(SysTracee {
        host,
        id: pid,
        own_ns: host != pid,
        inj,
        owns_gate: false,
        batch_area: None,
    })
}

impl SysTracee {
    /// Drops the rseq registration the forked copy of crit inherited.
    pub fn unregister_rseq(&mut self) -> Result<()> {
        let c = match ptrace::get_rseq_config(self.host as i32) {
            Ok(c) => c,
            Err(_) => return Ok(()),
        };
        if c.rseq_abi_pointer == 0 {
            return Ok(());
        }
        let r = self.syscall(
            334,
            [
                c.rseq_abi_pointer,
                u64::from(c.rseq_abi_size),
                1,
                u64::from(c.signature),
                0,
                0,
            ],
        )?;
        if r < 0 {
            return Err(TaskError::Rseq {
                pid: self.host,
                errno: -r,
            }
            .into());
        }
        Ok(())
    }

    /// Keeps seccomp filters from seeing the calls crit injects until the
    /// thread is detached (`PTRACE_O_SUSPEND_SECCOMP`).
    pub fn suspend_seccomp(&mut self) -> Result<()> {
        let me = self.host as i32;
        let opts = ptrace::options_of(me).unwrap_or(ptrace::DEFAULT_OPTIONS);
        ptrace::set_options(me, opts | ptrace::O_SUSPEND_SECCOMP)
            .map_err(on_tid(
                self.host,
                "PTRACE_O_SUSPEND_SECCOMP (needs CAP_SYS_ADMIN and crit itself not under seccomp)",
            ))
            .map_err(Into::into)
    }

    /// Moves the gate to a page at `gate_at` (must be free).
    pub fn map_gate(&mut self, gate_at: u64) -> Result<()> {
        self.inj
            .map_gate_page(Some(gate_at))
            .map_err(on_pid(self.host, "gate page"))?;
        self.owns_gate = true;
        Ok(())
    }

    pub fn gate(&self) -> u64 {
        self.inj.gate()
    }

    /// Creates thread `tid` of this task by injecting clone3 (with
    /// `set_tid`), and takes it over. `scratch` holds the clone arguments.
    pub fn new_thread(&mut self, tid: u32, scratch: u64) -> Result<SysTracee> {
        let me = self.host as i32;
        let opts = ptrace::options_of(me).unwrap_or(ptrace::DEFAULT_OPTIONS);
        ptrace::set_options(me, opts | ptrace::O_TRACECLONE)
            .map_err(on_pid(self.host, "trace clone"))?;
        // struct clone_args, then the one-entry set_tid array.
        let flags: u64 = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000;
        let set_tid_at = scratch + 128;
        let mut a = Vec::with_capacity(88);
        for v in [flags, 0, 0, 0, 0, 0, 0, 0, set_tid_at, 1, 0] {
            a.extend_from_slice(&v.to_le_bytes());
        }
        self.write_mem(&[(scratch, &a), (set_tid_at, &(tid as i32).to_le_bytes())])?;
        let r = self.syscall(435, [scratch, 88, 0, 0, 0, 0])?;
        ptrace::set_options(me, opts).map_err(on_pid(self.host, "trace options"))?;
        if r < 0 {
            let e = std::io::Error::from_raw_os_error(-r as i32);
            if -r == libc::EEXIST as i64 {
                return Err(TaskError::TidInUse {
                    pid: self.host,
                    tid,
                }
                .into());
            }
            return Err(TaskError::NewThread {
                pid: self.host,
                tid,
                source: e,
            }
            .into());
        }
        if r as u32 != tid {
            return Err(TaskError::ThreadMoved {
                pid: self.host,
                tid,
                got: r,
            }
            .into());
        }
        let host = if self.own_ns {
            crate::sys::procfs::host_tid(self.host, tid).map_err(|source| {
                TaskError::ThreadHost {
                    pid: self.host,
                    tid,
                    source,
                }
            })?
        } else {
            tid
        };
        let h = host as i32;
        let s = ptrace::wait_stop(h).map_err(on_tid(tid, "first stop"))?;
        if s.is_exit() {
            return Err(TaskError::ThreadExited { tid, stop: s }.into());
        }
        if !s.is_event_stop() {
            ptrace::to_event_stop(h).map_err(on_tid(tid, "stop"))?;
        }
        let inj = Injector::with_gate(h, self.inj.gate()).map_err(on_tid(tid, "injector"))?;
        Ok(SysTracee {
            host,
            id: tid,
            own_ns: self.own_ns,
            inj,
            owns_gate: false,
            batch_area: None,
        })
    }

    /// Lets [`Tracee::batch`] run calls in one go: its code goes at `code`
    /// (executable), its table at `table` (`table_len` bytes).
    pub fn enable_batch(&mut self, code: u64, table: u64, table_len: usize) -> Result<()> {
        self.write_mem(&[(code, &BATCH_CODE)])?;
        self.batch_area = Some((code, table, table_len));
        Ok(())
    }

    /// Stops batching (its memory is about to go).
    pub fn disable_batch(&mut self) {
        self.batch_area = None;
    }

    fn run_batch(&mut self, code: u64, table: u64, calls: &[(i64, [u64; 6])]) -> Result<Vec<i64>> {
        let tid = self.host as i32;
        let ctx = |what: &'static str| {
            move |source| TaskError::Batch {
                tid: tid as u32,
                calls: calls.len(),
                what,
                source,
            }
        };
        let mut t = Vec::with_capacity(calls.len() * 64);
        for (nr, a) in calls {
            t.extend_from_slice(&nr.to_le_bytes());
            for v in a {
                t.extend_from_slice(&v.to_le_bytes());
            }
            t.extend_from_slice(&0u64.to_le_bytes());
        }
        self.write_mem(&[(table, &t)])?;
        let mut r = ptrace::get_regs(tid).map_err(ctx("get regs"))?;
        r.rip = code;
        r.rbx = table;
        r.r12 = calls.len() as u64;
        r.orig_rax = u64::MAX;
        ptrace::set_regs(tid, &r).map_err(ctx("set regs"))?;
        ptrace::cont(tid, 0).map_err(ctx("resume"))?;
        loop {
            match ptrace::wait_stop(tid).map_err(ctx("wait"))? {
                ptrace::Stop::Signal(libc::SIGTRAP) => {
                    let at = ptrace::get_regs(tid).map_err(ctx("get regs"))?.rip;
                    if at != code + BATCH_CODE.len() as u64 {
                        return Err(TaskError::BatchTrap {
                            tid: tid as u32,
                            at,
                        }
                        .into());
                    }
                    break;
                }
                ptrace::Stop::Signal(sig)
                    if matches!(
                        sig,
                        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
                    ) =>
                {
                    let at = ptrace::get_regs(tid).map(|r| r.rip).unwrap_or(0);
                    return Err(TaskError::BatchFault {
                        tid: tid as u32,
                        sig,
                        at,
                    }
                    .into());
                }
                s if s.is_exit() => {
                    return Err(TaskError::BatchDied {
                        tid: tid as u32,
                        stop: s,
                    }
                    .into())
                }
                _ => ptrace::cont(tid, 0).map_err(ctx("resume"))?,
            }
        }
        let mut back = vec![0u8; t.len()];
        remote::read_exact(tid, table, &mut back).map_err(ctx("read results"))?;
        Ok(back
            .chunks(64)
            .map(|c| i64::from_le_bytes(c[56..64].try_into().unwrap_or([0; 8])))
            .collect())
    }

    /// The thread's id in crit's pid namespace.
    pub fn host(&self) -> u32 {
        self.host
    }

    pub fn owns_gate(&self) -> bool {
        self.owns_gate
    }

    /// Ends injection with `regs` and `mask` as the thread's state, and
    /// leaves it stopped (the gate page goes with the main thread's).
    pub fn finish(mut self, regs: &Regs, mask: u64) -> Result<FinishedThread> {
        self.inj.set_saved_regs(to_sys(regs));
        self.inj.set_saved_sigmask(mask);
        let tid = self.host;
        self.inj.finish().map_err(on_tid(tid, "finish"))?;
        Ok(FinishedThread { tid })
    }
}

/// A rebuilt thread, stopped with its final registers, ready to go.
pub struct FinishedThread {
    /// In crit's pid namespace.
    pub tid: u32,
}

impl FinishedThread {
    pub fn set_xsave(&self, x: &[u8]) -> Result<()> {
        ptrace::set_xsave(self.tid as i32, x)
            .map_err(on_tid(self.tid, "set xsave"))
            .map_err(Into::into)
    }
    pub fn get_xsave(&self) -> Result<Vec<u8>> {
        ptrace::get_xsave(self.tid as i32)
            .map_err(on_tid(self.tid, "get xsave"))
            .map_err(Into::into)
    }
    pub fn detach(self) -> Result<()> {
        ptrace::detach(self.tid as i32)
            .map_err(on_tid(self.tid, "detach"))
            .map_err(Into::into)
    }
}

fn to_sys(r: &Regs) -> ptrace::Regs {
    let mut s = ptrace::zeroed_regs();
    s.r15 = r.r15;
    s.r14 = r.r14;
    s.r13 = r.r13;
    s.r12 = r.r12;
    s.rbp = r.bp;
    s.rbx = r.bx;
    s.r11 = r.r11;
    s.r10 = r.r10;
    s.r9 = r.r9;
    s.r8 = r.r8;
    s.rax = r.ax;
    s.rcx = r.cx;
    s.rdx = r.dx;
    s.rsi = r.si;
    s.rdi = r.di;
    s.orig_rax = r.orig_ax;
    s.rip = r.ip;
    s.cs = r.cs;
    s.eflags = r.flags;
    s.rsp = r.sp;
    s.ss = r.ss;
    s.fs_base = r.fs_base;
    s.gs_base = r.gs_base;
    s.ds = r.ds;
    s.es = r.es;
    s.fs = r.fs;
    s.gs = r.gs;
    s
}

/// process_vm_writev of `iov` (any length; split in IOV_MAX-sized calls).
fn write_iov(tid: i32, iov: &[(u64, &[u8])]) -> Result<()> {
    for chunk in iov.chunks(512) {
        let local: Vec<IoSlice> = chunk.iter().map(|(_, b)| IoSlice::new(b)).collect();
        let rem: Vec<remote::RemoteIoVec> = chunk
            .iter()
            .map(|(a, b)| remote::RemoteIoVec {
                base: *a,
                len: b.len(),
            })
            .collect();
        let total: usize = chunk.iter().map(|(_, b)| b.len()).sum();
        let n =
            remote::write_vectored(tid, &local, &rem).map_err(|source| TaskError::WriteMem {
                pid: tid as u32,
                at: chunk[0].0,
                source,
            })?;
        if n != total {
            let mut left = n;
            let mut at = chunk[0].0;
            for (a, b) in chunk {
                if left < b.len() {
                    at = a + left as u64;
                    break;
                }
                left -= b.len();
            }
            return Err(TaskError::ShortWrite {
                pid: tid as u32,
                at,
                done: n,
                total,
            }
            .into());
        }
    }
    Ok(())
}

impl Tracee for SysTracee {
    fn tid(&self) -> u32 {
        self.id
    }
    fn host_tid(&self) -> u32 {
        self.host
    }
    fn syscall(&mut self, nr: i64, args: [u64; 6]) -> Result<i64> {
        self.inj
            .syscall(nr, args)
            .map_err(|source| TaskError::Syscall {
                pid: self.host,
                source,
            })
            .map_err(Into::into)
    }
    fn write_mem(&mut self, iov: &[(u64, &[u8])]) -> Result<()> {
        write_iov(self.host as i32, iov)
    }
    fn read_mem(&mut self, addr: u64, buf: &mut [u8]) -> Result<()> {
        crate::sys::remote::read_exact(self.host as i32, addr, buf)
            .map_err(|source| TaskError::ReadMem {
                tid: self.host,
                at: addr,
                source,
            })
            .map_err(Into::into)
    }
    fn batch(&mut self, calls: &[(i64, [u64; 6])]) -> Result<Vec<i64>> {
        let Some((code, table, len)) = self.batch_area else {
            return calls.iter().map(|&(nr, a)| self.syscall(nr, a)).collect();
        };
        // The injector must have run at least one call (the thread is then
        // in a syscall stop it knows how to leave).
        let mut out = Vec::with_capacity(calls.len());
        // Even one call: a run is one stop, a call on its own two.
        for chunk in calls.chunks(len / 64) {
            out.extend(self.run_batch(code, table, chunk)?);
        }
        Ok(out)
    }
    fn write_pages(&mut self, iov: &[(u64, &[u8])]) -> Result<()> {
        let tid = self.host as i32;
        super::pagefill::spread(iov, tid as u32, |part| write_iov(tid, part))
    }
}
