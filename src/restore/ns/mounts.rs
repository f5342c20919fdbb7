//! The mount tree again, from mountpoints-N.img, before any task exists:
//! on crit's namespace thread, in a new mount namespace, `--root DIR` is
//! bound onto itself and every mount of the image is made below it in
//! parent-first order, then the thread pivots into it. How each mount
//! comes back:
//!
//! - the root mount: `--root DIR`;
//! - a mount with an external key: bound from the path `--external
//!   mnt[KEY]:PATH` gives;
//! - tmpfs: a new one, filled from its tmpfs-dev-N.tar.gz.img;
//! - proc, sysfs, devpts, mqueue, cgroup and the other virtual file
//!   systems: new ones with the dumped options (one whose root is not the
//!   file system's root is bound from a scratch mount of it);
//! - any other mount: bound from the mount of the tree it is a bind of.
//!
//! proc shows the pid namespace of whoever mounts it, so proc mounts and
//! what is below them are made by the tree's root task, inside its pid
//! namespace ([`mount_deferred`]). Mount flags (ro, nosuid, ...) are set
//! per mount; shared mounts are made shared again, other propagation
//! (slaves of mounts outside the tree) comes back private.

use super::error::NsError;
use crate::error::Result;
use crate::image::pb;
use crate::model::mount as m;
use nix::mount::{mount, MsFlags};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The mounts of a namespace, parents before children.
#[derive(Default)]
pub struct MountPlan {
    pub entries: Vec<pb::MntEntry>,
    /// Ids of the mounts the root task makes (proc and below).
    pub deferred: HashSet<u32>,
    /// tmpfs contents by device.
    pub tmpfs: HashMap<u32, Vec<u8>>,
    /// Detached binds of the external mounts below proc, made while
    /// their sources are still in reach (before the pivot), attached by
    /// the root task.
    pub ext_trees: std::sync::Mutex<HashMap<u32, std::os::fd::OwnedFd>>,
    /// Ptys made with their devpts for the bind mounts that show them.
    pub ptys: crate::restore::pty::Masters,
}

fn bad(image: &str, why: impl Into<String>) -> crate::error::Error {
    NsError::Image {
        image: image.to_string(),
        why: why.into(),
    }
    .into()
}

/// Reads mountpoints-`id`.img and the tmpfs images it needs.
pub fn read(dir: &Path, id: u32) -> Result<MountPlan> {
    let name = format!("mountpoints-{id}.img");
    let all: Vec<pb::MntEntry> = crate::image::typed::read_all(&dir.join(&name), "MNTS")?;
    // Each is joined below a directory of the tree's (its mountpoint
    // below --root, its root below its file system's): a `..` would lead
    // out, onto the host.
    if let Some((e, what, path)) = all.iter().find_map(|e| {
        [("mountpoint", &e.mountpoint), ("root", &e.root)]
            .into_iter()
            .find(|(_, p)| climbs(p))
            .map(|(w, p)| (e, w, p))
    }) {
        return Err(bad(
            &name,
            format!(
                "mount {}: its {what} {path:?} climbs out with '..'",
                e.mnt_id
            ),
        ));
    }
    let entries = parents_first(all).map_err(|why| bad(&name, why))?;
    let mut p = MountPlan {
        entries,
        ..Default::default()
    };
    for e in &p.entries {
        let under_proc = p.deferred.contains(&e.parent_mnt_id);
        if under_proc || (e.fstype == 1 && e.ext_key.is_none()) {
            p.deferred.insert(e.mnt_id);
        }
        if e.fstype == m::TMPFS && e.ext_key.is_none() && !p.tmpfs.contains_key(&e.root_dev) {
            let tar = dir.join(m::tmpfs_image(e.root_dev));
            if tar.exists() {
                let bytes = std::fs::read(&tar).map_err(|source| NsError::MountCall {
                    mountpoint: e.mountpoint.clone(),
                    what: "reading its tmpfs image",
                    source,
                })?;
                p.tmpfs.insert(e.root_dev, bytes);
            }
        }
    }
    Ok(p)
}

