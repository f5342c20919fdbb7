//! What runs inside a freshly forked task, while it is still a copy of
//! crit: join its session and process group, fork its own children, move
//! its fds to their numbers (and the files its VMAs map to numbers crit
//! knows), set cwd, root and umask, report, and wait to be taken over.

use super::error::TaskError;
use super::plan::{Plan, Task};
use super::reservoir::Reservoir;
use crate::error::Result;
use crate::sys::fdops;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Pipes that connect crit and the forked tasks while they are prepared.
pub struct Sync {
    /// Tasks write "OK pid" or "ERR pid reason" lines here.
    pub status_w: OwnedFd,
    /// Tasks block reading this until crit takes them over.
    pub hold_r: OwnedFd,
}

/// Where a task keeps what crit needs after the fds are laid out.
pub struct Layout {
    /// First fd number above the task's own fds: VMA files start here.
    pub vbase: RawFd,
    /// File ids of the VMA files, at vbase, vbase+1, ...
    pub vma_ids: Vec<u32>,
    /// Shared anonymous memory objects (by shmid), right after them.
    pub shm_ids: Vec<u64>,
}

impl Layout {
    pub fn for_task(t: &Task) -> Layout {
        let top = t.fds.iter().map(|f| f.fd as RawFd).max().unwrap_or(2);
        let vbase = (top + 1).max(3);
        let mut vma_ids = vec![t.mm.exe_file_id];
        for v in &t.mm.vmas {
            if super::files::is_file_vma(v) && !vma_ids.contains(&(v.shmid as u32)) {
                vma_ids.push(v.shmid as u32);
            }
        }
        let mut shm_ids = Vec::new();
        for v in &t.mm.vmas {
            if super::files::is_anon_shared(v) && !shm_ids.contains(&v.shmid) {
                shm_ids.push(v.shmid);
            }
        }
        Layout {
            vbase,
            vma_ids,
            shm_ids,
        }
    }

    pub fn shm_fd(&self, shmid: u64) -> Option<RawFd> {
        self.shm_ids
            .iter()
            .position(|&i| i == shmid)
            .map(|k| self.vbase + (self.vma_ids.len() + k) as RawFd)
    }

    pub fn fd_of(&self, file_id: u32) -> Option<RawFd> {
        self.vma_ids
            .iter()
            .position(|&i| i == file_id)
            .map(|k| self.vbase + k as RawFd)
    }

    /// Fds at and above this are crit's and are closed once memory is built.
    pub fn end(&self) -> RawFd {
        self.vbase + (self.vma_ids.len() + self.shm_ids.len()) as RawFd
    }
}

/// Reports a line to crit.
pub fn report(status: RawFd, line: &str) {
    let mut b = line.as_bytes().to_vec();
    b.truncate(4000);
    b.push(b'\n');
    // One write of less than PIPE_BUF bytes is atomic.
    let _ = fdops::write_fd(status, &b);
}

/// The body of a forked task; never returns.
pub fn run(
    plan: &Plan,
    idx: usize,
    res: &Reservoir,
    sync: &Sync,
    spawn: &dyn Fn(usize) -> Result<()>,
) -> ! {
    let pid = plan.tasks[idx].pid;
    let mut status = sync.status_w.as_raw_fd();
    match prepare(plan, idx, res, sync, spawn, &mut status) {
        Ok((st, hold)) => {
            report(st, &format!("OK {pid}"));
            if let Some(status) = plan.tasks[idx].zombie {
                die_like(status);
            }
            // Wait to be seized; EOF means crit is gone.
            let mut b = [0u8; 1];
            let _ = fdops::read_fd(hold, &mut b);
            crate::sys::clone::child_exit(1)
        }
        Err(e) => {
            report(
                status,
                &format!("ERR {pid} {}", e.to_string().replace('\n', " ")),
            );
            crate::sys::clone::child_exit(1)
        }
    }
}

