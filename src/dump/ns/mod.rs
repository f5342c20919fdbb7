//! The namespaces of the dumped tree. A tree owns the namespaces in
//! which its root differs from crit (inventory's `root_ids` are crit's
//! own, as CRIU writes them); every task must share each of them with
//! the root. Owned namespaces are read while the tree is frozen and
//! written as CRIU 4.2 does:
//!
//! - pid: the images hold the pids inside it ([`pids`]); the root must
//!   be its init; nested pid namespaces are refused;
//! - uts: utsns-N.img; ipc: ipcns-var/shm/sem/msg-N.img ([`ipc`]);
//! - time: timens-N.img, the clocks as the tree reads them ([`clocks`]);
//! - mnt: mountpoints-N.img and tmpfs contents ([`mounts`]);
//! - net: empty (`--empty-ns net`), external (`--external net[INO]:KEY`),
//!   or its loopback device (netdev-N.img, netns-N.img) ([`net`]);
//! - cgroup: its root in each hierarchy, as CRIU's `cgns_prefix` in
//!   cgroup.img (crate::dump::cgroups);
//! - user namespaces of the tree's own are refused.

pub mod clocks;
pub mod ipc;
pub mod mounts;
pub mod net;
pub mod pids;

use super::context::DumpCtx;
use super::error::DumpError;
use super::tree::Task;
use crate::error::Result;
use crate::image::pb;
use crate::image::typed::ImageBuilder;
use crate::model::ns::{Kind, Set};
use pids::PidMap;
use std::os::fd::{AsFd, OwnedFd};

/// Which namespaces the tree owns, and the pids it sees.
#[derive(Debug, Default)]
pub struct TreeNs {
    pub owned: Set,
    /// The root task's ids (its namespaces' ids among them).
    pub root_ids: pb::TaskKobjIdsEntry,
    /// The root's host pid.
    pub root: i32,
    pub pids: PidMap,
    /// The mount ids of the tree's own mount namespace.
    pub mounts: Option<std::collections::HashSet<i32>>,
}

impl TreeNs {
    /// The mount id CRIU records for a file on mount `mnt_id` (fdinfo's):
    /// only in a mount namespace of the tree's own, and of its mounts.
    pub fn mnt_id_of(&self, mnt_id: i32) -> Option<i32> {
        self.mounts
            .as_ref()
            .filter(|m| m.contains(&mnt_id))
            .map(|_| mnt_id)
    }
}

/// What was read of the owned namespaces, written with the images.
#[derive(Default)]
pub struct NsState {
    uts: Option<pb::UtsnsEntry>,
    ipc: Option<ipc::IpcNs>,
    time: Option<pb::TimensEntry>,
    mounts: Option<mounts::MountNs>,
    net: Option<net::NetNs>,
    /// The key of a network namespace dumped as external.
    ext_net: Option<String>,
}

/// Decides which namespaces belong to the tree and refuses what is not
/// supported, before anything else is collected.
pub fn check(ctx: &mut DumpCtx) -> Result<TreeNs> {
    let tasks: Vec<&Task> = ctx.frozen.tasks.iter().filter(|t| !t.zombie).collect();
    let Some(root) = tasks.first() else {
        return Ok(TreeNs::default());
    };
    let root_ids = ctx.ids.task(root.pid)?;
    for t in &tasks[1..] {
        let ids = ctx.ids.task(t.pid)?;
        for k in Kind::ALL {
            if k.id(&ids) != k.id(&root_ids) {
                return Err(DumpError::NsDiffers {
                    pid: t.pid,
                    ns: k,
                    root: root.pid,
                }
                .into());
            }
        }
    }
    let owned = Set::of_tree(&root_ids, &ctx.root_ids);
    if owned.has(Kind::User) {
        return Err(DumpError::UserNs { pid: root.pid }.into());
    }
    if owned.has(Kind::Cgroup) {
        // Its root is recorded per hierarchy as a prefix of the paths.
        ctx.cgroups.note_namespace(root.pid)?;
    }
    let pids = if owned.has(Kind::Pid) {
        let all: Vec<Task> = ctx.frozen.tasks.clone();
        PidMap::of_tree(&all, pids::own_depth()?)?
    } else {
        PidMap::default()
    };
    if owned.has(Kind::Net) {
        net::check_options(root.pid, &ctx.opts.ns)?;
    }
    let mounts = if owned.has(Kind::Mnt) {
        let text = super::procfs::read_string(root.pid, "mountinfo")?;
        Some(
            mounts::parse(root.pid, &text)?
                .iter()
                .map(|l| l.id as i32)
                .collect(),
        )
    } else {
        None
    };
    Ok(TreeNs {
        owned,
        root_ids,
        root: root.pid,
        pids,
        mounts,
    })
}