/// The first symlink among `target` and its directories below `root`.
fn symlink_on_the_way(root: &Path, target: &Path) -> Option<PathBuf> {
    let rel = target.strip_prefix(root).ok()?;
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Some(at),
            Ok(_) => {}
            // Not there yet: made below, as a directory or empty file.
            Err(_) => return None,
        }
    }
    None
}

/// Whether `path` has a `..` component.
fn climbs(path: &str) -> bool {
    Path::new(path)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
}

/// Orders mounts so that each parent comes before its children; the
/// first is the root (the one whose parent is not in the image).
pub fn parents_first(all: Vec<pb::MntEntry>) -> std::result::Result<Vec<pb::MntEntry>, String> {
    let ids: HashSet<u32> = all.iter().map(|e| e.mnt_id).collect();
    let roots: Vec<&pb::MntEntry> = all
        .iter()
        .filter(|e| !ids.contains(&e.parent_mnt_id))
        .collect();
    if roots.len() != 1 || roots[0].mountpoint != "/" {
        return Err(format!(
            "{} mounts without a parent in the image; expected one, at /",
            roots.len()
        ));
    }
    let mut children: BTreeMap<u32, Vec<&pb::MntEntry>> = BTreeMap::new();
    for e in &all {
        children.entry(e.parent_mnt_id).or_default().push(e);
    }
    for v in children.values_mut() {
        // Shallower mountpoints first (a mount over another's place
        // after it); a file system's whole mount before binds of a part
        // of it (runc's /dev/console is pts/0 of /dev/pts, mounted
        // before it); then as mounted (ids grow).
        v.sort_by_key(|e| (e.mountpoint.matches('/').count(), e.root != "/", e.mnt_id));
    }
    let mut out = Vec::new();
    let mut stack = vec![roots[0]];
    while let Some(e) = stack.pop() {
        if out.len() > all.len() {
            return Err("mount ids form a loop".to_string());
        }
        out.push(e.clone());
        if let Some(kids) = children.get(&e.mnt_id) {
            stack.extend(kids.iter().rev().filter(|k| k.mnt_id != e.mnt_id));
        }
    }
    if out.len() != all.len() {
        return Err("some mounts are not below the root mount".to_string());
    }
    Ok(out)
}

fn call<'a>(
    mp: &'a str,
    what: &'static str,
) -> impl FnOnce(nix::Error) -> crate::error::Error + 'a {
    move |e| {
        NsError::MountCall {
            mountpoint: mp.to_string(),
            what,
            source: e.into(),
        }
        .into()
    }
}

/// `root` + `mountpoint` (an absolute path of the tree).
fn under(root: &Path, mountpoint: &str) -> PathBuf {
    root.join(mountpoint.trim_start_matches('/'))
}

/// A mountpoint (directory or empty file) the restore made, held by its
/// directory (opened before anything was mounted on it) and name, so a
/// failed restore finds it wherever it is on the host, also through a
/// bind of a host directory.
pub type MadePath = crate::restore::made::Entry;

fn record(at: &Path) -> std::io::Result<MadePath> {
    let made = MadePath::record(at)?;
    crate::restore::janitor::note_mountpoint(&made);
    Ok(made)
}

