//! `crit dump`: freeze a process tree, write its state as CRIU 4.2
//! images, then kill it (or let it run on with `--leave-running`).
//!
//! Flow: check options and the images directory; freeze every thread of
//! every task ([`freeze`], [`freezer`]); collect everything ([`task`];
//! read-only: /proc, ptrace, sock_diag, peeks at queues) and refuse
//! anything unsupported before a single image is written; write the
//! images ([`write`], inventory last); release the tree. One
//! [`context::DumpCtx`] carries the state of the dump through the steps.
//! Any failure releases the tree untouched and removes the images written
//! so far.
//!
//! The dump runs in a worker process ([`guard`]) so that killing
//! `crit dump` never leaves the tree frozen; task memory is copied by a
//! writer thread ([`pages`]) while descriptors are read.
//!
//! Done (tests in tests/dump_*.rs; docs/dump.md has the user's view):
//! - tree: pstree with pids, ppid, pgid, sid and threads (depth-first, as
//!   CRIU); threads; process groups and sessions led inside the tree;
//!   group-stopped tasks (task_state 3); zombies (a core with TASK_DEAD
//!   and the exit status, as CRIU) [dump_tree];
//! - core per thread: registers, FPU/xsave (CPU's components, CET), GDT
//!   TLS, fs/gs base, blocked mask, rseq, robust list, tid address and
//!   sigaltstack (injected), creds, nice/policy, seccomp mode and filters,
//!   pending signals (thread and process queues); per task: sigactions
//!   with sa_restorer, itimers, POSIX timers, rlimits, personality, comm,
//!   flags, loginuid, oom_score_adj, child-subreaper, pdeath signal
//!   [dump_basic, dump_tree];
//! - memory: every VMA with CRIU's status bits (heap, stack + hidden guard
//!   page, vdso, vvar, vsyscall, file private/shared, memfd/shared anon),
//!   madvise bits, mm_* from /proc/PID/stat, brk, auxv (CRIU's 44 words),
//!   exe, dumpable, THP; pagemap + pages: present/swapped, not the zero
//!   page, private-file pages only when copied on write, vdso whole,
//!   PE_LAZY as CRIU; batched process_vm_readv, one write per 16 MiB batch;
//!   shared anonymous memory and memfd in CRIU 4.2's memfd form with
//!   pagemap-shmem [dump_basic, dump_files];
//! - fs, ids (kcmp; namespace ids numbered as CRIU), inventory (last),
//!   timens, seccomp;
//! - files: regular files (flags, offset, size, build id), directories,
//!   device nodes, deleted files (open, mapped or the exe) as ghost files,
//!   pipes and fifos with data (tee, not consumed), eventfd, epoll with
//!   targets, timerfd, signalfd, inotify (handles and paths), memfd, TCP
//!   listeners, UDP (IPv4/IPv6, connected or not), netlink (bound or
//!   not), file owners of sockets and O_ASYNC files, the terminal only
//!   with --shell-job (as a regular file entry) [dump_files];
//! - unix sockets: stream, dgram, seqpacket; socketpairs; path names with
//!   file mode/owner, deleted paths, names relative to the cwd, abstract
//!   names; listeners with pending connections (peer = listener, as
//!   CRIU), and without -R the data such a connection carries (its
//!   unaccepted end taken as the last step, see sockets::drain_pending);
//!   accepted/connected; queues with message boundaries (MSG_PEEK +
//!   SO_PEEK_OFF on a pidfd_getfd copy, restored after); shutdown state;
//!   CRIU's socket options; topology from NETLINK_SOCK_DIAG; peers outside
//!   the tree refused with inode, peer, address and holder, or with
//!   consent written as CRIU writes an external peer, for every type
//!   [dump_unix, dump_parity];
//! - field-for-field parity with CRIU 4.2's fixtures (counter, usk_server,
//!   usk_tree, usk_ext_dgram, kitchen) [dump_parity];
//! - dump + `crit restore` round trips of CRIU's fixture programs, each
//!   checking its own state after restore (counter, kitchen, sessions,
//!   threads, usk_pair, usk_server, usk_deleted, usk_tree) [restore_ours];
//! - safety: every refusal happens before an image is written and the
//!   tree resumes; failures halfway, a killed `crit dump` and Ctrl-C on
//!   the job resume the tree and leave no images [dump_safety]; images
//!   0600, fsync'd (and the directory), atomic; every image re-encodes to
//!   the same bytes [all tests];
//! - benchmark: scripts/bench-dump.sh (frozen time median 0.59 s on an
//!   idle 2-CPU machine; docs/dump.md has the figures).
//!
//! Not done (refused with an error naming pid/fd/inode): established TCP
//! connections (even with --tcp-established), a file passed in a unix
//! queue (SCM_RIGHTS) that no task holds any more,
//! data sent on a connection still pending in a listener (with -R), a pending
//! connection whose client closed (as CRIU), zero-length datagrams queued,
//! namespaces other than crit's, a zombie root, System V shm, deleted files over
//! 1 MiB, a deleted cwd/root, other file kinds (pidfd, io_uring, bpf,
//! fanotify, packet sockets, ...), 32-bit tasks, a tree whose session or
//! group leader is outside it (other than the root's), file locks.
//! Not recorded: file owners (F_SETOWN/F_SETSIG) of files that are neither
//! sockets nor O_ASYNC, cgroups (cg_set 1 as in CRIU's
//! fixtures), tty state with --shell-job (CRIU writes tty-info; we write
//! the terminal as a regular file), a zero-length seqpacket message at the
//! end of a queue, the datagrams queued on UDP sockets (as CRIU). A
//! SIGKILL of the worker process itself during an injected syscall can
//! still harm the task; so can a task that changes its own memory map
//! through another process sharing it (CLONE_VM outside the tree).

