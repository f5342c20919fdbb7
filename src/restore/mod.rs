//! `crit restore`: brings a process tree back from CRIU-format images
//! (ours or CRIU 4.2's) without a restorer blob.
//!
//! How: [`plan`] reads the images and [`validate`] checks them; [`cpu`]
//! checks this CPU can hold the threads' state; [`files`], [`kinds`] and
//! [`unix`] open every file, pipe and socket in crit itself (the unix
//! sockets through a pure planner, [`unix::plan`]); [`tree`] clones the
//! root with its dumped pid and each task clones its children from inside
//! ([`child`]): it joins its session and group, moves its fds to their
//! numbers, sets cwd/root/umask and waits. crit then seizes the tasks and
//! rebuilds them from outside, several at once ([`task`], [`memory`],
//! [`regs`], [`rlimits`], [`seccomp`], [`timers`], [`locks`]) with injected syscalls
//! and `process_vm_writev`, and lets the whole tree go together. Any
//! failure kills what was restored and removes the socket files this
//! restore bound ([`rollback`]).
//!
//! What is restored, what is refused and why, and the benchmark:
//! docs/restore.md (the one list of the engine's limits).

pub mod cgroups;
pub mod child;
pub mod cpu;
pub mod error;
pub mod files;
pub mod inet;
pub mod interrupt;
pub mod janitor;
pub mod kinds;
pub mod lazy;
pub mod locks;
pub mod log;
pub mod made;
pub mod memory;
pub mod ns;
pub mod packetsk;
pub mod pagefill;
pub mod plan;
pub mod procfiles;
pub mod pty;
pub mod regs;
pub mod remote;
pub mod reservoir;
pub mod rlimits;
pub mod rollback;
pub mod seccomp;
pub mod shmem;
pub mod skopts;
pub mod task;
pub mod tcp;
pub mod timers;
pub mod tracee;
pub mod tree;
pub mod unix;
pub mod validate;
pub mod vdso;

pub use log::Log;

use crate::action::{Notifier, Script};
use crate::error::{Error, Result};
use error::SetupError;
use std::collections::HashMap;
use std::path::PathBuf;

/// `--ext-unix-sk`: bare (all), or per inode with an optional new address.
#[derive(Default, Clone, Debug)]
pub struct ExtUnix {
    pub all: bool,
    pub per: HashMap<u32, Option<String>>,
}

impl ExtUnix {
    /// Adds one `--ext-unix-sk` value: "" (bare), "INO", "INO,INO..." (as
    /// `crit dump` takes it) or "INO=PATH".
    pub fn add(&mut self, v: &str) -> Result<()> {
        if v.is_empty() {
            self.all = true;
            return Ok(());
        }
        if !v.contains('=') && v.contains(',') {
            for one in v.split(',') {
                if one.is_empty() {
                    return Err(SetupError::ExtUnixSk {
                        value: v.to_string(),
                        why: "empty inode",
                    }
                    .into());
                }
                self.add(one)?;
            }
            return Ok(());
        }
        let (ino, path) = match v.split_once('=') {
            Some((i, p)) => (i, Some(p.to_string())),
            None => (v, None),
        };
        let ino: u32 = ino.parse().map_err(|_| SetupError::ExtUnixSk {
            value: v.to_string(),
            why: "expected INO or INO=PATH",
        })?;
        let why = match path.as_deref() {
            _ if ino == 0 => Some("inode 0 is no socket"),
            Some("") => Some("empty path"),
            // Resolved against crit's cwd, which the task never had.
            Some(p) if !p.starts_with('/') && !p.starts_with('@') => {
                Some("PATH must be absolute (/...) or @name for an abstract address")
            }
            _ => None,
        };
        if let Some(why) = why {
            return Err(SetupError::ExtUnixSk {
                value: v.to_string(),
                why,
            }
            .into());
        }
        self.per.insert(ino, path);
        Ok(())
    }
}

/// `--manage-cgroups`: what restore does with the tree's cgroups.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgMode {
    /// Tasks join their cgroups; properties are set on the cgroups this
    /// restore made (CRIU's soft, the default).
    #[default]
    Soft,
    /// Tasks join their cgroups and every recorded property is set
    /// (CRIU's full, strict and props).
    Full,
    /// Tasks stay in crit's cgroups (none, ignore).
    None,
}