/// Creates `target` (a directory, or an empty file when the source is
/// not a directory) if it does not exist, and its missing directories;
/// each path made is added to `made`, parents first.
fn make_target(target: &Path, dir: bool, mp: &str, made: &mut Vec<MadePath>) -> Result<()> {
    if target.symlink_metadata().is_ok() {
        return Ok(());
    }
    let fail = |source| -> crate::error::Error {
        NsError::MountCall {
            mountpoint: mp.to_string(),
            what: "making its mountpoint",
            source,
        }
        .into()
    };
    // The missing part of the way, from the first missing directory.
    let mut missing: Vec<&Path> = target
        .ancestors()
        .take_while(|a| a.symlink_metadata().is_err())
        .collect();
    missing.reverse();
    for (i, at) in missing.iter().enumerate() {
        let last = i + 1 == missing.len();
        let r = if last && !dir {
            std::fs::write(at, b"")
        } else {
            std::fs::create_dir(at)
        };
        match r {
            Ok(()) => made.push(record(at).map_err(fail)?),
            // Made meanwhile by someone else: theirs, not undone.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && !last => {}
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(())
}

/// The per-mount flags of an entry.
fn per_mount(e: &pb::MntEntry) -> MsFlags {
    MsFlags::from_bits_truncate((e.flags & m::PER_MOUNT) as libc::c_ulong)
}

/// Sets the per-mount flags of a bind at `target`.
fn remount_bind(target: &Path, e: &pb::MntEntry) -> Result<()> {
    let f = per_mount(e);
    if f.is_empty() {
        return Ok(());
    }
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | f,
        None::<&str>,
    )
    .map_err(call(&e.mountpoint, "setting its flags"))
}

/// The path `--external mnt[KEY]:PATH` gives for `e`.
fn ext_source<'p>(
    ext: &'p HashMap<String, PathBuf>,
    e: &pb::MntEntry,
    key: &str,
) -> Result<&'p PathBuf> {
    ext.get(key).ok_or_else(|| {
        NsError::NoExternalMount {
            mountpoint: e.mountpoint.clone(),
            key: key.to_string(),
        }
        .into()
    })
}

/// Where mounts are made: the new root and a scratch directory for file
/// systems of which only a part is mounted.
pub struct Builder<'a> {
    pub root: PathBuf,
    pub scratch: Option<&'a Path>,
    /// `--external mnt[KEY]:PATH`.
    pub ext: &'a HashMap<String, PathBuf>,
    /// Where each made mount is, by id.
    made: HashMap<u32, PathBuf>,
    /// The mountpoints (and directories on their way) made, for a
    /// rollback.
    made_paths: std::cell::RefCell<Vec<MadePath>>,
}

impl<'a> Builder<'a> {
    pub fn new(
        root: PathBuf,
        scratch: Option<&'a Path>,
        ext: &'a HashMap<String, PathBuf>,
    ) -> Self {
        Builder {
            root,
            scratch,
            ext,
            made: HashMap::new(),
            made_paths: Default::default(),
        }
    }

