//! Pids as the tree sees them. crit works with host pids (ptrace, /proc);
//! the images hold the pids of the tree's own pid namespace when it has
//! one (the last NSpid of /proc/PID/status), as CRIU writes them.

use crate::dump::error::DumpError;
use crate::dump::procfs;
use crate::dump::tree::Task;
use crate::error::Result;
use std::collections::HashMap;

/// Host pid -> pid in the tree's pid namespace. Empty (every pid maps to
/// itself) when the tree shares crit's pid namespace.
#[derive(Debug, Default, Clone)]
pub struct PidMap {
    virt: HashMap<i32, i32>,
    /// The tree has a pid namespace of its own.
    own: bool,
}

impl PidMap {
    /// The map of a tree in its own pid namespace: every thread's NSpid
    /// has exactly one level below crit's (`depth` = crit's levels).
    /// Refuses nested pid namespaces and a root that is not the
    /// namespace's init.
    pub fn of_tree(tasks: &[Task], depth: usize) -> Result<PidMap> {
        let mut m = PidMap {
            virt: HashMap::new(),
            own: true,
        };
        for t in tasks {
            for &tid in &t.threads {
                let st = procfs::thread_status(t.pid, tid)?;
                if st.ns_pid.len() != depth + 1 {
                    return Err(DumpError::NestedPidNs {
                        pid: tid,
                        levels: st.ns_pid.len().saturating_sub(depth),
                    }
                    .into());
                }
                m.virt.insert(tid, *st.ns_pid.last().unwrap_or(&tid));
            }
        }
        if let Some(root) = tasks.first() {
            let v = m.get(root.pid);
            if v != 1 {
                return Err(DumpError::PidNsRootNotInit {
                    pid: root.pid,
                    vpid: v,
                }
                .into());
            }
        }
        Ok(m)
    }

    /// The pid the tree sees for host pid `host`: 0 for a task outside
    /// the tree's pid namespace (as getsid() inside would say).
    pub fn get(&self, host: i32) -> i32 {
        if !self.own {
            return host;
        }
        self.virt.get(&host).copied().unwrap_or(0)
    }

    /// Whether the tree has a pid namespace of its own.
    pub fn own(&self) -> bool {
        self.own
    }

    /// `t` with its pids as the tree sees them.
    pub fn task(&self, t: &Task) -> Task {
        let mut v = t.clone();
        v.pid = self.get(t.pid);
        v.ppid = self.get(t.ppid);
        v.pgid = self.get(t.pgid);
        v.sid = self.get(t.sid);
        v.threads = t.threads.iter().map(|&x| self.get(x)).collect();
        v
    }
}

/// How many pid namespaces deep crit itself is (its NSpid count).
pub fn own_depth() -> Result<usize> {
    let me = std::process::id() as i32;
    Ok(procfs::status(me)?.ns_pid.len().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_namespace_pids_stay() {
        let m = PidMap::default();
        assert_eq!(m.get(4242), 4242);
        assert!(!m.own());
    }

    #[test]
    fn outside_pids_read_as_zero() {
        let m = PidMap {
            virt: HashMap::from([(100, 1), (101, 2)]),
            own: true,
        };
        let t = Task {
            pid: 101,
            ppid: 100,
            pgid: 100,
            sid: 7,
            threads: vec![101],
            stat: Default::default(),
            zombie: false,
        };
        let v = m.task(&t);
        assert_eq!((v.pid, v.ppid, v.pgid, v.sid), (2, 1, 1, 0));
        assert_eq!(v.threads, vec![2]);
    }
}