fn prepare(
    plan: &Plan,
    idx: usize,
    res: &Reservoir,
    sync: &Sync,
    spawn: &dyn Fn(usize) -> Result<()>,
    status: &mut RawFd,
) -> Result<(RawFd, RawFd)> {
    let t = &plan.tasks[idx];
    let pid = t.pid;
    if idx == 0 {
        super::ns::root_task_mounts(&plan.ns)?;
        if let Some(roots) = &res.cgroup_ns {
            super::cgroups::enter_namespace(roots, pid)?;
        }
    }
    join_session_and_group(plan, t)?;
    // A session leader's pty made anew is its controlling terminal again
    // before it forks its children, who inherit it (a process's
    // controlling terminal is its own, copied at fork; one set later
    // would be the leader's alone). Through crit's copy of the fd, as its
    // fds are laid out only later; its foreground group is set once
    // every group exists (task.rs).
    if let Some(c) = t.ctty.filter(|c| res.ptys.contains(&c.index)) {
        let fd = res.raw(c.id).ok_or(TaskError::FdNotOpened {
            pid,
            fd: c.fd,
            id: c.id,
        })?;
        crate::sys::tty::set_controlling(fd).map_err(|e| TaskError::Own {
            pid,
            what: "TIOCSCTTY",
            source: nix::Error::from_raw(crate::sys::errno_of(&e).unwrap_or(libc::EIO)),
        })?;
    }
    // Its own /proc files, now that its /proc directory exists (before
    // its children, who may hold them too).
    for (id, fd) in super::procfiles::open_own(plan, pid, res)? {
        note_pair(id, std::os::fd::IntoRawFd::into_raw_fd(fd));
    }
    // Listeners this task holds first take its credentials for later
    // clients (crit made them listen).
    super::unix::task::relisten(plan, res, pid)?;
    // Socket pairs this task makes (before forking its children, who
    // inherit them). Their fds go to `install`, which closes what this task
    // does not keep.
    for tp in res.task_pairs.iter().filter(|p| p.pid == pid) {
        let fd_of = |id: u32| res.raw(id).or_else(|| made_pair(id));
        let (a, b) = super::unix::task::make_task_pair(plan, tp, &fd_of)?;
        note_pair(tp.a_id, std::os::fd::IntoRawFd::into_raw_fd(a));
        note_pair(tp.b_id, std::os::fd::IntoRawFd::into_raw_fd(b));
    }
    for (k, c) in plan.tasks.iter().enumerate() {
        if c.ppid == pid {
            spawn(k)?;
        }
    }
    // Connections through in-tree listeners: this task's clients, then
    // the ends it accepts (its children connect meanwhile).
    let fd_of = |id: u32| res.raw(id).or_else(|| made_pair(id));
    let note = |id: u32, fd: OwnedFd| note_pair(id, std::os::fd::IntoRawFd::into_raw_fd(fd));
    super::unix::task::make_task_conns(plan, res, pid, &fd_of, &note)?;
    if t.zombie.is_some() {
        return Ok((*status, -1));
    }
    // A removed cwd was made again, opened and removed (kinds.rs): it
    // is entered through that descriptor, which the layout closes.
    let ghost_cwd = res.ghosts.contains(&t.fs.cwd_id);
    if let Some(fd) = res.by_id.get(&t.fs.cwd_id).filter(|_| ghost_cwd) {
        nix::unistd::fchdir(fd).map_err(|source| TaskError::Own {
            pid,
            what: "fchdir to its removed cwd",
            source,
        })?;
    }
    let (st_fd, hold_fd) = lay_out_fds(t, res, sync)?;
    *status = st_fd;
    fill_epolls(plan, t)?;
    set_owners(plan, t)?;
    connect_outside(plan, t, res)?;
    set_fs(plan, t, ghost_cwd)?;
    Ok((st_fd, hold_fd))
}