impl CgMode {
    pub fn parse(v: &str) -> Result<CgMode> {
        match v {
            "soft" => Ok(CgMode::Soft),
            "full" | "strict" | "props" => Ok(CgMode::Full),
            "none" | "ignore" => Ok(CgMode::None),
            _ => Err(Error::BadValue {
                option: "--manage-cgroups",
                value: v.to_string(),
                expected: "expected none, ignore, props, soft, full or strict",
            }),
        }
    }
}

/// What `crit restore` was asked to do.
#[derive(Default, Clone, Debug)]
pub struct Options {
    pub dir: PathBuf,
    pub detached: bool,
    pub pidfile: Option<PathBuf>,
    pub ext_unix: ExtUnix,
    /// `--inherit-fd fd[N]:RESOURCE`, as (N, RESOURCE).
    pub inherit_fds: Vec<(i32, String)>,
    pub shell_job: bool,
    pub tcp_established: bool,
    /// `--tcp-close`: established connections come back closed.
    pub tcp_close: bool,
    /// `--file-locks`: the locks of filelocks.img are taken again
    /// (images that hold locks are refused without it).
    pub file_locks: bool,
    pub verbose: u8,
    pub log_file: Option<PathBuf>,
    /// `--cpu-cap`: which CPU checks to make (see [`crate::model::cpu`]).
    pub cpu_caps: crate::model::cpu::CpuCaps,
    /// `--root DIR`: the root file system of a tree with its own mount
    /// namespace.
    pub root: Option<PathBuf>,
    /// `--external mnt[KEY]:PATH`, by key.
    pub ext_mnt: HashMap<String, PathBuf>,
    /// `--manage-cgroups=none` (or ignore): tasks stay in crit's cgroups.
    pub manage_cgroups: CgMode,
    /// `--cgroup-root [CONTROLLER:]/PATH`: the root task's cgroup becomes
    /// PATH, on CONTROLLER's hierarchy or (without one) on every other.
    pub cgroup_roots: Vec<(Option<String>, String)>,
    /// `--notify-fd N`: the action points go to `crit swrk` on fd N.
    pub notify_fd: Option<i32>,
    /// `--action-script CMD`, run at each action point.
    pub action_scripts: Vec<String>,
    /// `--console-socket PATH`: where the master of a pty made anew goes
    /// (without a service).
    pub console_socket: Option<PathBuf>,
    /// `--lazy-pages`: private anonymous memory comes later, from a
    /// lazy-pages daemon (see [`lazy`]).
    pub lazy_pages: bool,
    /// `--force-vdso-proxy`: the dumped vDSO comes back as a proxy even
    /// on the dumping kernel (see [`vdso`]).
    pub force_vdso_proxy: bool,
    /// `--join-ns NS:PID|NS_FILE`: namespaces the tree enters instead of
    /// new ones (see [`ns::join`]).
    pub join_ns: Vec<ns::join::JoinNs>,
}

/// Parses `mnt[KEY]:PATH` (CRIU's spelling of an external mount at
/// restore).
pub fn parse_ext_mount(s: &str) -> Result<(String, PathBuf)> {
    let bad = || -> Error {
        SetupError::ExternalArg {
            value: s.to_string(),
        }
        .into()
    };
    let rest = s.strip_prefix("mnt[").ok_or_else(bad)?;
    let (key, path) = rest.split_once("]:").ok_or_else(bad)?;
    if key.is_empty() || path.is_empty() {
        return Err(bad());
    }
    Ok((key.to_string(), PathBuf::from(path)))
}

/// Parses `[CONTROLLER:]/PATH` (CRIU's `--cgroup-root`).
pub fn parse_cgroup_root(s: &str) -> Result<(Option<String>, String)> {
    let (ctrl, path) = match s.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.contains('/') => (Some(c.to_string()), p),
        _ => (None, s),
    };
    if !path.starts_with('/') {
        return Err(SetupError::CgroupRootArg {
            value: s.to_string(),
        }
        .into());
    }
    let path = path.trim_end_matches('/');
    Ok((ctrl, if path.is_empty() { "/" } else { path }.to_string()))
}

