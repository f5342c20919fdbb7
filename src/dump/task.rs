//! Everything about one task that goes into its core, mm, fs, ids,
//! fdinfo and pages images, collected while the tree is frozen.

use super::core::{self as kcore, ThreadRegs};
use super::fdscan;
use super::files::FileTable;
use super::freeze::{Frozen, TaskExtra};
use super::ids::Ids;
use super::maps::{self, Vma};
use super::mm;
use super::pagemap::{self, Run};
use super::procfs;
use super::tree;
use crate::error::{Error, Result};
use crate::image::pb;

pub struct Collected {
    pub t: tree::Task,
    pub ids: pb::TaskKobjIdsEntry,
    pub cores: Vec<pb::CoreEntry>,
    pub mm: Option<pb::MmEntry>,
    pub runs: Vec<Run>,
    /// Pages of the private VMAs looked at.
    pub pages_scanned: u64,
    pub fdinfo: Vec<pb::FdinfoEntry>,
    /// Descriptors of this task that are new file descriptions (not shared).
    pub fds: Vec<fdscan::Fd>,
    pub fs: pb::FsEntry,
    /// True when this task shares its fd table / mm with an earlier one.
    pub shared_files: bool,
    pub shared_vm: bool,
}

pub struct Env {
    pub shmem_dev: u64,
    pub zero_pfn: u64,
    /// seccomp.img's filters, every thread's chain oldest first.
    pub seccomp: std::cell::RefCell<Vec<pb::SeccompFilter>>,
    /// How long freezing took, and when the tree was frozen (stats-dump).
    pub frozen_at: std::cell::Cell<Option<(std::time::Duration, std::time::Instant)>>,
}

