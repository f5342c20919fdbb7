//! ids-PID.img and inventory's root_ids: kernel objects shared between
//! tasks get one id (kcmp), as CRIU numbers them: the dumper's own objects
//! first (so the tree's start at 2 when nothing is shared with it), and
//! namespaces by inode, in CRIU's order of kinds.

use super::error::DumpError;
use super::kobjs::Sorted;
use crate::error::Result;
use crate::image::pb;
use crate::model::ns::Kind;
use crate::sys::kcmp;
use std::collections::HashMap;

#[derive(Default)]
pub struct Ids {
    /// Per kcmp kind: the id of each distinct object seen.
    objs: HashMap<u8, Sorted<u32>>,
    next: HashMap<u8, u32>,
    ns: HashMap<(usize, u64), u32>,
    next_ns: u32,
    /// Each task's ids once found: the namespace check reads every task's
    /// before the collection asks again (a frozen task's do not change).
    tasks: HashMap<i32, pb::TaskKobjIdsEntry>,
}

impl Ids {
    fn obj(&mut self, pid: i32, kind: kcmp::Kind) -> Result<u32> {
        let k = kind as u8;
        let next = self.next.entry(k).or_insert(0);
        let (id, _) = self
            .objs
            .entry(k)
            .or_insert_with(|| Sorted::new(kind))
            .find_or_add(pid, 0, || {
                *next += 1;
                *next
            })
            .map_err(|(other, source)| DumpError::Kcmp { pid, other, source })?;
        Ok(id)
    }

    fn ns_id(&mut self, pid: i32, kind: usize) -> Option<u32> {
        let ino = super::procfs::ns_ino(pid, Kind::ALL[kind].name());
        if ino == 0 {
            return None;
        }
        if let Some(&id) = self.ns.get(&(kind, ino)) {
            return Some(id);
        }
        self.next_ns += 1;
        self.ns.insert((kind, ino), self.next_ns);
        Some(self.next_ns)
    }

    /// The ids of task `pid`.
    pub fn task(&mut self, pid: i32) -> Result<pb::TaskKobjIdsEntry> {
        if let Some(ids) = self.tasks.get(&pid) {
            return Ok(*ids);
        }
        let mut ns = [None; 8];
        for (i, slot) in ns.iter_mut().enumerate() {
            *slot = self.ns_id(pid, i);
        }
        let ids = pb::TaskKobjIdsEntry {
            vm_id: self.obj(pid, kcmp::Kind::Vm)?,
            files_id: self.obj(pid, kcmp::Kind::Files)?,
            fs_id: self.obj(pid, kcmp::Kind::Fs)?,
            sighand_id: self.obj(pid, kcmp::Kind::Sighand)?,
            pid_ns_id: ns[0],
            net_ns_id: ns[1],
            ipc_ns_id: ns[2],
            uts_ns_id: ns[3],
            time_ns_id: ns[4],
            mnt_ns_id: ns[5],
            user_ns_id: ns[6],
            cgroup_ns_id: ns[7],
        };
        self.tasks.insert(pid, ids);
        Ok(ids)
    }
}