/// Parses `fd[N]:RESOURCE`.
pub fn parse_inherit_fd(s: &str) -> Result<(i32, String)> {
    let bad = || -> Error {
        SetupError::InheritFdArg {
            value: s.to_string(),
        }
        .into()
    };
    let rest = s.strip_prefix("fd[").ok_or_else(bad)?;
    let (n, res) = rest.split_once("]:").ok_or_else(bad)?;
    let n: i32 = n.parse().map_err(|_| bad())?;
    if res.is_empty() || n < 0 {
        return Err(bad());
    }
    // A pipe or socket is named by its inode, as /proc shows it.
    for kind in ["pipe:[", "socket:["] {
        if let Some(ino) = res.strip_prefix(kind) {
            let ino = ino.strip_suffix(']').and_then(|i| i.parse::<u32>().ok());
            if ino.is_none_or(|i| i == 0) {
                return Err(bad());
            }
        }
    }
    Ok((n, res.to_string()))
}

/// Restores the tree. Returns the exit status crit should exit with: the
/// root's (waiting mode), or 0 once the tree runs (detached).
pub fn restore(opts: &Options) -> Result<i32> {
    // First, before any thread exists: every thread inherits the mask.
    let stop = interrupt::Interrupts::block()?;
    let log = Log::new(opts.verbose, opts.log_file.as_deref())?;
    // Checked whatever the images hold: a mistyped --root is an error,
    // not an option silently left unused.
    if let Some(r) = &opts.root {
        match std::fs::metadata(r) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ns::NsError::BadRoot {
                    path: r.clone(),
                    source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
                }
                .into())
            }
            Err(source) => {
                return Err(ns::NsError::BadRoot {
                    path: r.clone(),
                    source,
                }
                .into())
            }
        }
    }
    // Before any thread exists (a fork).
    let _janitor = janitor::start()
        .map_err(|e| log.debug(format!("no janitor for a killed restore: {e}")))
        .ok();
    let notify = crate::action::Notifier::new(
        &opts.dir,
        opts.notify_fd,
        opts.action_scripts.clone(),
        opts.console_socket.clone(),
    )
    .map_err(|source| SetupError::NotifyFd {
        fd: opts.notify_fd.unwrap_or(-1),
        source,
    })?;
    notify.tell(Script::PreRestore, None)?;
    let t0 = std::time::Instant::now();
    let mut plan = plan::Plan::load(&opts.dir)?;
    // In the tree's mount namespace the images are reached through an
    // fd of crit's (kept until the restore ends).
    let _dir_fd = match plan.ns.mounts {
        Some(_) => Some(reach_images(&mut plan)?),
        None => None,
    };
    // Messages name the images directory as the user gave it, or, given
    // as a client's descriptor (the RPC's /proc/PID/fd/N), as it is.
    let shown = match opts.dir.starts_with("/proc") {
        true => std::fs::read_link(&opts.dir).unwrap_or_else(|_| opts.dir.clone()),
        false => opts.dir.clone(),
    };
    let named = |e: crate::error::Error| {
        let e = match &_dir_fd {
            Some(fd) => e.through(
                &format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)),
                &shown,
            ),
            None => e,
        };
        match shown == opts.dir {
            true => e,
            false => e.through(&opts.dir.display().to_string(), &shown),
        }
    };
    log.debug(format!("images read in {:?}", t0.elapsed()));
    // Locks left behind silently would let another process in.
    if plan.file_locks > 0 && !opts.file_locks {
        return Err(SetupError::FileLocks {
            path: opts.dir.join("filelocks.img"),
            count: plan.file_locks,
        }
        .into());
    }
    let root = &plan.tasks[0];
    if root.zombie.is_some() {
        return Err(SetupError::ZombieRoot { pid: root.pid }.into());
    }
    if root.sid != root.pid && !opts.shell_job {
        return Err(SetupError::OutsideSession {
            pid: root.pid,
            sid: root.sid,
        }
        .into());
    }
    cpu::check(&plan, opts.cpu_caps, &log).map_err(named)?;
    // One restore of an image set, and into a root file system, at a
    // time: a second one waits here (also for the janitor of a first one
    // killed, which holds the locks until it has undone what it made),
    // then finds the pids taken before it binds or removes anything.
    let _lock = lock_dir(&opts.dir)?;
    let _root_lock = opts.root.as_deref().map(lock_dir).transpose()?;
    janitor::hold(std::os::fd::AsFd::as_fd(&*_lock));
    if let Some(l) = &_root_lock {
        janitor::hold(std::os::fd::AsFd::as_fd(&**l));
    }
    tree::check_free(&plan)?;
    let mut rb = rollback::Rollback::new(&plan);
    match run(&plan, opts, &log, &mut rb, &notify, &stop) {
        Ok(()) => rb.succeeded(),
        Err(e) => {
            rb.undo(&log);
            return Err(named(e));
        }
    }
    let late = stop.release();
    log.release_warnings();
    if let Some(s) = late {
        log.warn(format!(
            "{s} came once the tree was let go: the restore is done"
        ));
    }
    let root_pid = plan.host(plan.tasks[0].pid);
    log.info(format!(
        "restored {} task(s), root pid {root_pid}",
        plan.tasks.len()
    ));
    if let Some(e) = notify.tell_only(Script::PostResume, None) {
        log.info(e.to_string());
    }
    if opts.detached {
        return Ok(0);
    }
    // Nothing of the images stays open while the tree runs (the lock, the
    // directory's fd, mapped images, a log file among them), so that the
    // file system holding them can be unmounted meanwhile.
    drop((_lock, _root_lock, _dir_fd, plan, log));
    Ok(rollback::wait_root(root_pid))
}