    /// Makes mount `e` (its parent exists) at its place below the root.
    pub fn make(&mut self, e: &pb::MntEntry, plan: &MountPlan) -> Result<()> {
        let target = under(&self.root, &e.mountpoint);
        // A mountpoint as the kernel showed it has no symlink on its way;
        // one in the root file system now (an edited rootfs) would lead
        // the mount, or the directory made for it, elsewhere: the host.
        if let Some(link) = symlink_on_the_way(&self.root, &target) {
            return Err(NsError::Mount {
                mountpoint: e.mountpoint.clone(),
                fstype: e.fsname.clone().unwrap_or_else(|| "unknown".into()),
                why: format!(
                    "{} is a symlink in the root file system; a mount is not made through it",
                    link.display()
                ),
            }
            .into());
        }
        if let Some(key) = &e.ext_key {
            let src = ext_source(self.ext, e, key)?;
            self.bind(src, &target, e)?;
        } else if let Some(src) = self.bind_source(e, plan) {
            self.bind(&src, &target, e)?;
        } else if m::is_virtual(e.fstype) || e.fstype == m::TMPFS {
            self.fresh(e, &target, plan)?;
        } else {
            return Err(NsError::Mount {
                mountpoint: e.mountpoint.clone(),
                fstype: e.fsname.clone().unwrap_or_else(|| "unknown".into()),
                why: "a bind of a file system outside the tree: it has to be external (--external mnt[..] at dump and restore)".into(),
            }
            .into());
        }
        if e.shared_id.unwrap_or(0) != 0 {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_SHARED,
                None::<&str>,
            )
            .map_err(call(&e.mountpoint, "making it shared"))?;
        }
        self.made.insert(e.mnt_id, target);
        Ok(())
    }

    /// The path to bind `e` from: a mount already made of the same file
    /// system whose root holds `e`'s root (tmpfs and virtual file
    /// systems are made anew for their first mount only).
    fn bind_source(&self, e: &pb::MntEntry, plan: &MountPlan) -> Option<PathBuf> {
        plan.entries
            .iter()
            .filter(|o| o.mnt_id != e.mnt_id && o.root_dev == e.root_dev)
            .filter_map(|o| Some((o, self.made.get(&o.mnt_id)?)))
            .find_map(|(o, at)| {
                let rest = if o.root == "/" {
                    Some(e.root.as_str())
                } else if e.root == o.root {
                    Some("")
                } else {
                    e.root.strip_prefix(&format!("{}/", o.root))
                }?;
                Some(under(at, rest))
            })
    }

    fn bind(&self, src: &Path, target: &Path, e: &pb::MntEntry) -> Result<()> {
        make_target(
            target,
            src.is_dir(),
            &e.mountpoint,
            &mut self.made_paths.borrow_mut(),
        )?;
        mount(
            Some(src),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(call(&e.mountpoint, "binding it"))?;
        remount_bind(target, e)
    }

    /// A new mount of `e`'s file system (only its `root` part).
    fn fresh(&self, e: &pb::MntEntry, target: &Path, plan: &MountPlan) -> Result<()> {
        let fstype = m::fstype_name(e.fstype).unwrap_or("none");
        make_target(
            target,
            true,
            &e.mountpoint,
            &mut self.made_paths.borrow_mut(),
        )?;
        let flags = per_mount(e) | MsFlags::from_bits_truncate(e.sb_flags.unwrap_or(0) as _);
        let data = (!e.options.is_empty()).then_some(e.options.as_str());
        let whole = e.root == "/";
        let at = if whole {
            target.to_path_buf()
        } else {
            self.scratch
                .ok_or_else(|| NsError::Mount {
                    mountpoint: e.mountpoint.clone(),
                    fstype: fstype.to_string(),
                    why: format!(
                        "only {} of it is mounted, and no scratch place is at hand",
                        e.root
                    ),
                })?
                .to_path_buf()
        };
        mount(Some(e.source.as_str()), &at, Some(fstype), flags, data)
            .map_err(call(&e.mountpoint, "mounting it"))?;
        if e.fstype == m::DEVPTS {
            // Binds of one pty of it (runc's /dev/console) need it now.
            let binds: Vec<u32> = plan
                .entries
                .iter()
                .filter(|b| b.mnt_id != e.mnt_id && b.root_dev == e.root_dev)
                .filter_map(|b| b.root.strip_prefix('/')?.parse().ok())
                .collect();
            let seen_as = Path::new("/").join(e.mountpoint.trim_start_matches(['.', '/']));
            plan.ptys.make_for_binds(&at, &seen_as, &binds)?;
        }
        if e.fstype == m::TMPFS {
            if let Some(tar) = plan.tmpfs.get(&e.root_dev) {
                crate::image::tmpfs::extract(tar, &at).map_err(|source| NsError::MountCall {
                    mountpoint: e.mountpoint.clone(),
                    what: "filling the tmpfs",
                    source,
                })?;
            }
        }
        if !whole {
            let r = self.bind(&under(&at, &e.root), target, e);
            let _ = nix::mount::umount2(&at, nix::mount::MntFlags::MNT_DETACH);
            r?;
        }
        Ok(())
    }
}

