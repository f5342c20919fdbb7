//! The tree's mount namespace: mountpoints-N.img from the root task's
//! /proc/PID/mountinfo, and the contents of each tmpfs as a gzipped tar
//! (tmpfs-dev-DEV.tar.gz.img), CRIU's layout.
//!
//! What comes back at restore and how: the root mount from `--root DIR`;
//! virtual file systems (proc, sysfs, devpts, mqueue, cgroup...) made
//! anew; tmpfs made anew and filled from its tar; binds of another mount
//! of the tree bound again; mounts named with `--external
//! mnt[MOUNTPOINT]:KEY` from what restore maps KEY to. Any other mount
//! (a disk file system that is none of these) is refused here.

use crate::dump::error::DumpError;
use crate::dump::procfs;
use crate::error::Result;
use crate::image::pb;
use crate::model::mount as m;
use std::collections::{BTreeMap, HashSet};

/// One line of /proc/PID/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub id: u32,
    pub parent: u32,
    pub dev: String,
    pub root: String,
    pub mountpoint: String,
    pub mount_opts: String,
    pub shared: u32,
    pub master: u32,
    pub fstype: String,
    pub source: String,
    pub super_opts: String,
}

/// Undoes mountinfo's octal escapes ("\040" for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = &b[i + 1..i + 4];
            let octal = std::str::from_utf8(digits).ok();
            if let Some(v) = octal.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; `pid` names the file in errors.
pub fn parse(pid: i32, text: &str) -> Result<Vec<Line>> {
    let mut out = Vec::new();
    for l in text.lines() {
        let bad = || DumpError::ProcParse {
            pid,
            file: "mountinfo",
            fault: crate::dump::error::ProcFault::Line(l.to_string()),
        };
        let f: Vec<&str> = l.split(' ').collect();
        let dash = f.iter().position(|&x| x == "-").ok_or_else(bad)?;
        if dash < 6 || f.len() < dash + 4 {
            return Err(bad().into());
        }
        let mut shared = 0;
        let mut master = 0;
        for opt in &f[6..dash] {
            if let Some(v) = opt.strip_prefix("shared:") {
                shared = v.parse().map_err(|_| bad())?;
            } else if let Some(v) = opt.strip_prefix("master:") {
                master = v.parse().map_err(|_| bad())?;
            }
        }
        out.push(Line {
            id: f[0].parse().map_err(|_| bad())?,
            parent: f[1].parse().map_err(|_| bad())?,
            dev: f[2].to_string(),
            root: unescape(f[3]),
            mountpoint: unescape(f[4]),
            mount_opts: f[5].to_string(),
            shared,
            master,
            fstype: f[dash + 1].to_string(),
            source: unescape(f[dash + 2]),
            super_opts: f[dash + 3].to_string(),
        });
    }
    Ok(out)
}

/// The mount tree of a namespace, ready to write.
pub struct MountNs {
    pub entries: Vec<pb::MntEntry>,
    /// tmpfs contents by kernel device: a gzipped tar each.
    pub tmpfs: BTreeMap<u32, Vec<u8>>,
}

/// Reads the mount namespace of task `pid` (frozen); `external` maps
/// mountpoints to the keys given with `--external mnt[MP]:KEY` (a
/// lookup table: mountpoints without a mount are passed over).
pub fn read(pid: i32, external: &BTreeMap<String, String>) -> Result<MountNs> {
    let lines = parse(pid, &procfs::read_string(pid, "mountinfo")?)?;
    let ids: HashSet<u32> = lines.iter().map(|l| l.id).collect();
    let root = lines
        .iter()
        .find(|l| l.mountpoint == "/" && !ids.contains(&l.parent))
        .or_else(|| lines.iter().find(|l| l.mountpoint == "/"))
        .ok_or(DumpError::NoRootMount { pid })?
        .id;
    let mut ns = MountNs {
        entries: Vec::new(),
        tmpfs: BTreeMap::new(),
    };
    for l in &lines {
        let e = entry(l, external.get(&l.mountpoint));
        if e.ext_key.is_none() && l.id != root {
            check_restorable(pid, l, &lines)?;
        }
        if e.fstype == m::TMPFS && e.ext_key.is_none() && !ns.tmpfs.contains_key(&e.root_dev) {
            let tar = tmpfs_tar(pid, &l.mountpoint).map_err(|source| DumpError::Tmpfs {
                pid,
                mountpoint: l.mountpoint.clone(),
                source,
            })?;
            ns.tmpfs.insert(e.root_dev, tar);
        }
        ns.entries.push(e);
    }
    // A key whose mountpoint has no mount is not an error, as with CRIU:
    // runc names every bind and device of its config, and devices it
    // made with mknod are not mounts.
    Ok(ns)
}

