//! Namespaces: the kinds, their names in /proc and on the command line,
//! their clone flags, and where each one's id sits in `ids-N.img`. The
//! engines decide from a task's ids and inventory's `root_ids` (the
//! dumper's own) which namespaces belong to the tree: those are dumped
//! and, at restore, made anew.

use crate::image::pb::TaskKobjIdsEntry;

/// A namespace kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pid,
    Net,
    Ipc,
    Uts,
    Time,
    Mnt,
    User,
    Cgroup,
}

impl Kind {
    /// Every kind, in the order CRIU numbers them.
    pub const ALL: [Kind; 8] = [
        Kind::Pid,
        Kind::Net,
        Kind::Ipc,
        Kind::Uts,
        Kind::Time,
        Kind::Mnt,
        Kind::User,
        Kind::Cgroup,
    ];

    /// The name of /proc/PID/ns/NAME, also used in messages and options.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pid => "pid",
            Kind::Net => "net",
            Kind::Ipc => "ipc",
            Kind::Uts => "uts",
            Kind::Time => "time",
            Kind::Mnt => "mnt",
            Kind::User => "user",
            Kind::Cgroup => "cgroup",
        }
    }

    /// The kind named `s` (as /proc and CRIU's options spell them).
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The CLONE_NEW* flag of the kind.
    pub fn clone_flag(self) -> u64 {
        (match self {
            Kind::Pid => libc::CLONE_NEWPID,
            Kind::Net => libc::CLONE_NEWNET,
            Kind::Ipc => libc::CLONE_NEWIPC,
            Kind::Uts => libc::CLONE_NEWUTS,
            Kind::Time => libc::CLONE_NEWTIME,
            Kind::Mnt => libc::CLONE_NEWNS,
            Kind::User => libc::CLONE_NEWUSER,
            Kind::Cgroup => libc::CLONE_NEWCGROUP,
        }) as u32 as u64
    }

    /// The id of this kind's namespace in `ids`.
    pub fn id(self, ids: &TaskKobjIdsEntry) -> Option<u32> {
        match self {
            Kind::Pid => ids.pid_ns_id,
            Kind::Net => ids.net_ns_id,
            Kind::Ipc => ids.ipc_ns_id,
            Kind::Uts => ids.uts_ns_id,
            Kind::Time => ids.time_ns_id,
            Kind::Mnt => ids.mnt_ns_id,
            Kind::User => ids.user_ns_id,
            Kind::Cgroup => ids.cgroup_ns_id,
        }
    }

    /// Sets this kind's namespace id in `ids`.
    pub fn set_id(self, ids: &mut TaskKobjIdsEntry, id: Option<u32>) {
        let slot = match self {
            Kind::Pid => &mut ids.pid_ns_id,
            Kind::Net => &mut ids.net_ns_id,
            Kind::Ipc => &mut ids.ipc_ns_id,
            Kind::Uts => &mut ids.uts_ns_id,
            Kind::Time => &mut ids.time_ns_id,
            Kind::Mnt => &mut ids.mnt_ns_id,
            Kind::User => &mut ids.user_ns_id,
            Kind::Cgroup => &mut ids.cgroup_ns_id,
        };
        *slot = id;
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The namespaces of a tree, as a set of kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Set(u8);

impl Set {
    pub fn has(self, k: Kind) -> bool {
        self.0 & (1 << k as u8) != 0
    }

    pub fn add(&mut self, k: Kind) {
        self.0 |= 1 << k as u8;
    }

    pub fn remove(&mut self, k: Kind) {
        self.0 &= !(1 << k as u8);
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, in CRIU's order.
    pub fn kinds(self) -> impl Iterator<Item = Kind> {
        Kind::ALL.into_iter().filter(move |&k| self.has(k))
    }

    /// The CLONE_NEW* flags of the set.
    pub fn clone_flags(self) -> u64 {
        self.kinds().map(Kind::clone_flag).fold(0, |a, b| a | b)
    }

    /// The kinds in which the tree's root (`root`) lives in a namespace
    /// other than the dumper's (`dumper`, inventory's `root_ids`): the
    /// namespaces that belong to the tree.
    pub fn of_tree(root: &TaskKobjIdsEntry, dumper: &TaskKobjIdsEntry) -> Set {
        let mut s = Set::default();
        for k in Kind::ALL {
            let (a, b) = (k.id(root), k.id(dumper));
            if a.is_some() && b.is_some() && a != b {
                s.add(k);
            }
        }
        s
    }
}

impl std::fmt::Display for Set {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.kinds().map(Kind::name).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_owns_the_namespaces_it_does_not_share_with_the_dumper() {
        let dumper = TaskKobjIdsEntry {
            pid_ns_id: Some(1),
            net_ns_id: Some(2),
            uts_ns_id: Some(4),
            time_ns_id: Some(5),
            ..Default::default()
        };
        let mut root = dumper;
        root.pid_ns_id = Some(9);
        root.uts_ns_id = Some(12);
        let s = Set::of_tree(&root, &dumper);
        assert!(s.has(Kind::Pid) && s.has(Kind::Uts));
        assert!(!s.has(Kind::Net) && !s.has(Kind::Time) && !s.has(Kind::Mnt));
        assert_eq!(s.to_string(), "pid,uts");
        assert_eq!(
            s.clone_flags(),
            (libc::CLONE_NEWPID | libc::CLONE_NEWUTS) as u64
        );
    }

    #[test]
    fn names_go_both_ways() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(k));
        }
        assert_eq!(Kind::from_name("mount"), None);
    }
}
