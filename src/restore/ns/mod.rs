//! The tree's namespaces again. The images own the namespaces in which
//! the root task's ids differ from inventory's `root_ids` (the dumper's
//! own); restore makes each anew, before any task exists:
//!
//! - pid, uts, ipc, net and mnt on crit's namespace thread (the "yard",
//!   [`in_yard`]): it unshares them, sets the host name, makes the System
//!   V objects ([`ipc`]), brings loopback up, builds the mount tree and
//!   pivots into it ([`mounts`]). On that thread crit then opens the
//!   tree's files and makes its sockets, and clones the root task, which
//!   is born in all of them: pid 1 of the new pid namespace, whose
//!   children get their pids inside. crit's other threads never leave
//!   crit's namespaces;
//! - time: always, as CRIU does: a new time namespace whose offsets carry
//!   CLOCK_MONOTONIC and CLOCK_BOOTTIME on from the dumped values
//!   (timens-N.img, or timens-0.img for a tree that shared crit's), so a
//!   restored task's clocks do not jump ([`clocks`]). crit's main thread
//!   makes it for its children before the yard starts;
//! - cgroup: made again by the root task from cgroup.img's namespace
//!   roots (crate::restore::cgroups);
//! - user namespaces of the tree's own are refused;
//! - `--join-ns`: uts, ipc or net namespaces entered instead of made
//!   ([`join`]).

pub mod clocks;
pub mod error;
pub mod ipc;
pub mod join;
pub mod mounts;

use crate::error::Result;
use crate::image::pb;
use crate::model::ns::{Kind, Set};
pub use error::NsError;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The network namespace to make.
pub enum NetPlan {
    /// Empty (dumped with --empty-ns net): the manager configures it.
    Empty,
    /// Its loopback device, as dumped.
    Links(Vec<pb::NetDeviceEntry>),
    /// The manager's, handed in for KEY with --inherit-fd.
    External(String),
}

/// The namespaces to make and what goes into them.
#[derive(Default)]
pub struct NsPlan {
    /// The namespaces the tree owns.
    pub owned: Set,
    pub uts: Option<pb::UtsnsEntry>,
    pub ipc: Option<ipc::IpcImages>,
    /// The clocks to carry on from (None: images without timens).
    pub time: Option<pb::TimensEntry>,
    pub mounts: Option<mounts::MountPlan>,
    pub net: Option<NetPlan>,
}

impl NsPlan {
    /// Reads the namespace images of `dir` for a tree whose root has
    /// `root_ids`; `dumper` is inventory's root_ids.
    pub fn read(
        dir: &Path,
        root_ids: &pb::TaskKobjIdsEntry,
        dumper: &pb::TaskKobjIdsEntry,
    ) -> Result<NsPlan> {
        let owned = Set::of_tree(root_ids, dumper);
        // A cgroup namespace comes back from cgroup.img (its roots are
        // prefixes of the paths there, as CRIU has it): cgroups.rs.
        if owned.has(Kind::User) {
            return Err(NsError::Unsupported { ns: Kind::User }.into());
        }
        let id = |k: Kind| k.id(root_ids).unwrap_or(0);
        let mut p = NsPlan {
            owned,
            ..Default::default()
        };
        if owned.has(Kind::Uts) {
            let path = dir.join(format!("utsns-{}.img", id(Kind::Uts)));
            p.uts = Some(crate::image::typed::read_one(&path, "UTSNS")?);
        }
        if owned.has(Kind::Ipc) {
            p.ipc = Some(ipc::read(dir, id(Kind::Ipc))?);
        }
        let time_id = if owned.has(Kind::Time) {
            id(Kind::Time)
        } else {
            0
        };
        let tpath = dir.join(format!("timens-{time_id}.img"));
        if tpath.exists() {
            p.time = crate::image::typed::read_all(&tpath, "TIMENS")?
                .into_iter()
                .next();
        }
        if owned.has(Kind::Mnt) {
            p.mounts = Some(mounts::read(dir, id(Kind::Mnt))?);
        }
        if owned.has(Kind::Net) {
            p.net = Some(net_plan(dir, id(Kind::Net))?);
        }
        Ok(p)
    }

    /// Whether the tree needs namespaces other than time made for it
    /// (see [`in_yard`]).
    pub fn needs_yard(&self) -> bool {
        [Kind::Pid, Kind::Uts, Kind::Ipc, Kind::Net, Kind::Mnt]
            .iter()
            .any(|&k| self.owned.has(k))
    }

    /// Whether the tree's root is pid 1 of a pid namespace of its own.
    pub fn own_pids(&self) -> bool {
        self.owned.has(Kind::Pid)
    }

    /// CLONE_NEW* flags the yard unshares (a new pid namespace is for
    /// its children).
    fn yard_flags(&self) -> u64 {
        let mut s = Set::default();
        for k in [Kind::Pid, Kind::Uts, Kind::Ipc, Kind::Mnt] {
            if self.owned.has(k) {
                s.add(k);
            }
        }
        if matches!(self.net, Some(NetPlan::Empty | NetPlan::Links(_))) {
            s.add(Kind::Net);
        }
        s.clone_flags()
    }
}