// Functions stay short enough to read as one step (threshold in
// clippy.toml).
#![deny(clippy::too_many_lines)]

pub mod context;
pub mod core;
pub mod error;
pub mod fdscan;
pub mod fdtypes;
pub mod files;
pub mod freeze;
pub mod freezer;
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
pub mod tracer;
pub mod tree;
pub mod write;

pub use opts::{DumpOpts, ExtUnix, Summary};

use crate::error::Result;
use context::{DumpCtx, Probes, Timing};
use error::DumpError;
use std::time::Instant;

/// Dumps the tree of `opts.pid` into `opts.dir`.
pub fn dump(opts: &DumpOpts) -> Result<Summary> {
    let t0 = Instant::now();
    if let Some(p) = opts.worker_of {
        become_worker(p)?;
    }
    let log = progress::Log::new(opts)?;
    precheck(opts)?;
    let mut dir = imgdir::ImgDir::open(&opts.dir)?;
    let probes = Probes::read()?;
    log.step(&format!("freezing the tree of pid {}", opts.pid));
    let t_freeze = Instant::now();
    let frozen = freeze::Frozen::freeze(opts.pid)?;
    let t_frozen = Instant::now();
    let timing = Timing {
        freezing: t_frozen - t_freeze,
        frozen_at: t_frozen,
    };
    let res = DumpCtx::new(opts, &log, &frozen, &mut dir, probes, timing)
        .and_then(|mut ctx| run(&mut ctx))
        .and_then(|s| guard::check().map(|_| s));
    let mut s = match res {
        Ok(s) => s,
        Err(e) => {
            log.info(&format!("dump failed, resuming the tree: {e}"));
            let _ = frozen.release(false);
            return Err(e);
        }
    };
    log.step(if opts.leave_running {
        "resuming the tree"
    } else {
        "killing the tree"
    });
    // Frozen time ends when the tree is let go: resumed, or sent SIGKILL
    // (waiting for killed tasks to finish exiting is counted apart, as
    // `release`).
    s.frozen = t_frozen.elapsed();
    let t_release = Instant::now();
    frozen.release(!opts.leave_running)?;
    s.release = t_release.elapsed();
    dir.keep();
    s.total = t0.elapsed();
    log.info(&s.to_string());
    Ok(s)
}

/// This process is the worker of `crit dump` process `parent` (see
/// [`guard`]).
fn become_worker(parent: i32) -> Result<()> {
    guard::set_parent(parent);
    // Ctrl-C or a TERM sent to the whole job stops `crit dump`; the
    // worker finishes its step, then lets the tree go (see guard).
    crate::sys::sigign::ignore_stop_signals().map_err(|source| {
        DumpError::Call {
            what: "ignoring terminal signals",
            source,
        }
        .into()
    })
}

/// Collects the frozen tree (refusing anything unsupported before a
/// single image is written), then writes its images.
fn run(ctx: &mut DumpCtx) -> Result<Summary> {
    let ticker = progress::Ticker::start(ctx.log, ctx.pages.counters());
    let all = task::collect_all(ctx)?;
    // Nothing was refused: write.
    ctx.log.step("writing images");
    let copied = write::copy_pages(ctx)?;
    ticker.stop();
    ctx.log.debug("pages copied");
    write::images(ctx, &all, copied)
}

fn precheck(opts: &DumpOpts) -> Result<()> {
    let pid = opts.pid;
    if pid <= 1 {
        return Err(DumpError::InitOrInvalid { pid }.into());
    }
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(DumpError::NoSuchProcess { pid }.into());
    }
    // crit itself must not be in the tree.
    let me = std::process::id() as i32;
    let mut p = me;
    while p > 1 {
        if p == pid {
            return Err(DumpError::SelfOrAncestor { pid }.into());
        }
        p = match procfs::stat(p) {
            Ok(s) => s.ppid,
            Err(_) => break,
        };
    }
    Ok(())
}