/// Session and group first, so that children inherit them. The root's
/// group or a session whose leader is not in the images (a shell job's)
/// is replaced by crit's own, as with --shell-job; another group whose
/// leader is gone is made again (`join_lost_group`).
fn join_session_and_group(plan: &Plan, t: &Task) -> Result<()> {
    let pid = t.pid;
    if t.sid == t.pid {
        nix::unistd::setsid().map_err(|source| TaskError::Own {
            pid,
            what: "setsid",
            source,
        })?;
    }
    let in_images = |id: u32| plan.tasks.iter().any(|x| x.pid == id);
    let me = nix::unistd::Pid::from_raw(0);
    let cur = nix::unistd::getpgrp().as_raw() as u32;
    if t.pgid != cur && in_images(t.pgid) {
        let g = nix::unistd::Pid::from_raw(if t.pgid == t.pid { 0 } else { t.pgid as i32 });
        nix::unistd::setpgid(me, g).map_err(|source| TaskError::OwnOn {
            pid,
            what: "setpgid to",
            arg: t.pgid.to_string(),
            source,
        })?;
    }
    if plan.lost_group(t) {
        join_lost_group(pid, t.pgid)?;
    }
    if in_images(t.sid) {
        let sid = nix::unistd::getsid(None)
            .map(|p| p.as_raw() as u32)
            .unwrap_or(0);
        if sid != t.sid {
            return Err(TaskError::Session { pid, sid: t.sid }.into());
        }
    }
    if in_images(t.pgid) && nix::unistd::getpgrp().as_raw() as u32 != t.pgid {
        return Err(TaskError::Group { pid, pgid: t.pgid }.into());
    }
    Ok(())
}

/// Joins process group `pgid`, whose leader is not in the images (it
/// exited while members lived on): as a group made by an earlier task of
/// the tree, or else made now by a helper, as CRIU 4.2 makes one. The
/// helper is cloned with the leader's pid, made leader of its own group,
/// joined, then killed and reaped at once: the group lives on with this
/// task in it, for the tree's other members to join, and the pid stays
/// the group's.
fn join_lost_group(pid: u32, pgid: u32) -> Result<()> {
    use crate::sys::clone::{clone3_with_tid, ForkResult};
    use nix::unistd::{setpgid, Pid};
    let me = Pid::from_raw(0);
    if setpgid(me, Pid::from_raw(pgid as i32)).is_ok() {
        return Ok(());
    }
    let h = match clone3_with_tid(&[pgid as i32], 0) {
        Ok(ForkResult::Child) => {
            // Until killed below (or with this task).
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            loop {
                nix::unistd::pause();
            }
        }
        Ok(ForkResult::Parent(h)) => Pid::from_raw(h),
        Err(source) => {
            return Err(TaskError::Call {
                pid,
                what: "clone3 of the helper for its process group",
                source,
            }
            .into())
        }
    };
    let joined = match h.as_raw() as u32 == pgid {
        true => setpgid(h, h).and_then(|_| setpgid(me, h)).is_ok(),
        false => false,
    };
    let _ = nix::sys::signal::kill(h, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(h, Some(nix::sys::wait::WaitPidFlag::__WALL));
    match joined {
        true => Ok(()),
        false => Err(TaskError::Group { pid, pgid }.into()),
    }
}

/// Moves every object the task holds to its fd number, the files its
/// VMAs map and its shared memory above them, and crit's two pipes last.
/// Returns the fds of the status and hold pipes.
fn lay_out_fds(t: &Task, res: &Reservoir, sync: &Sync) -> Result<(RawFd, RawFd)> {
    let pid = t.pid;
    let lay = Layout::for_task(t);
    let own = made_pairs();
    let mut pairs: Vec<(RawFd, RawFd, bool)> = Vec::new();
    for f in &t.fds {
        // Opened by the task once every task exists (task.rs).
        if t.pidfds.iter().any(|p| p.fd == f.fd) {
            continue;
        }
        let src =
            res.raw(f.id)
                .or_else(|| own.get(&f.id).copied())
                .ok_or(TaskError::FdNotOpened {
                    pid,
                    fd: f.fd,
                    id: f.id,
                })?;
        pairs.push((src, f.fd as RawFd, f.flags & 1 != 0));
    }
    for (k, id) in lay.vma_ids.iter().enumerate() {
        let src = res
            .vma_files
            .get(id)
            .map(|f| f.as_raw_fd())
            .ok_or(TaskError::MappedNotOpened { pid, id: *id })?;
        pairs.push((src, lay.vbase + k as RawFd, true));
    }
    for id in &lay.shm_ids {
        let src = res
            .shm_files
            .get(id)
            .map(|f| f.as_raw_fd())
            .ok_or(TaskError::SharedNotMade { pid, id: *id })?;
        pairs.push((src, lay.shm_fd(*id).unwrap_or(-1), true));
    }
    let st_fd = lay.end();
    let hold_fd = lay.end() + 1;
    pairs.push((sync.status_w.as_raw_fd(), st_fd, true));
    pairs.push((sync.hold_r.as_raw_fd(), hold_fd, true));
    install(&pairs, pid)?;
    Ok((st_fd, hold_fd))
}

/// Cwd (unless removed: entered before), root and umask. The images
/// name both directories from the root
/// of the mount namespace, as CRIU does: the cwd is entered first, while
/// that root is still the task's (after a chroot its path would be
/// looked up inside the new root), and a chroot keeps the cwd.
fn set_fs(plan: &Plan, t: &Task, ghost_cwd: bool) -> Result<()> {
    let pid = t.pid;
    let name = |id: u32| -> Result<Option<String>> {
        Ok(plan.file(id, pid)?.reg.as_ref().map(|r| r.name.clone()))
    };
    let (cwd, root) = (name(t.fs.cwd_id)?, name(t.fs.root_id)?);
    if let Some(c) = cwd.filter(|_| !ghost_cwd) {
        nix::unistd::chdir(c.as_str()).map_err(|source| TaskError::OwnOn {
            pid,
            what: "chdir",
            arg: c.clone(),
            source,
        })?;
    }
    if let Some(r) = root.filter(|r| r != "/") {
        nix::unistd::chroot(r.as_str()).map_err(|source| TaskError::OwnOn {
            pid,
            what: "chroot",
            arg: r.clone(),
            source,
        })?;
    }
    if let Some(m) = t.fs.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m));
    }
    Ok(())
}