fn run(
    plan: &plan::Plan,
    opts: &Options,
    log: &Log,
    rb: &mut rollback::Rollback,
    notify: &Notifier,
    stop: &interrupt::Interrupts,
) -> Result<()> {
    crate::sys::nofile::raise();
    // Before anything is made: a broken chain of parent dumps, or no
    // daemon, and there is no restore.
    let chains = task::parent_chains(plan)?;
    procfiles::check(plan)?;
    let lazy = match opts.lazy_pages {
        true => Some(lazy::Lazy::connect(&opts.dir)?),
        false => None,
    };
    nix::sys::prctl::set_child_subreaper(true).map_err(|source| SetupError::Own {
        what: "prctl(PR_SET_CHILD_SUBREAPER)",
        source,
    })?;
    // Before any other thread exists: the namespace is for the children
    // of crit's threads, which share this setting.
    if let Some(t) = &plan.ns.time {
        ns::clocks::new_time_ns(t)?;
    }
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|source| SetupError::Own {
            what: "pipe2",
            source,
        })
    };
    let (status_r, status_w) = pipe()?;
    let (hold_r, hold_w) = pipe()?;
    let sync = child::Sync { status_w, hold_r };
    rb.hold_w = Some(hold_w);
    // Read before the tree exists: a cgroup namespace of its own is
    // entered by the root task before it forks.
    let cgroups = cgroups::read(&plan.dir, plan.root_cg_set, &opts.cgroup_roots)?;
    let cgroup_ns = cgroups.namespace_roots(plan, opts.manage_cgroups, log, &mut rb.cgroups)?;
    let joined = joined_ns(plan, opts)?;
    let root = if plan.ns.needs_yard() || !joined.is_empty() {
        let yard = ns::YardOpts {
            dir: &plan.dir,
            root: opts.root.as_deref(),
            ext_mnt: &opts.ext_mnt,
            net_fd: external_net(plan, opts)?,
            joined,
        };
        let mut made = Vec::new();
        let r = ns::in_yard(&plan.ns, yard, &mut made, || {
            make_tree(plan, opts, log, rb, &sync, notify, cgroup_ns)
        });
        rb.mountpoints = made;
        let root = r?;
        notify.tell(Script::SetupNamespaces, Some(root as i32))?;
        notify.tell(Script::PostSetupNamespaces, None)?;
        root
    } else {
        make_tree(plan, opts, log, rb, &sync, notify, cgroup_ns)?
    };
    drop(sync);
    if plan.ns.own_pids() {
        // Killing pid 1 of the namespace ends every task in it.
        rb.ids = vec![root];
    }
    stop.check()?;
    // Each page image is mapped in by the thread that writes it into its
    // task (task::take_over_all), and given back after.
    let pages = task::open_pages(plan, chains)?;
    wait_ready(plan, status_r, log)?;
    stop.check()?;
    if plan.ns.own_pids() {
        plan.set_hosts(tree::host_pids(root)?);
    }
    janitor::note_tasks(&plan.live().map(|t| plan.host(t.pid)).collect::<Vec<_>>());
    if opts.manage_cgroups != CgMode::None {
        cgroups.join_all(plan, opts.manage_cgroups, log, &mut rb.cgroups)?;
    }
    // Every task rebuilt and stopped: the last word before they run.
    let repaired = std::mem::take(&mut rb.tcp_repaired);
    let before_resume = || -> Result<()> {
        stop.check()?;
        let root = plan.host(plan.tasks[0].pid);
        notify.tell(Script::PostRestore, Some(root as i32))?;
        // Every connection's both ends exist: leaving repair mode sends a
        // window probe, which must find its peer (the lock still drops it
        // for an outside one, which then retransmits).
        for (fd, s) in &repaired {
            tcp::finish(fd, s)?;
            inet::finish(fd, s)?;
        }
        settle(plan, opts, log, root)?;
        let own_net = plan.ns.owned.has(crate::model::ns::Kind::Net);
        let only_logged = [
            own_net.then_some(Script::NetworkUnlock),
            Some(Script::PreResume),
        ];
        for s in only_logged.into_iter().flatten() {
            if let Some(e) = notify.tell_only(s, None) {
                log.info(e.to_string());
            }
        }
        janitor::releasing();
        Ok(())
    };
    let vdso = vdso::Here::read(opts.force_vdso_proxy)?;
    let mem = task::MemOpts {
        lazy: lazy.as_ref(),
        vdso: &vdso,
    };
    task::take_over_all(plan, &pages, log, &before_resume, mem)?;
    // The tree runs: nothing is to be undone, even if crit is killed now
    // (until its tasks are let go, they would die with it).
    janitor::done();
    match &lazy {
        Some(l) => l.finished(),
        None => Ok(()),
    }
}

