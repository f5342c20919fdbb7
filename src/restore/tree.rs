//! Forks the process tree with the dumped pids: crit clones the root with
//! `clone3(set_tid)`, and each task clones its own children from inside
//! (so parents, sessions and groups come out as dumped).

use super::child::{self, Sync};
use super::plan::Plan;
use super::reservoir::Reservoir;
use crate::error::{Error, Result};

/// Clones task `idx` of the plan with its dumped pid; the clone runs
/// [`child::run`] and never returns. Returns in the caller once cloned.
pub fn spawn(plan: &Plan, idx: usize, res: &Reservoir, sync: &Sync) -> Result<()> {
    let pid = plan.tasks[idx].pid;
    use crate::sys::clone::{clone3_with_tid, ForkResult};
    match clone3_with_tid(&[pid as i32], 0) {
        Ok(ForkResult::Child) => {
            let sp = |k: usize| spawn(plan, k, res, sync);
            child::run(plan, idx, res, sync, &sp)
        }
        Ok(ForkResult::Parent(got)) if got as u32 == pid => Ok(()),
        Ok(ForkResult::Parent(got)) => Err(Error::msg(format!("pid {pid}: clone3 gave pid {got}"))),
        Err(e) if crate::sys::errno_of(&e) == Some(libc::EEXIST) => {
            Err(Error::msg(format!("pid {pid} is already in use")))
        }
        Err(e) => Err(Error::io(format!("pid {pid}: clone3 with set_tid"), e)),
    }
}

/// Errors out, naming the pid, when a pid or tid of the images is taken.
pub fn check_free(plan: &Plan) -> Result<()> {
    for id in plan.all_ids() {
        if std::path::Path::new(&format!("/proc/{id}")).exists() {
            let comm = std::fs::read_to_string(format!("/proc/{id}/comm")).unwrap_or_default();
            return Err(Error::msg(format!(
                "pid {id} is already in use (by {}); the restored tree needs it",
                comm.trim()
            )));
        }
    }
    Ok(())
}