/// Ends this process the way the zombie it stands for ended: killed by
/// the same signal, or exiting with the same code.
fn die_like(status: u32) -> ! {
    let sig = (status & 0x7f) as i32;
    if sig != 0 {
        if let Ok(s) = nix::sys::signal::Signal::try_from(sig) {
            let _ = crate::sys::sig::set_default(s);
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            );
            let _ = nix::sys::signal::raise(s);
        }
    }
    crate::sys::clone::child_exit(((status >> 8) & 0xff) as i32)
}

thread_local! {
    /// Objects made in this process or an ancestor (copied by fork): socket
    /// pairs and /proc files (procfiles.rs), file id -> fd number.
    static PAIRS: std::cell::RefCell<std::collections::HashMap<u32, RawFd>> = Default::default();
}

fn note_pair(id: u32, fd: RawFd) {
    PAIRS.with(|p| p.borrow_mut().insert(id, fd));
}

fn made_pair(id: u32) -> Option<RawFd> {
    PAIRS.with(|p| p.borrow().get(&id).copied())
}

fn made_pairs() -> std::collections::HashMap<u32, RawFd> {
    PAIRS.with(|p| p.borrow().clone())
}

/// Closes every fd of this process but the sources `at` holds: one
/// close_range per gap between them. Listing /proc/self/fd instead costs
/// a proc inode and dentry per fd (11 ms for 10,000 here). Kernels
/// without close_range (before 5.9) have the fds listed.
fn close_all_but(at: &std::collections::HashMap<RawFd, RawFd>) {
    let mut keep: Vec<u32> = at.keys().filter(|&&f| f >= 0).map(|&f| f as u32).collect();
    keep.sort_unstable();
    let mut from = 0u32;
    let mut ranged = true;
    for k in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if k > from && fdops::close_range(from, k - 1).is_err() {
            ranged = false;
            break;
        }
        from = k.saturating_add(1);
    }
    if ranged {
        return;
    }
    if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
        let open: Vec<RawFd> = d
            .flatten()
            .filter_map(|ent| {
                ent.file_name()
                    .to_str()
                    .and_then(|s| s.parse::<RawFd>().ok())
            })
            .collect();
        for fd in open {
            if !at.contains_key(&fd) {
                let _ = fdops::close(fd);
            }
        }
    }
}