/// Builds the whole tree but the deferred part at `root` (the calling
/// thread is in a new mount namespace of its own) and pivots into it.
/// The mountpoints it had to make in `root` go to `made`, also when it
/// fails: a failed restore removes them.
pub fn build(
    plan: &MountPlan,
    root: &Path,
    ext: &HashMap<String, PathBuf>,
    made: &mut Vec<MadePath>,
) -> Result<()> {
    let mp = "/";
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(call(mp, "making crit's mounts private"))?;
    mount(
        Some(root),
        root,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(call(mp, "binding --root"))?;
    let scratch = Scratch::make(root, plan)?;
    let mut b = Builder::new(root.to_path_buf(), Some(scratch.path()), ext);
    if let Some(r) = plan.entries.first() {
        b.made.insert(r.mnt_id, root.to_path_buf());
    }
    let r = build_all(&mut b, plan, ext);
    made.append(&mut b.made_paths.borrow_mut());
    r?;
    if let Some(r) = plan.entries.first() {
        remount_bind(root, r)?;
    }
    drop(scratch);
    pivot(root)
}

/// Every mount of `plan` but the root, made or (deferred) prepared.
fn build_all(b: &mut Builder, plan: &MountPlan, ext: &HashMap<String, PathBuf>) -> Result<()> {
    for e in plan.entries.iter().skip(1) {
        if !plan.deferred.contains(&e.mnt_id) {
            b.make(e, plan)?;
        } else if let Some(key) = &e.ext_key {
            let src = ext_source(ext, e, key)?;
            let tree = crate::sys::mnt::clone_tree(src).map_err(|source| NsError::MountCall {
                mountpoint: e.mountpoint.clone(),
                what: "binding its external source",
                source,
            })?;
            if let Ok(mut t) = plan.ext_trees.lock() {
                t.insert(e.mnt_id, tree);
            }
        }
    }
    Ok(())
}

/// Where file systems of which only a part is mounted are mounted whole
/// first: the root file system's /proc, in the new mount namespace only,
/// where nothing is mounted until the root task mounts the tree's proc
/// ([`mount_deferred`]); each such mount is detached again once its part
/// is bound. Nothing is made on the host, so a restore killed meanwhile
/// leaves nothing behind (the tree needs that /proc anyway). A tree that
/// mounts something else there gets a temporary directory instead.
enum Scratch {
    OnProc(PathBuf),
    Temp(tempfile::TempDir),
}

impl Scratch {
    fn make(root: &Path, plan: &MountPlan) -> Result<Scratch> {
        let proc = root.join("proc");
        let taken = plan.entries.iter().skip(1).any(|e| {
            !plan.deferred.contains(&e.mnt_id)
                && (e.mountpoint == "/proc" || e.mountpoint.starts_with("/proc/"))
        });
        if !taken && proc.is_dir() {
            return Ok(Scratch::OnProc(proc));
        }
        tempfile::tempdir().map(Scratch::Temp).map_err(|source| {
            NsError::MountCall {
                mountpoint: "/".into(),
                what: "a scratch directory",
                source,
            }
            .into()
        })
    }

    fn path(&self) -> &Path {
        match self {
            Scratch::OnProc(p) => p,
            Scratch::Temp(t) => t.path(),
        }
    }
}

/// Makes `root` the calling thread's root: pivot_root(".", ".") stacks
/// the old root over the new one, and detaching it leaves the new.
fn pivot(root: &Path) -> Result<()> {
    let mp = "/";
    nix::unistd::chdir(root).map_err(call(mp, "entering --root"))?;
    nix::unistd::pivot_root(".", ".").map_err(call(mp, "pivot_root"))?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)
        .map_err(call(mp, "leaving the old root"))?;
    nix::unistd::chdir("/").map_err(call(mp, "chdir /"))
}

/// The deferred mounts (proc and below), made by the tree's root task in
/// its pid namespace, after the pivot.
pub fn mount_deferred(plan: &MountPlan) -> Result<()> {
    let none = HashMap::new();
    let mut b = Builder::new(PathBuf::from("/"), None, &none);
    // The rest of the tree is in place: binds below proc (runc masks
    // files with /dev/null) come from it.
    for e in plan.entries.iter() {
        if !plan.deferred.contains(&e.mnt_id) {
            b.made
                .insert(e.mnt_id, under(Path::new("/"), &e.mountpoint));
        }
    }
    for e in plan
        .entries
        .iter()
        .filter(|e| plan.deferred.contains(&e.mnt_id))
    {
        if e.ext_key.is_some() {
            attach_external(plan, e)?;
            continue;
        }
        b.make(e, plan)?;
    }
    Ok(())
}