/// The last of the restore, done while the rebuilt tree is still held,
/// as CRIU does: from the moment it runs the tree is whole, and crit
/// killed then leaves nothing undone. Writes the pidfile (the root's pid
/// as crit's callers see it; one that cannot be written ends the tree),
/// then lets the packets of the repaired connections through (the lock
/// is the dump's: per connection, or the whole of a namespace of the
/// tree's own that outlived it, such as a manager's).
fn settle(plan: &plan::Plan, opts: &Options, log: &Log, root_pid: u32) -> Result<()> {
    if let Some(p) = &opts.pidfile {
        crate::detach::write_pid(p, root_pid).map_err(|source| SetupError::Pidfile {
            path: p.clone(),
            source,
        })?;
    }
    let conns: Vec<_> = plan
        .files
        .values()
        .filter_map(|f| f.isk.as_ref())
        .filter(|s| tcp::is_connection(s))
        .filter_map(crate::model::netlock::Conn::of_entry)
        .collect();
    if plan.ns.net.is_none() {
        janitor::note_unlocking(&plan.net_lock, &conns);
        for w in tcp::unlock_all(&plan.net_lock, &conns) {
            log.info(w);
        }
    } else if !conns.is_empty() {
        if let Err(e) = tcp::unlock_ns(&plan.net_lock, root_pid) {
            // A namespace made by this restore was never locked.
            log.debug(format!("network namespace of pid {root_pid}: {e}"));
        }
    }
    Ok(())
}

/// Whether the images hold an established TCP connection.
fn has_connections(plan: &plan::Plan) -> bool {
    plan.files
        .values()
        .filter_map(|f| f.isk.as_ref())
        .any(tcp::is_connection)
}