/// Opens the root's namespace of `kind`.
fn ns_fd(pid: i32, kind: Kind) -> Result<OwnedFd> {
    crate::sys::ns::open(pid, kind.name()).map_err(|source| {
        DumpError::NsCall {
            pid,
            ns: kind,
            what: "open",
            source,
        }
        .into()
    })
}

/// Runs `f` on a thread inside the root's namespace of `kind`.
fn inside<T: Send>(pid: i32, kind: Kind, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let fd = ns_fd(pid, kind)?;
    crate::sys::ns::run_in(&[(fd.as_fd(), kind.clone_flag())], f).map_err(|source| {
        DumpError::NsCall {
            pid,
            ns: kind,
            what: "entering",
            source,
        }
    })?
}

/// Reads every owned namespace (the tree is frozen).
pub fn collect(ctx: &DumpCtx, t: &TreeNs) -> Result<NsState> {
    let mut s = NsState::default();
    let pid = t.root;
    if t.owned.has(Kind::Uts) {
        let names = inside(pid, Kind::Uts, || {
            crate::sys::ns::uts_names().map_err(|source| {
                DumpError::NsCall {
                    pid,
                    ns: Kind::Uts,
                    what: "uname",
                    source,
                }
                .into()
            })
        })?;
        s.uts = Some(pb::UtsnsEntry {
            nodename: names.0,
            domainname: names.1,
        });
    }
    if t.owned.has(Kind::Ipc) {
        s.ipc = Some(inside(pid, Kind::Ipc, ipc::read)?);
    }
    if t.owned.has(Kind::Time) {
        s.time = Some(clocks::of_task(pid)?);
    }
    if t.owned.has(Kind::Mnt) {
        s.mounts = Some(mounts::read(pid, &ctx.opts.ns.ext_mnt)?);
    }
    if t.owned.has(Kind::Net) && !ctx.opts.ns.empty_net && ctx.opts.ns.ext_net.is_none() {
        s.net = Some(inside(pid, Kind::Net, || net::read(pid))?);
    }
    if let Some((ino, key)) = &ctx.opts.ns.ext_net {
        let actual = super::procfs::ns_ino(pid, "net");
        if *ino != actual {
            return Err(DumpError::NetNsMismatch { ino: *ino, actual }.into());
        }
        s.ext_net = Some(key.clone());
    }
    Ok(s)
}

/// The namespace images, and System V segments as shared memory (id,
/// contents) for the caller to write with the other pages.
pub struct Written {
    pub images: Vec<(String, ImageBuilder)>,
    /// Files without a magic (tmpfs tars).
    pub raw: Vec<(String, Vec<u8>)>,
    pub shm: Vec<(u32, Vec<u8>)>,
}

/// The images of the owned namespaces.
pub fn images(t: &TreeNs, s: NsState) -> Result<Written> {
    let id = |k: Kind| k.id(&t.root_ids).unwrap_or(0);
    let mut w = Written {
        images: Vec::new(),
        raw: Vec::new(),
        shm: Vec::new(),
    };
    if let Some(u) = &s.uts {
        let mut b = ImageBuilder::new("UTSNS")?;
        b.entry(u);
        w.images.push((format!("utsns-{}.img", id(Kind::Uts)), b));
    }
    if let Some(i) = s.ipc {
        w.images.extend(ipc::images(id(Kind::Ipc), &i)?);
        w.shm = i.shm.into_iter().map(|(e, d)| (e.desc.id, d)).collect();
    }
    if let Some(tm) = &s.time {
        let mut b = ImageBuilder::new("TIMENS")?;
        b.entry(tm);
        w.images.push((format!("timens-{}.img", id(Kind::Time)), b));
    }
    if let Some(m) = s.mounts {
        let mut b = ImageBuilder::new("MNTS")?;
        for e in &m.entries {
            b.entry(e);
        }
        w.images
            .push((format!("mountpoints-{}.img", id(Kind::Mnt)), b));
        for (dev, tar) in m.tmpfs {
            w.raw.push((crate::model::mount::tmpfs_image(dev), tar));
        }
    }
    if let Some(n) = &s.net {
        w.images.extend(net::images(id(Kind::Net), n)?);
    }
    if let Some(key) = s.ext_net {
        // As CRIU: the entry names the key, the manager holds the rest.
        let mut b = ImageBuilder::new("NETNS")?;
        b.entry(&pb::NetnsEntry {
            ext_key: Some(key),
            ..Default::default()
        });
        w.images.push((format!("netns-{}.img", id(Kind::Net)), b));
    }
    Ok(w)
}