/// What netns-ID.img and netdev-ID.img say of the tree's network
/// namespace.
fn net_plan(dir: &Path, id: u32) -> Result<NetPlan> {
    let ns = dir.join(format!("netns-{id}.img"));
    if !ns.exists() {
        return Ok(NetPlan::Empty);
    }
    let e: pb::NetnsEntry = crate::image::typed::read_one(&ns, "NETNS")?;
    if let Some(key) = e.ext_key {
        return Ok(NetPlan::External(key));
    }
    let dev = dir.join(format!("netdev-{id}.img"));
    let links: Vec<pb::NetDeviceEntry> = if dev.exists() {
        crate::image::typed::read_all(&dev, "NETDEV")?
    } else {
        Vec::new()
    };
    if let Some(l) = links
        .iter()
        .find(|l| l.r#type != pb::NdType::Loopback as i32)
    {
        let kind = pb::NdType::try_from(l.r#type)
            .map(|t| t.as_str_name().to_lowercase())
            .unwrap_or_else(|_| l.r#type.to_string());
        return Err(NsError::NetDevice {
            name: l.name.clone(),
            kind,
        }
        .into());
    }
    Ok(NetPlan::Links(links))
}

/// What the yard needs from the command line.
pub struct YardOpts<'a> {
    /// Where the images are (System V segment contents).
    pub dir: &'a Path,
    /// `--root DIR`.
    pub root: Option<&'a Path>,
    /// `--external mnt[KEY]:PATH`.
    pub ext_mnt: &'a HashMap<String, PathBuf>,
    /// The handed-in network namespace, for NetPlan::External.
    pub net_fd: Option<OwnedFd>,
    /// Namespaces to enter instead of making them (`--join-ns`).
    pub joined: Vec<(Kind, OwnedFd)>,
}

/// Runs `job` on a new thread (the "yard") that first makes the tree's
/// namespaces and enters them: the files `job` opens resolve in the
/// tree's mount tree, its sockets are made in the tree's network
/// namespace, and the task it clones is born in all of them (pid 1 of a
/// new pid namespace). With a mount namespace, host /proc is mounted on
/// the tree's /proc until the root task mounts its own.
pub fn in_yard<T: Send>(
    plan: &NsPlan,
    o: YardOpts,
    made: &mut Vec<mounts::MadePath>,
    job: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    let new_root = match (&plan.mounts, o.root) {
        (Some(_), None) => return Err(NsError::NoRoot.into()),
        (Some(_), Some(r)) => {
            Some(std::fs::canonicalize(r).map_err(|source| NsError::BadRoot {
                path: r.to_path_buf(),
                source,
            })?)
        }
        (None, _) => None,
    };
    std::thread::scope(|s| {
        let yard = crate::sys::thread::scoped(s, || {
            prepare(plan, &o, new_root.as_deref(), made)?;
            if plan.mounts.is_some() {
                mount_host_proc()?;
            }
            job()
        });
        match yard {
            Ok(h) => h.join().unwrap_or_else(|_| {
                Err(NsError::Yard("the namespace thread panicked".into()).into())
            }),
            Err(e) => Err(NsError::Yard(format!("the namespace thread: {e}")).into()),
        }
    })
}

fn mount_host_proc() -> Result<()> {
    nix::mount::mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(|e| {
        NsError::MountCall {
            mountpoint: "/proc".into(),
            what: "mounting crit's proc for the restore (the root file system needs a /proc directory)",
            source: e.into(),
        }
        .into()
    })
}

/// On the yard thread: the namespaces, made or joined, and filled.
/// `made`: the mountpoints made in the root file system (see
/// [`mounts::build`]).
fn prepare(
    plan: &NsPlan,
    o: &YardOpts,
    root: Option<&Path>,
    made: &mut Vec<mounts::MadePath>,
) -> Result<()> {
    let fail = |ns: Kind, what: &'static str| {
        move |source| -> crate::error::Error { NsError::Call { ns, what, source }.into() }
    };
    let joined = o.joined.iter().fold(0, |f, (k, _)| f | k.clone_flag());
    crate::sys::ns::unshare(plan.yard_flags() & !joined).map_err(fail(Kind::Mnt, "unshare"))?;
    for (k, fd) in &o.joined {
        crate::sys::ns::enter(fd.as_fd(), k.clone_flag())
            .map_err(fail(*k, "entering the namespace to join"))?;
    }
    if let Some(fd) = &o.net_fd {
        crate::sys::ns::enter(fd.as_fd(), Kind::Net.clone_flag())
            .map_err(fail(Kind::Net, "entering the handed-in namespace"))?;
    }
    // A joined namespace is someone else's and stays as it is (see
    // [`join`]): only new ones are filled.
    let is_joined = |k: Kind| o.joined.iter().any(|(j, _)| *j == k);
    if let Some(u) = plan.uts.as_ref().filter(|_| !is_joined(Kind::Uts)) {
        crate::sys::ns::set_uts_names(&u.nodename, &u.domainname)
            .map_err(fail(Kind::Uts, "setting the names"))?;
    }
    match &plan.ipc {
        Some(i) if is_joined(Kind::Ipc) => ipc::check_present(i)?,
        Some(i) => ipc::restore(i, &|shmid, seg| {
            super::shmem::fill_slice(o.dir, u64::from(shmid), seg)
        })?,
        None => {}
    }
    if let (Some(NetPlan::Links(links)), false) = (&plan.net, is_joined(Kind::Net)) {
        for l in links {
            crate::sys::netdev::configure(&l.name, l.flags, l.mtu)
                .map_err(fail(Kind::Net, "configuring loopback"))?;
        }
    }
    if let (Some(m), Some(root)) = (&plan.mounts, root) {
        mounts::build(m, root, o.ext_mnt, made)?;
    }
    Ok(())
}

/// In the root task, first thing: its own proc (and what is below it)
/// over the one crit lent the yard.
pub fn root_task_mounts(plan: &NsPlan) -> Result<()> {
    let Some(m) = &plan.mounts else {
        return Ok(());
    };
    nix::mount::umount2("/proc", nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
        crate::error::Error::from(NsError::MountCall {
            mountpoint: "/proc".into(),
            what: "unmounting crit's proc",
            source: e.into(),
        })
    })?;
    mounts::mount_deferred(m)
}