/// Trees of this many tasks or more fork from a heap in huge pages
/// ([`crate::sys::mmap::huge_heap`]): collapsing costs up to 2.5 ms per
/// 2 MiB here, each fork then saves about 0.1 ms per 2 MiB of heap
/// (copying and later unmapping its page tables), so it pays from about
/// 30 tasks. Measured: 512 tasks of 4 MiB 0.99-1.15 -> 0.94-1.0 s, 2,048
/// tasks of 1 MiB 3.35-3.45 -> 2.58 s.
const HUGE_HEAP_FROM: usize = 64;

/// Opens every file and socket of the tree, then clones its root (which
/// forks the rest); returns the root's pid as crit sees it.
fn make_tree(
    plan: &plan::Plan,
    opts: &Options,
    log: &Log,
    rb: &mut rollback::Rollback,
    sync: &child::Sync,
    notify: &Notifier,
    cgroup_ns: Option<Vec<(PathBuf, std::fs::File)>>,
) -> Result<u32> {
    let mut res = reservoir::Reservoir {
        cgroup_ns,
        ..Default::default()
    };
    // A network namespace this restore made holds only the tree: locked
    // as CRIU locks it before connections are repaired, since leaving
    // repair mode sends packets that a listener of the tree would answer
    // with a reset (lifted with the dump's lock right before the tree runs).
    // A joined one is shared and live (a pod's): never locked whole.
    let joined_net = opts
        .join_ns
        .iter()
        .any(|j| j.kind == crate::model::ns::Kind::Net);
    if matches!(plan.ns.net, Some(ns::NetPlan::Links(_))) && has_connections(plan) && !joined_net {
        if let Err(e) = plan.net_lock.lock_ns() {
            log.info(format!(
                "cannot lock the new network namespace ({e}): connections may be reset"
            ));
        }
    }
    files::apply_inherited(plan, opts, &mut res)?;
    kinds::open_ghosts(plan, &mut res)?;
    kinds::open_memfds(plan, &mut res)?;
    kinds::open_anon_shared(plan, &mut res)?;
    kinds::open_exited_pidfds(plan, &mut res)?;
    files::open_pipes(plan, &mut res)?;
    files::open_fifos(plan, &mut res)?;
    files::open_regular(plan, &mut res, opts.shell_job, notify)?;
    let _ = plan.ptys_made.set(res.ptys.clone());
    for w in res.pty_warnings.drain(..) {
        log.warn(w);
    }
    kinds::open_misc(plan, opts, &mut res, log)?;
    let unix_r = unix::open_unix(plan, opts, &mut res, log);
    rb.created_paths.append(&mut res.created_paths);
    unix_r?;
    files::check_all_opened(plan, &res)?;
    log.debug(format!(
        "files and sockets made: {} objects",
        res.by_id.len()
    ));
    if plan.tasks.len() >= HUGE_HEAP_FROM {
        let t0 = std::time::Instant::now();
        let huge = crate::sys::mmap::huge_heap();
        log.debug(format!(
            "heap: {huge} bytes in huge pages in {:?}",
            t0.elapsed()
        ));
    }
    let spawned = tree::spawn(plan, 0, &res, sync);
    // Once tasks may hold the connections, they go silent only after the
    // rollback has killed them.
    rb.tcp_live.take_from(&mut res.tcp_live);
    rb.tcp_repaired.append(&mut res.tcp_repaired);
    let root = spawned?;
    rb.spawned = true;
    Ok(root)
}

/// The namespaces of `--join-ns`, opened (one of each kind, the last
/// given winning, as CRIU's list would enter them in turn).
fn joined_ns(
    plan: &plan::Plan,
    opts: &Options,
) -> Result<Vec<(crate::model::ns::Kind, std::os::fd::OwnedFd)>> {
    let mut joined: Vec<(crate::model::ns::Kind, std::os::fd::OwnedFd)> = Vec::new();
    for j in &opts.join_ns {
        if let (crate::model::ns::Kind::Net, Some(ns::NetPlan::External(key))) =
            (j.kind, &plan.ns.net)
        {
            return Err(ns::NsError::JoinExternalNet { key: key.clone() }.into());
        }
        let (kind, fd) = j.open()?;
        joined.retain(|(k, _)| *k != kind);
        joined.push((kind, fd));
    }
    Ok(joined)
}