/// Collects the state of task `t` (all its threads are stopped).
#[allow(clippy::too_many_arguments)]
pub fn collect(
    fr: &Frozen,
    t: &tree::Task,
    env: &Env,
    ids: &mut Ids,
    files: &mut FileTable,
    seen_vm: &mut Vec<u32>,
    seen_files: &mut Vec<u32>,
    socks: &mut super::sockets::Sockets,
    pages: &mut super::pages::PageWriter,
    opts: &super::DumpOpts,
) -> Result<Collected> {
    let pid = t.pid;
    let kids = ids.task(pid)?;
    let status = procfs::status(pid)?;
    let shared_vm = seen_vm.contains(&kids.vm_id);
    let shared_files = seen_files.contains(&kids.files_id);

    // Memory layout first: mapped files get the first file ids.
    let mut vmas: Vec<Vma> = Vec::new();
    let mut runs = Vec::new();
    let mut pages_scanned = 0;
    let shmem_dev = env.shmem_dev;
    let scan_fds = |socks: &mut super::sockets::Sockets| {
        let cell = std::cell::RefCell::new(socks);
        let known = |ino: u64| cell.borrow_mut().known(ino);
        fdscan::scan(pid, shmem_dev, &known)
    };
    let mut scanned = None;
    if !shared_vm {
        // The address space (smaps, pagemap) is read on a helper thread,
        // which then starts the copying of memory, while this one lists
        // the descriptors (only /proc reads: nothing is numbered yet).
        let zero_pfn = env.zero_pfn;
        let pw = &mut *pages;
        let (mem, fds) = std::thread::scope(|s| {
            let h = s.spawn(move || -> Result<(Vec<Vma>, Vec<Run>)> {
                let vmas = maps::read(pid, shmem_dev)?;
                let runs = pagemap::collect(pid, &vmas, zero_pfn)?;
                pw.submit(pid, runs.clone())?;
                Ok((vmas, runs))
            });
            let fds = (!shared_files).then(|| scan_fds(&mut *socks));
            let mem = h
                .join()
                .unwrap_or_else(|_| Err(Error::msg(format!("pid {pid}: memory reader panicked"))));
            (mem, fds)
        });
        (vmas, runs) = mem?;
        scanned = fds;
        // Mapped files get the first file ids.
        mm::map_files(pid, &mut vmas, files)?;
        pages_scanned = vmas
            .iter()
            .filter(|v| v.is_private())
            .map(|v| (v.end - v.start) / maps::PAGE_SIZE)
            .sum();
    }

    // Descriptors.
    let mut fdinfo = Vec::new();
    let mut new_fds = Vec::new();
    if !shared_files {
        let fds = match scanned {
            Some(r) => r?,
            None => scan_fds(&mut *socks)?,
        };
        for fd in fds {
            let (id, new) = files.fd_id(pid, &fd)?;
            let ty = super::fdtypes::file_type(pid, &fd, socks, opts)?;
            if new {
                super::fdtypes::dump_fd(fr, pid, &fd, id, files, socks, opts)?;
                new_fds.push(fd.clone());
            }
            fdinfo.push(pb::FdinfoEntry {
                id,
                flags: if fd.cloexec { 1 } else { 0 },
                r#type: ty,
                fd: fd.fd as u32,
                xattr_security_selinux: None,
            });
        }
    }

    // The task-wide state only an injected call can read.
    let extra: TaskExtra = fr.task_extra(pid, &t.threads)?;

    let mut mme = None;
    if !shared_vm {
        let exe = format!("/proc/{pid}/exe");
        let exe_path = std::fs::read_link(&exe)
            .map_err(|e| Error::io(format!("pid {pid}: {exe}"), e))?
            .to_string_lossy()
            .into_owned();
        let st = std::fs::metadata(&exe)
            .map(|m| fdscan::Stat::of(&m))
            .map_err(|e| Error::io(format!("pid {pid}: {exe}"), e))?;
        let exe_deleted = st.nlink == 0;
        let exe_path = exe_path
            .strip_suffix(" (deleted)")
            .unwrap_or(&exe_path)
            .to_string();
        let exe_id = files.special_reg(&exe_path, &st, &exe, true, exe_deleted)?;
        let thp_disabled = status.thp_enabled.map(|e| !e).unwrap_or(false);
        mme = Some(mm::mm_entry(
            pid,
            &t.stat,
            &vmas,
            exe_id,
            &extra.mm,
            thp_disabled,
        )?);
    }

    // cwd and root: new ids each time, as CRIU gives them.
    let mut fs_ids = [0u32; 2];
    for (i, w) in ["cwd", "root"].iter().enumerate() {
        let p = format!("/proc/{pid}/{w}");
        let path = std::fs::read_link(&p).map_err(|e| Error::io(format!("pid {pid}: {p}"), e))?;
        let st = std::fs::metadata(&p)
            .map(|m| fdscan::Stat::of(&m))
            .map_err(|e| Error::io(format!("pid {pid}: {p}"), e))?;
        let path = path.to_string_lossy().into_owned();
        let gone = path.ends_with(" (deleted)") && st.nlink == 0;
        let path = path
            .strip_suffix(" (deleted)")
            .filter(|_| gone)
            .unwrap_or(&path)
            .to_string();
        fs_ids[i] = files.special_reg(&path, &st, &p, false, gone)?;
    }
    let fs = pb::FsEntry {
        cwd_id: fs_ids[0],
        root_id: fs_ids[1],
        umask: Some(umask(pid)?),
    };

    // One core per thread.
    let limits = procfs::limits(pid)?;
    let mut cores = Vec::new();
    for (i, &tid) in t.threads.iter().enumerate() {
        let regs: ThreadRegs = fr.thread_regs(tid, &extra.threads[i])?;
        let tst = if tid == pid {
            status.clone()
        } else {
            procfs::thread_status(pid, tid)?
        };
        let tstat = if tid == pid {
            t.stat.clone()
        } else {
            procfs::thread_stat(pid, tid)?
        };
        let signals_p = if tst.sig_pnd != 0 {
            fr.pending(tid, false)?
        } else {
            pb::SignalQueueEntry::default()
        };
        let seccomp_filter = if tst.seccomp == 2 {
            let chain = crate::sys::seccomp::filters(tid)
                .map_err(|e| Error::io(format!("pid {pid} thread {tid}: seccomp filters"), e))?;
            let mut all = env.seccomp.borrow_mut();
            // As CRIU writes them: the kernel lists a thread's filters
            // oldest first; the image gets them newest first, each later
            // entry's `prev` pointing at the entry before it, and the
            // thread points at the last (its oldest filter); restore
            // follows `prev` and installs in that order.
            for (i, f) in chain.iter().rev().enumerate() {
                let prev = if i == 0 {
                    None
                } else {
                    Some(all.len() as u32 - 1)
                };
                all.push(pb::SeccompFilter {
                    filter: f.prog.clone(),
                    prev,
                    flags: Some(f.flags as u32),
                });
            }
            if chain.is_empty() {
                None
            } else {
                Some(all.len() as u32 - 1)
            }
        } else {
            None
        };
        let (rla, rla_len) = crate::sys::task::robust_list(tid)
            .map_err(|e| Error::io(format!("pid {pid} thread {tid}: get_robust_list"), e))?;
        let policy = crate::sys::task::sched_policy(tid)
            .map_err(|e| Error::io(format!("thread {tid}: sched_getscheduler"), e))?;
        let prio = crate::sys::task::sched_prio(tid).unwrap_or(0);
        let thread_core = pb::ThreadCoreEntry {
            futex_rla: rla,
            futex_rla_len: rla_len as u32,
            sched_nice: Some(tstat.nice as i32),
            sched_policy: Some(policy),
            sched_prio: if policy == 1 || policy == 2 {
                Some(prio)
            } else {
                None
            },
            blk_sigset: if tid == pid { None } else { Some(regs.blocked) },
            sas: Some(regs.sas),
            pdeath_sig: if extra.pdeath_sig != 0 {
                Some(extra.pdeath_sig)
            } else {
                None
            },
            signals_p: Some(signals_p),
            creds: Some(kcore::creds(&tst, extra.secbits)),
            seccomp_mode: if tst.seccomp != 0 {
                Some(tst.seccomp as i32)
            } else {
                None
            },
            seccomp_filter,
            comm: Some(tstat.comm.clone()),
            blk_sigset_extended: None,
            rseq_entry: regs.rseq,
            cg_set: Some(1),
        };
        let mut core = pb::CoreEntry {
            mtype: pb::core_entry::March::X8664 as i32,
            thread_info: Some(kcore::thread_info(&regs)),
            thread_core: Some(thread_core),
            ..Default::default()
        };
        if tid == pid {
            core.tc = Some(pb::TaskCoreEntry {
                task_state: if fr.stopped.contains(&pid) { 3 } else { 1 },
                exit_code: 0,
                personality: extra.personality,
                flags: t.stat.flags,
                blk_sigset: regs.blocked,
                comm: t.stat.comm.clone(),
                timers: Some(pb::TaskTimersEntry {
                    real: extra.itimers[0],
                    virt: extra.itimers[1],
                    prof: extra.itimers[2],
                    posix: extra.posix_timers.clone(),
                }),
                rlimits: Some(pb::TaskRlimitsEntry {
                    rlimits: limits
                        .iter()
                        .map(|&(cur, max)| pb::RlimitEntry { cur, max })
                        .collect(),
                }),
                cg_set: None,
                signals_s: Some(if status.shd_pnd != 0 {
                    fr.pending(pid, true)?
                } else {
                    pb::SignalQueueEntry::default()
                }),
                old_seccomp_mode: None,
                old_seccomp_filter: None,
                loginuid: Some(procfs::read_u32_file(pid, "loginuid")? as u32),
                oom_score_adj: Some(procfs::read_u32_file(pid, "oom_score_adj")? as i32),
                sigactions: extra.sigactions.clone(),
                child_subreaper: Some(extra.child_subreaper),
                blk_sigset_extended: None,
                stop_signo: None,
                membarrier_registration_mask: None,
            });
        }
        cores.push(core);
    }
    if !shared_vm {
        seen_vm.push(kids.vm_id);
    }
    if !shared_files {
        seen_files.push(kids.files_id);
    }
    Ok(Collected {
        t: t.clone(),
        ids: kids,
        cores,
        mm: mme,
        runs,
        pages_scanned,
        fdinfo,
        fds: new_fds,
        fs,
        shared_files,
        shared_vm,
    })
}

fn umask(pid: i32) -> Result<u32> {
    let s = procfs::read_string(pid, "status")?;
    procfs::fdinfo_field(&s, "Umask")
        .and_then(|v| u32::from_str_radix(v, 8).ok())
        .ok_or_else(|| Error::msg(format!("pid {pid}: /proc/{pid}/status has no Umask")))
}
