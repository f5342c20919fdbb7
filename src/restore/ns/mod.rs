//! The tree's namespaces again. The images own the namespaces in which
//! the root task's ids differ from inventory's `root_ids` (the dumper's
//! own); restore makes each anew, before any task exists:
//!
//! - uts, ipc, net and mnt on crit's namespace thread (the "yard",
//!   [`Yard`]): it unshares them, sets the host name, makes the System V
//!   objects ([`ipc`]), brings loopback up, builds the mount tree and
//!   pivots into it ([`mounts`]). crit then makes the tree's files and
//!   sockets inside these namespaces (paths through the yard's root,
//!   sockets from crit's main thread while it is in the yard's network
//!   namespace), and clones the root task from inside all of them;
//! - pid: the root is cloned with CLONE_NEWPID as pid 1, its children
//!   with their pids inside;
//! - time: always, as CRIU does: a new time namespace whose offsets carry
//!   CLOCK_MONOTONIC and CLOCK_BOOTTIME on from the dumped values
//!   (timens-N.img, or timens-0.img for a tree that shared crit's), so a
//!   restored task's clocks do not jump ([`clocks`]);
//! - user and cgroup namespaces of the tree's own are refused.

pub mod clocks;
pub mod error;
pub mod ipc;
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
        for k in [Kind::User, Kind::Cgroup] {
            if owned.has(k) {
                return Err(NsError::Unsupported { ns: k }.into());
            }
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

    /// Whether a yard thread is needed (namespaces other than pid and
    /// time).
    pub fn needs_yard(&self) -> bool {
        [Kind::Uts, Kind::Ipc, Kind::Net, Kind::Mnt]
            .iter()
            .any(|&k| self.owned.has(k))
    }

    /// CLONE_NEW* flags the yard unshares.
    fn yard_flags(&self) -> u64 {
        let mut s = Set::default();
        for k in [Kind::Uts, Kind::Ipc, Kind::Mnt] {
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
    pub dir: &'a Path,
    /// `--root DIR`.
    pub root: Option<&'a Path>,
    /// `--external mnt[KEY]:PATH`.
    pub ext_mnt: &'a HashMap<String, PathBuf>,
    /// The handed-in network namespace, for NetPlan::External.
    pub net_fd: Option<OwnedFd>,
}

/// The namespace thread: it made the namespaces and stays in them until
/// dropped.
pub struct Yard {
    /// The thread's id (its /proc/self/task/TID/ns/* and root).
    pub tid: i32,
    /// The yard's root, seen from crit: `/` without a mount namespace.
    pub root: PathBuf,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Yard {
    /// Starts the thread and waits until the namespaces are made.
    pub fn start(plan: std::sync::Arc<NsPlan>, o: YardOpts) -> Result<Yard> {
        let root = match (&plan.mounts, o.root) {
            (Some(_), None) => return Err(NsError::NoRoot.into()),
            (Some(_), Some(r)) => {
                Some(std::fs::canonicalize(r).map_err(|source| NsError::BadRoot {
                    path: r.to_path_buf(),
                    source,
                })?)
            }
            (None, _) => None,
        };
        let ext = o.ext_mnt.clone();
        let flags = plan.yard_flags();
        let has_mounts = plan.mounts.is_some();
        let dir = o.dir.to_path_buf();
        let net_fd = o.net_fd;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::result::Result<i32, String>>();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let r = prepare(&plan, flags, &dir, root.as_deref(), &ext, net_fd);
            let _ = ready_tx.send(
                r.map(|_| nix::unistd::gettid().as_raw())
                    .map_err(|e| e.to_string()),
            );
            let _ = stop_rx.recv();
        });
        let tid = match ready_rx.recv() {
            Ok(Ok(tid)) => tid,
            Ok(Err(why)) => {
                let _ = thread.join();
                return Err(crate::error::Error::msg(why));
            }
            Err(_) => return Err(NsError::Yard("it ended without a word".into()).into()),
        };
        let root = if has_mounts {
            PathBuf::from(format!("/proc/self/task/{tid}/root"))
        } else {
            PathBuf::from("/")
        };
        Ok(Yard {
            tid,
            root,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Opens the yard's namespace of `kind`.
    pub fn ns(&self, kind: Kind) -> Result<OwnedFd> {
        crate::sys::ns::open_task(std::process::id() as i32, self.tid, kind.name()).map_err(
            |source| {
                NsError::Call {
                    ns: kind,
                    what: "opening the yard's".into(),
                    source,
                }
                .into()
            },
        )
    }
}

impl Drop for Yard {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// On the yard thread: the namespaces, made and filled.
fn prepare(
    plan: &NsPlan,
    flags: u64,
    dir: &Path,
    root: Option<&Path>,
    ext: &HashMap<String, PathBuf>,
    net_fd: Option<OwnedFd>,
) -> Result<()> {
    let fail = |ns: Kind, what: &str| {
        let what = what.to_string();
        move |source| -> crate::error::Error { NsError::Call { ns, what, source }.into() }
    };
    crate::sys::ns::unshare(flags).map_err(fail(Kind::Mnt, "unshare"))?;
    if let Some(fd) = &net_fd {
        crate::sys::ns::enter(fd.as_fd(), Kind::Net.clone_flag())
            .map_err(fail(Kind::Net, "entering the handed-in namespace"))?;
    }
    if let Some(u) = &plan.uts {
        crate::sys::ns::set_uts_names(&u.nodename, &u.domainname)
            .map_err(fail(Kind::Uts, "setting the names"))?;
    }
    if let Some(i) = &plan.ipc {
        ipc::restore(i, &|shmid, seg| {
            super::shmem::fill_slice(dir, u64::from(shmid), seg)
        })?;
    }
    if let Some(NetPlan::Links(links)) = &plan.net {
        for l in links {
            crate::sys::netdev::configure(&l.name, l.flags, l.mtu)
                .map_err(fail(Kind::Net, "configuring loopback"))?;
        }
    }
    if let (Some(m), Some(root)) = (&plan.mounts, root) {
        mounts::build(m, root, ext)?;
    }
    Ok(())
}

/// crit's own namespaces, to come back to once the root task is cloned.
pub struct Home {
    ns: Vec<(OwnedFd, u64)>,
    cwd: OwnedFd,
}

/// Moves crit's calling thread into the yard's uts, ipc and network
/// namespaces (the files and sockets are made there); returns the way
/// home.
pub fn enter_yard(y: &Yard, plan: &NsPlan) -> Result<Home> {
    let me = std::process::id() as i32;
    let tid = nix::unistd::gettid().as_raw();
    let open = |k: Kind| -> Result<OwnedFd> {
        crate::sys::ns::open_task(me, tid, k.name()).map_err(|source| {
            NsError::Call {
                ns: k,
                what: "opening crit's own".into(),
                source,
            }
            .into()
        })
    };
    let cwd = std::fs::File::open(".")
        .map(OwnedFd::from)
        .map_err(|source| NsError::Call {
            ns: Kind::Mnt,
            what: "opening crit's working directory".into(),
            source,
        })?;
    let mut home = Home {
        ns: Vec::new(),
        cwd,
    };
    for k in [Kind::Uts, Kind::Ipc, Kind::Net, Kind::Mnt] {
        if plan.owned.has(k) {
            home.ns.push((open(k)?, k.clone_flag()));
        }
    }
    for k in [Kind::Uts, Kind::Ipc, Kind::Net] {
        if plan.owned.has(k) {
            switch(&y.ns(k)?, k)?;
        }
    }
    Ok(home)
}

fn switch(fd: &OwnedFd, k: Kind) -> Result<()> {
    crate::sys::ns::enter(fd.as_fd(), k.clone_flag()).map_err(|source| {
        NsError::Call {
            ns: k,
            what: "entering".into(),
            source,
        }
        .into()
    })
}

/// Runs `spawn` (which clones the root task) from inside the yard's
/// mount namespace and a new time namespace, then takes crit's thread
/// home.
pub fn clone_inside<T>(
    y: Option<&Yard>,
    plan: &NsPlan,
    home: Option<Home>,
    spawn: impl FnOnce() -> Result<T>,
) -> Result<T> {
    if let Some(t) = &plan.time {
        clocks::new_time_ns(t)?;
    }
    if let (Some(y), true) = (y, plan.owned.has(Kind::Mnt)) {
        switch(&y.ns(Kind::Mnt)?, Kind::Mnt)?;
    }
    let r = spawn();
    if let Some(h) = home {
        for (fd, flag) in &h.ns {
            let k = Kind::ALL
                .into_iter()
                .find(|k| k.clone_flag() == *flag)
                .unwrap_or(Kind::Mnt);
            switch(fd, k)?;
        }
        nix::unistd::fchdir(h.cwd.as_fd()).map_err(|e| NsError::Call {
            ns: Kind::Mnt,
            what: "back to crit's working directory".into(),
            source: e.into(),
        })?;
    }
    r
}