/// The network namespace handed in with `--inherit-fd fd[N]:KEY` for a
/// tree whose namespace was dumped as external with KEY.
fn external_net(plan: &plan::Plan, opts: &Options) -> Result<Option<std::os::fd::OwnedFd>> {
    let Some(ns::NetPlan::External(key)) = &plan.ns.net else {
        return Ok(None);
    };
    let (n, _) = opts
        .inherit_fds
        .iter()
        .find(|(_, what)| what == key)
        .ok_or_else(|| ns::NsError::NoExternalNet { key: key.clone() })?;
    crate::sys::sock::dup_raw(*n).map(Some).map_err(|source| {
        SetupError::InheritFd {
            fd: *n,
            key: key.clone(),
            source,
        }
        .into()
    })
}

/// Opens the images directory (O_PATH) and makes the plan name it as
/// /proc/self/fd/N, a path that resolves from any mount namespace.
fn reach_images(plan: &mut plan::Plan) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    let fd = nix::fcntl::open(
        &plan.dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| SetupError::Dir {
        path: plan.dir.clone(),
        source: e.into(),
    })?;
    plan.dir = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    Ok(fd)
}

/// An exclusive lock on a directory (flock: the images', the root file
/// system's), held until the restore ends.
fn lock_dir(dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let f = std::fs::File::open(dir).map_err(|source| SetupError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
        SetupError::Lock {
            path: dir.to_path_buf(),
            source: e.into(),
        }
        .into()
    })
}

/// Reads one report per task from the status pipe: "OK PID" or "ERR PID
/// why".
fn wait_ready(plan: &plan::Plan, status_r: std::os::fd::OwnedFd, log: &Log) -> Result<()> {
    let t1 = std::time::Instant::now();
    let mut reports = std::io::BufReader::new(std::fs::File::from(status_r));
    let mut ready = 0;
    while ready < plan.tasks.len() {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut reports, &mut line)
            .map_err(|e| Error::io("status pipe", e))?;
        if n == 0 {
            return Err(SetupError::ChildVanished {
                ready,
                total: plan.tasks.len(),
            }
            .into());
        }
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("ERR ") {
            let (pid, msg) = rest.split_once(' ').unwrap_or((rest, ""));
            return Err(error::TaskError::Child {
                pid: pid.parse().unwrap_or(0),
                msg: msg.to_string(),
            }
            .into());
        }
        ready += 1;
        log.debug(format!("task ready: {line}"));
    }
    log.debug(format!("tree prepared {:?} after the fork", t1.elapsed()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_unix_sk_values() {
        let mut e = ExtUnix::default();
        e.add("12,13").unwrap();
        e.add("14=/run/x.sock").unwrap();
        e.add("15=@abs").unwrap();
        assert!(!e.all);
        assert_eq!(e.per.get(&12), Some(&None));
        assert_eq!(e.per.get(&13), Some(&None));
        assert_eq!(e.per.get(&14), Some(&Some("/run/x.sock".to_string())));
        assert_eq!(e.per.get(&15), Some(&Some("@abs".to_string())));
        e.add("").unwrap();
        assert!(e.all);
        assert!(e.add("x").is_err());
        assert!(e.add("1,,2").is_err());
        assert!(e.add("3=").is_err());
    }

    #[test]
    fn inherit_fd_values() {
        assert_eq!(
            parse_inherit_fd("fd[3]:socket:[42]").unwrap(),
            (3, "socket:[42]".to_string())
        );
        assert_eq!(
            parse_inherit_fd("fd[10]:/dev/null").unwrap(),
            (10, "/dev/null".to_string())
        );
        assert!(parse_inherit_fd("fd3:x").is_err());
        assert!(parse_inherit_fd("fd[x]:y").is_err());
        assert!(parse_inherit_fd("fd[1]:").is_err());
    }
}