/// The tar of the tmpfs mounted at `mountpoint` in `pid`'s mount
/// namespace: read through a detached copy of that one mount, made in
/// its namespace by a thread of crit's, so that what other mounts cover
/// is in it too (runc's /dev holds the file /dev/console is bound onto,
/// which CRIU's restore needs as the mountpoint). Through
/// /proc/PID/root when no copy can be made.
fn tmpfs_tar(pid: i32, mountpoint: &str) -> std::io::Result<Vec<u8>> {
    let through_root = || crate::image::tmpfs::archive(&format!("/proc/{pid}/root{mountpoint}"));
    let copy = std::thread::scope(|s| {
        crate::sys::thread::scoped(s, || -> std::io::Result<std::os::fd::OwnedFd> {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))?;
            crate::sys::ns::unshare(libc::CLONE_FS as u64)?;
            crate::sys::ns::enter(std::os::fd::AsFd::as_fd(&ns), libc::CLONE_NEWNS as u64)?;
            crate::sys::mnt::clone_tree(std::path::Path::new(mountpoint))
        })?
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the mount thread panicked")))
    });
    match copy {
        Ok(fd) => {
            use std::os::fd::AsRawFd;
            crate::image::tmpfs::archive(&format!("/proc/self/fd/{}", fd.as_raw_fd()))
        }
        Err(_) => through_root(),
    }
}

/// The image entry of one mount.
fn entry(l: &Line, ext_key: Option<&String>) -> pb::MntEntry {
    let (sb_flags, options) = m::sb_flags_and_options(&l.super_opts);
    let fstype = m::fstype_of(&l.fstype);
    pb::MntEntry {
        fstype,
        mnt_id: l.id,
        root_dev: m::kdev(&l.dev).unwrap_or(0),
        parent_mnt_id: l.parent,
        flags: m::mount_flags(&l.mount_opts),
        root: l.root.clone(),
        mountpoint: l.mountpoint.clone(),
        source: l.source.clone(),
        options,
        shared_id: Some(l.shared),
        master_id: Some(l.master),
        sb_flags: Some(sb_flags),
        ext_key: ext_key.cloned(),
        ..Default::default()
    }
}

/// Refuses a mount restore could not make: a disk (or other) file system
/// that is neither virtual, tmpfs, nor a bind of another mount of the
/// tree.
fn check_restorable(pid: i32, l: &Line, all: &[Line]) -> Result<()> {
    let code = m::fstype_of(&l.fstype);
    if m::is_virtual(code) || code == m::TMPFS {
        return Ok(());
    }
    let covered = all.iter().any(|o| {
        o.id != l.id
            && o.dev == l.dev
            && (o.root == "/" || l.root == o.root || l.root.starts_with(&format!("{}/", o.root)))
            && (o.mountpoint == "/" || o.id < l.id)
    });
    if covered {
        return Ok(());
    }
    Err(DumpError::UnsupportedMount {
        pid,
        mountpoint: l.mountpoint.clone(),
        fstype: l.fstype.clone(),
        device: l.source.clone(),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "67 45 254:0 /tmp/rfs / rw,relatime - ext4 /dev/vda rw,discard\n\
68 67 0:41 / /run rw,nosuid,nodev,relatime shared:5 - tmpfs tmpfs rw,size=16384k,mode=755\n\
69 67 0:42 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n\
70 67 0:43 / /a\\040b rw master:3 - tmpfs tmpfs rw\n";

    #[test]
    fn mountinfo_lines() {
        let v = parse(1, INFO).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].root, "/tmp/rfs");
        assert_eq!((v[1].shared, v[1].master), (5, 0));
        assert_eq!(v[3].mountpoint, "/a b");
        assert_eq!(v[3].master, 3);
        let e = entry(&v[1], None);
        assert_eq!(e.fstype, m::TMPFS);
        assert_eq!(e.options, "size=16384k,mode=755");
        assert_eq!(e.flags, m::MS_NOSUID | m::MS_NODEV | m::MS_RELATIME);
        assert_eq!(e.root_dev, 41);
        assert!(parse(1, "67 45 254:0 / /\n").is_err());
    }

    #[test]
    fn disk_mounts_must_be_binds_or_external() {
        let mut v = parse(1, INFO).unwrap();
        v.push(Line {
            id: 71,
            parent: 67,
            dev: "254:0".into(),
            root: "/tmp/rfs/data".into(),
            mountpoint: "/data".into(),
            ..v[0].clone()
        });
        assert!(check_restorable(1, &v[4], &v).is_ok());
        v[4].dev = "254:1".into();
        assert!(check_restorable(1, &v[4], &v).is_err());
    }
}
