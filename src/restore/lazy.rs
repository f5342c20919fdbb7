//! `restore --lazy-pages`: the pages of lazy entries (PE_LAZY: private
//! anonymous memory) are not written; each task's mappings that hold
//! them are registered with a userfaultfd made inside the task, and
//! every task's descriptor goes to the lazy-pages daemon (crit's or
//! CRIU's, [`crate::lazy::handover`]) once all tasks have their memory,
//! before anything touches it: the daemon may wait for every task
//! before it serves a fault (CRIU's does). Once the tree runs the daemon
//! hears that the restore is done.

use super::plan::{Plan, Task};
use super::remote::{call, Tracee};
use crate::error::{Error, Result};
use crate::lazy::handover::Sender;
use crate::model::pagemap as pm;
use crate::sys::uffd::{self, Uffd};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

/// The userfaultfd flags: CRIU's (O_CLOEXEC | O_NONBLOCK).
const UFFD_FLAGS: u64 = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
/// The events the daemon follows.
const FEATURES: u64 = uffd::FEATURE_EVENT_FORK
    | uffd::FEATURE_EVENT_REMAP
    | uffd::FEATURE_EVENT_REMOVE
    | uffd::FEATURE_EVENT_UNMAP;

/// Whether this kernel gives a lazy restore what it needs: a
/// userfaultfd with the events the daemon follows (FEATURE_CHECK's
/// lazy_pages).
pub fn probe() -> std::io::Result<()> {
    let fd = uffd::open_own(UFFD_FLAGS)?;
    Uffd::with_events(fd, FEATURES).map(|_| ())
}

pub struct Lazy {
    sender: Mutex<Option<Sender>>,
    /// Each live task's descriptor, by pid, until handed over.
    uffds: Mutex<Vec<(u32, OwnedFd)>>,
}

impl Lazy {
    /// Connects to the daemon listening in images directory `dir`.
    pub fn connect(dir: &std::path::Path) -> Result<Lazy> {
        Ok(Lazy {
            sender: Mutex::new(Some(Sender::connect(dir)?)),
            uffds: Mutex::new(Vec::new()),
        })
    }

    /// Makes `task`'s userfaultfd (inside it, through `t`, whose host
    /// pid is `host`) and registers the mappings that hold its lazy
    /// pages, which the restore did not write.
    pub fn register(&self, t: &mut dyn Tracee, task: &Task, host: u32) -> Result<()> {
        let fd = call(
            t,
            "userfaultfd",
            libc::SYS_userfaultfd,
            [UFFD_FLAGS, 0, 0, 0, 0, 0],
        )?;
        let copy = crate::sys::pidfd::getfd(host as i32, fd as i32);
        call(
            t,
            "close of the userfaultfd",
            libc::SYS_close,
            [fd, 0, 0, 0, 0, 0],
        )?;
        let fail = |what: &'static str| {
            let pid = task.pid;
            move |source| Error::Io {
                what: format!("pid {pid}: {what}"),
                source,
            }
        };
        let copy = copy.map_err(fail("taking the userfaultfd"))?;
        let u = Uffd::with_events(copy, FEATURES).map_err(fail("userfaultfd features"))?;
        for (s, e) in lazy_mappings(task) {
            u.register_missing(s, e - s)
                .map_err(fail("registering lazy memory"))?;
        }
        let fd: OwnedFd = u.into();
        self.uffds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((task.pid, fd));
        Ok(())
    }

    /// Hands every task's descriptor to the daemon, in the tree's order
    /// (zombies by their negated pid).
    pub fn hand_over(&self, plan: &Plan) -> Result<()> {
        let mut uffds = std::mem::take(&mut *self.uffds.lock().unwrap_or_else(|e| e.into_inner()));
        let mut sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = sender.as_mut() else {
            return Ok(());
        };
        for t in &plan.tasks {
            let fd = uffds
                .iter()
                .position(|(p, _)| *p == t.pid)
                .map(|i| uffds.swap_remove(i).1);
            s.send(t.pid as i32, fd.as_ref())?;
        }
        Ok(())
    }

    /// The tree runs.
    pub fn finished(&self) -> Result<()> {
        match self.sender.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(s) => s.finished(),
            None => Ok(()),
        }
    }
}

/// The lazy runs of `task`, as addresses (which the restore skips).
pub fn lazy_runs(task: &Task) -> Vec<(u64, u64)> {
    pm::lazy_runs(&task.pagemap)
        .iter()
        .map(|r| (r.vaddr, r.end()))
        .collect()
}

/// The mappings of `task` that hold lazy pages.
fn lazy_mappings(task: &Task) -> Vec<(u64, u64)> {
    let runs = lazy_runs(task);
    task.mm
        .vmas
        .iter()
        .filter(|v| runs.iter().any(|&(s, e)| s < v.end && e > v.start))
        .map(|v| (v.start, v.end))
        .collect()
}