/// Moves each source fd to its target number and closes every other fd,
/// in place: a source in the way of a target is moved aside first, so that
/// no more than a few fds beyond the sources are ever open (a task may have
/// tens of thousands, near the fd limit).
fn install(pairs: &[(RawFd, RawFd, bool)], pid: u32) -> Result<()> {
    use std::collections::HashMap;
    // Where each source object is now, and how many targets still want it.
    let mut pos: HashMap<RawFd, RawFd> = HashMap::new();
    let mut pending: HashMap<RawFd, usize> = HashMap::new();
    for &(s, _, _) in pairs {
        pos.insert(s, s);
        *pending.entry(s).or_default() += 1;
    }
    // Which source object sits at an fd number.
    let mut at: HashMap<RawFd, RawFd> = pos.iter().map(|(&k, &v)| (v, k)).collect();
    close_all_but(&at);
    let top = pairs.iter().map(|p| p.1).max().unwrap_or(0) + 1;
    let mut placed: std::collections::HashSet<RawFd> = std::collections::HashSet::new();
    for &(s, t, cloexec) in pairs {
        // Someone else's source sits on the target: move it aside.
        if let Some(&other) = at.get(&t) {
            if other != s && pending.get(&other).copied().unwrap_or(0) > 0 {
                let new = fdops::dup_at_least(t, top).map_err(|source| TaskError::MoveAside {
                    pid,
                    fd: t,
                    source,
                })?;
                pos.insert(other, new);
                at.insert(new, other);
                at.remove(&t);
            }
        }
        let cur = pos[&s];
        fdops::dup_to(cur, t, cloexec).map_err(|source| TaskError::Place { pid, fd: t, source })?;
        placed.insert(t);
        if at.get(&t) != Some(&s) {
            at.remove(&t);
        }
        let left = pending.get_mut(&s).map(|n| {
            *n -= 1;
            *n
        });
        if left == Some(0) && cur != t && !placed.contains(&cur) {
            let _ = fdops::close(cur);
            at.remove(&cur);
        }
    }
    // Sources that ended on no target.
    for (fd, _) in at {
        if !placed.contains(&fd) {
            let _ = fdops::close(fd);
        }
    }
    Ok(())
}

/// Connects this task's sockets whose peer is outside the images, with the
/// task's effective uid and gid and its supplementary groups, so that an
/// edited image reaches only what the task's owner could, and the peer
/// sees the task's pid and credentials (SO_PEERCRED).
fn connect_outside(plan: &Plan, t: &Task, res: &Reservoir) -> Result<()> {
    use nix::unistd::{getgroups, setegid, seteuid, setgroups, Gid, Uid};
    let creds = t.threads[0]
        .core
        .thread_core
        .as_ref()
        .and_then(|tc| tc.creds.as_ref());
    let (euid, egid) = creds.map(|c| (c.euid, c.egid)).unwrap_or((0, 0));
    let pid = t.pid;
    let groups: Vec<Gid> = creds
        .map(|c| c.groups.iter().map(|&g| Gid::from_raw(g)).collect())
        .unwrap_or_default();
    for x in &res.ext_connects {
        let Some(f) = t.fds.iter().find(|f| f.id == x.id) else {
            continue;
        };
        let first = plan.first_holder(x.id);
        if first != Some(t.pid) {
            continue;
        }
        // A root task (euid 0) connects as root: it could anyway.
        let switch = euid != 0;
        let saved = if switch {
            let own = |what| move |source| TaskError::Own { pid, what, source };
            let own_on = |what, arg: u32| {
                move |source| TaskError::OwnOn {
                    pid,
                    what,
                    arg: arg.to_string(),
                    source,
                }
            };
            let saved = getgroups().map_err(own("getgroups"))?;
            setgroups(&groups).map_err(own("setgroups"))?;
            setegid(Gid::from_raw(egid)).map_err(own_on("setegid", egid))?;
            seteuid(Uid::from_raw(euid)).map_err(own_on("seteuid", euid))?;
            Some(saved)
        } else {
            None
        };
        let r = nix::sys::socket::connect(f.fd as RawFd, &x.addr);
        if let Some(saved) = saved {
            // Back to root (the saved uid) for the rest of the preparation.
            seteuid(Uid::from_raw(0))
                .and_then(|_| setegid(Gid::from_raw(0)))
                .and_then(|_| setgroups(&saved))
                .map_err(|source| TaskError::Own {
                    pid,
                    what: "back to root",
                    source,
                })?;
        }
        r.map_err(|source| TaskError::OutsidePeer {
            pid,
            ino: x.ino,
            fd: f.fd,
            addr: x.addr,
            source,
        })?;
    }
    Ok(())
}

