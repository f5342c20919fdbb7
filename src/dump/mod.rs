//! `crit dump`: freeze a process tree, write its state as CRIU 4.2
//! images, then kill it (or let it run on with `--leave-running`).
//!
//! Flow: check options and the images directory; freeze every thread of
//! every task ([`freeze`]); collect everything (read-only: /proc, ptrace,
//! sock_diag, peeks at queues) and refuse anything unsupported before a
//! single image is written; write the images (inventory last); release the
//! tree. Any failure releases the tree untouched and removes the images
//! written so far.
//!
//! Done (see tests/dump_*.rs): the list is kept in docs/dump.md too.
//! - pstree, core (registers, FPU/xsave, TLS, sigmask, rseq, robust list,
//!   tid address, sigaltstack, sigactions, itimers, rlimits, creds, comm,
//!   personality, task state), ids, fs, mm (VMAs with CRIU status bits,
//!   auxv, exe), pagemap + pages, timens, seccomp (empty), inventory;
//! - files: regular files (offset, flags, build id), deleted files as
//!   ghost files, /dev nodes, pipes and fifos with their data, eventfd,
//!   epoll, timerfd, signalfd, inotify (no path), memfd and shared
//!   anonymous memory (memfd form, pagemap-shmem);
//! - sockets: unix (all types, names, deleted/relative paths, peers,
//!   queues, shutdown, options, external peers with consent), TCP
//!   listening, UDP unconnected, netlink.
//!
//! Not done (refused with a clear error naming pid/fd): POSIX timers,
//! pending signals, seccomp filters, established TCP, connected UDP,
//! SCM_RIGHTS in flight, pending unix connections carrying data,
//! namespaces other than crit's, zombies, System V shm, other fd kinds.

pub mod core;
pub mod fdscan;
pub mod fdtypes;
pub mod files;
pub mod freeze;
pub mod guard;
pub mod ids;
pub mod imgdir;
pub mod maps;
pub mod mm;
pub mod opts;
pub mod pagemap;
pub mod pages;
pub mod pipes;
pub mod procfs;
pub mod progress;
pub mod sockets;
pub mod task;
pub mod tree;
pub mod write;

pub use opts::{DumpOpts, ExtUnix, Summary};

use crate::error::{Error, Result};
use std::time::Instant;

/// Dumps the tree of `opts.pid` into `opts.dir`.
pub fn dump(opts: &DumpOpts) -> Result<Summary> {
    let t0 = Instant::now();
    if let Some(p) = opts.worker_of {
        guard::set_parent(p);
    }
    let log = progress::Log::new(opts)?;
    precheck(opts)?;
    let mut dir = imgdir::ImgDir::open(&opts.dir)?;
    let env = task::Env {
        shmem_dev: maps::shmem_dev()?,
        zero_pfn: pagemap::zero_pfn()?,
        seccomp: Default::default(),
    };
    log.step(&format!("freezing the tree of pid {}", opts.pid));
    let frozen = freeze::Frozen::freeze(opts.pid)?;
    let t_frozen = Instant::now();
    let res =
        write::run(&frozen, opts, &env, &mut dir, &log).and_then(|s| guard::check().map(|_| s));
    match res {
        Ok(mut s) => {
            log.step(if opts.leave_running {
                "resuming the tree"
            } else {
                "killing the tree"
            });
            frozen.release(!opts.leave_running)?;
            s.frozen = t_frozen.elapsed();
            dir.keep();
            s.total = t0.elapsed();
            log.info(&s.to_string());
            Ok(s)
        }
        Err(e) => {
            log.info(&format!("dump failed, resuming the tree: {e}"));
            let _ = frozen.release(false);
            Err(e)
        }
    }
}

fn precheck(opts: &DumpOpts) -> Result<()> {
    let pid = opts.pid;
    if pid <= 1 {
        return Err(Error::msg(format!(
            "pid {pid}: cannot dump init or an invalid pid"
        )));
    }
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(Error::msg(format!("pid {pid}: no such process")));
    }
    // crit itself must not be in the tree.
    let me = std::process::id() as i32;
    let mut p = me;
    while p > 1 {
        if p == pid {
            return Err(Error::msg(format!(
                "pid {pid}: is crit itself or one of its ancestors"
            )));
        }
        p = match procfs::stat(p) {
            Ok(s) => s.ppid,
            Err(_) => break,
        };
    }
    Ok(())
}
