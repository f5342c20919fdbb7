//! Forks the process tree with the dumped pids: crit clones the root with
//! `clone3(set_tid)`, and each task clones its own children from inside
//! (so parents, sessions and groups come out as dumped).

use super::child::{self, Sync};
use super::error::TaskError;
use super::plan::Plan;
use super::reservoir::Reservoir;
use crate::error::Result;
use std::collections::HashMap;

/// Clones task `idx` of the plan with its dumped pid; the clone runs
/// [`child::run`] and never returns. Returns in the caller once cloned,
/// with the clone's pid as the caller sees it: the dumped one, but for
/// the root of a tree with its own pid namespace (pid 1 inside).
pub fn spawn(plan: &Plan, idx: usize, res: &Reservoir, sync: &Sync) -> Result<u32> {
    let pid = plan.tasks[idx].pid;
    let ns_root = idx == 0 && plan.ns.own_pids();
    if ns_root && pid != 1 {
        return Err(TaskError::NsRootNotOne { pid }.into());
    }
    use crate::sys::clone::{clone3_with_tid, ForkResult};
    match clone3_with_tid(&[pid as i32], 0) {
        Ok(ForkResult::Child) => {
            let sp = |k: usize| spawn(plan, k, res, sync).map(|_| ());
            child::run(plan, idx, res, sync, &sp)
        }
        Ok(ForkResult::Parent(got)) if ns_root || got as u32 == pid => Ok(got as u32),
        Ok(ForkResult::Parent(got)) => Err(TaskError::ClonedAs { pid, got }.into()),
        Err(e) if crate::sys::errno_of(&e) == Some(libc::EEXIST) => {
            Err(TaskError::PidInUse { pid }.into())
        }
        Err(source) => Err(TaskError::Call {
            pid,
            what: "clone3 with set_tid",
            source,
        }
        .into()),
    }
}

/// Where the tree's tasks are in crit's pid namespace: image pid -> host
/// pid, read from the children lists below the root and each child's
/// NSpid (its pid in the innermost namespace comes last).
pub fn host_pids(root_host: u32) -> Result<HashMap<u32, u32>> {
    let mut map = HashMap::new();
    let mut todo = vec![root_host];
    while let Some(h) = todo.pop() {
        let ns =
            crate::sys::procfs::ns_pid(h).map_err(|source| TaskError::NsPid { pid: h, source })?;
        map.insert(ns, h);
        todo.extend(
            crate::sys::procfs::children(h)
                .map_err(|source| TaskError::Children { pid: h, source })?,
        );
    }
    Ok(map)
}

/// How long a pid held by a task that is exiting (a zombie, or dying)
/// is waited for: the dumped tree, killed by the dump a moment ago,
/// until its parent reaps it.
const EXITING_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Errors out, naming the pid, when a pid or tid of the images is taken
/// (none can be in a pid namespace that does not exist yet). A pid held
/// by an exiting task is waited for a moment first.
pub fn check_free(plan: &Plan) -> Result<()> {
    if plan.ns.own_pids() {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + EXITING_WAIT;
    // The groups' pids too: a helper takes each (child.rs).
    for id in plan.all_ids().into_iter().chain(plan.lost_groups()) {
        while exiting(id) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if std::path::Path::new(&format!("/proc/{id}")).exists() {
            let comm = std::fs::read_to_string(format!("/proc/{id}/comm")).unwrap_or_default();
            return Err(TaskError::PidTaken {
                pid: id,
                comm: comm.trim().to_string(),
            }
            .into());
        }
    }
    Ok(())
}

/// Whether `id` is a task that is exiting: a zombie (Z) or dead (X).
fn exiting(id: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{id}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|st| st == "Z" || st == "X")
    })
}