/// Each file's owner (who gets SIGIO, or SIGURG), then O_ASYNC, which
/// no open or socket call can give a file: set here, once the owner is
/// there, as CRIU does (opened or made elsewhere, the file lost it).
fn set_owners(plan: &Plan, t: &Task) -> Result<()> {
    const O_ASYNC: u32 = 0o20000;
    for f in &t.fds {
        let Some(e) = plan.files.get(&f.id) else {
            continue;
        };
        let fown = e
            .reg
            .as_ref()
            .map(|x| (&x.fown, x.flags))
            .or(e.pipe.as_ref().map(|x| (&x.fown, x.flags)))
            .or(e.usk.as_ref().map(|x| (&x.fown, x.flags)))
            .or(e.isk.as_ref().map(|x| (&x.fown, x.flags)))
            .or(e.nlsk.as_ref().map(|x| (&x.fown, x.flags)))
            .or(e.psk.as_ref().map(|x| (&x.fown, x.flags)))
            .or(e.efd.as_ref().map(|x| (&x.fown, x.flags)))
            .or(e.epfd.as_ref().map(|x| (&x.fown, x.flags)))
            .or(e.sgfd.as_ref().map(|x| (&x.fown, x.flags)))
            .or(e.tfd.as_ref().map(|x| (&x.fown, x.flags)))
            .or(e.ify.as_ref().map(|x| (&x.fown, x.flags)))
            .or(e.ffy.as_ref().map(|x| (&x.fown, x.flags)))
            .or(e.memfd.as_ref().map(|x| (&x.fown, x.flags)))
            .or(e.tty.as_ref().map(|x| (&x.fown, x.flags)));
        let Some((o, flags)) = fown else {
            continue;
        };
        if o.pid != 0 || o.signum != 0 {
            fdops::set_owner(
                f.fd as RawFd,
                o.pid_type as i32,
                o.pid as i32,
                o.signum as i32,
            )
            .map_err(|source| TaskError::Owner {
                pid: t.pid,
                fd: f.fd,
                owner: o.pid,
                source,
            })?;
        }
        if flags & O_ASYNC != 0 {
            fdops::add_status_flags(f.fd as RawFd, O_ASYNC as i32).map_err(|source| {
                TaskError::Async {
                    pid: t.pid,
                    fd: f.fd,
                    source,
                }
            })?;
        }
    }
    Ok(())
}

/// Registers each epoll's targets under this task's fd numbers. A shared
/// epoll is filled by the first task (in tree order) that has it.
fn fill_epolls(plan: &Plan, t: &Task) -> Result<()> {
    for f in &t.fds {
        let Some(ep) = plan.files.get(&f.id).and_then(|e| e.epfd.as_ref()) else {
            continue;
        };
        let first = plan
            .tasks
            .iter()
            .find(|x| x.fds.iter().any(|g| g.id == f.id))
            .map(|x| x.pid);
        if first != Some(t.pid) {
            continue;
        }
        for tfd in &ep.tfd {
            fdops::epoll_add(f.fd as RawFd, tfd.tfd as RawFd, tfd.events, tfd.data).map_err(
                |source| TaskError::EpollAdd {
                    pid: t.pid,
                    fd: f.fd,
                    target: tfd.tfd,
                    source,
                },
            )?;
        }
    }
    Ok(())
}