/// Attaches the bind [`build`] made of external mount `e` (below proc).
fn attach_external(plan: &MountPlan, e: &pb::MntEntry) -> Result<()> {
    let tree = plan
        .ext_trees
        .lock()
        .ok()
        .and_then(|mut t| t.remove(&e.mnt_id))
        .ok_or_else(|| NsError::Mount {
            mountpoint: e.mountpoint.clone(),
            fstype: "bind".into(),
            why: "its external source was not bound before the pivot".into(),
        })?;
    let target = under(Path::new("/"), &e.mountpoint);
    crate::sys::mnt::attach_tree(std::os::fd::AsFd::as_fd(&tree), &target).map_err(|source| {
        NsError::MountCall {
            mountpoint: e.mountpoint.clone(),
            what: "attaching its external source",
            source,
        }
    })?;
    remount_bind(&target, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: u32, parent: u32, mp: &str) -> pb::MntEntry {
        pb::MntEntry {
            mnt_id: id,
            parent_mnt_id: parent,
            mountpoint: mp.into(),
            ..Default::default()
        }
    }

    #[test]
    fn parents_come_first() {
        // CRIU writes children before parents.
        let v = vec![
            e(55, 76, "/sys/firmware"),
            e(71, 70, "/proc"),
            e(76, 70, "/sys"),
            e(50, 71, "/proc/irq"),
            e(70, 47, "/"),
        ];
        let got: Vec<u32> = parents_first(v).unwrap().iter().map(|e| e.mnt_id).collect();
        assert_eq!(got[0], 70);
        let pos = |id| got.iter().position(|&x| x == id).unwrap();
        assert!(pos(71) < pos(50) && pos(76) < pos(55));
    }

    #[test]
    fn whole_mounts_come_before_binds_of_a_part() {
        // runc's console: pts/0 bound onto /dev/console, an earlier id.
        let mut console = e(48, 72, "/dev/console");
        console.root = "/0".into();
        let mut pts = e(73, 72, "/dev/pts");
        pts.root = "/".into();
        let v = vec![console, pts, e(72, 70, "/dev"), e(70, 47, "/")];
        let got: Vec<u32> = parents_first(v).unwrap().iter().map(|e| e.mnt_id).collect();
        assert_eq!(got, [70, 72, 73, 48]);
    }

    /// An edited image whose mountpoint or root climbs out with `..`
    /// (a bind of a host directory into the tree, a mountpoint made
    /// outside --root) is refused before anything is made.
    #[test]
    fn a_mountpoint_or_root_that_climbs_out_is_refused() {
        for (mp, root) in [("/../../host", "/"), ("/sys/firmware", "/../../../tmp")] {
            let dir = tempfile::tempdir().unwrap();
            let mut bad = e(55, 70, mp);
            bad.root = root.into();
            let mut top = e(70, 47, "/");
            top.root = "/".into();
            let mut b = crate::image::typed::ImageBuilder::new("MNTS").unwrap();
            b.entry(&top).entry(&bad);
            std::fs::write(dir.path().join("mountpoints-9.img"), &b.bytes).unwrap();
            let err = read(dir.path(), 9).err().expect("refused").to_string();
            assert!(
                err.contains("mountpoints-9.img") && err.contains("mount 55"),
                "{err}"
            );
            assert!(err.contains("climbs out"), "{err}");
        }
    }

    #[test]
    fn a_symlink_on_a_mounts_way_is_found() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir(r.join("sys")).unwrap();
        std::os::unix::fs::symlink("/tmp", r.join("run")).unwrap();
        assert_eq!(symlink_on_the_way(r, &r.join("sys/fs/cgroup")), None);
        assert_eq!(
            symlink_on_the_way(r, &r.join("run/secrets")),
            Some(r.join("run"))
        );
        assert_eq!(symlink_on_the_way(r, &r.join("run")), Some(r.join("run")));
    }

    #[test]
    fn a_tree_without_one_root_is_refused() {
        assert!(parents_first(vec![e(1, 0, "/"), e(2, 9, "/x")]).is_err());
        assert!(parents_first(vec![e(1, 0, "/a")]).is_err());
    }
}
