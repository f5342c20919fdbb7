//! Mounts as `mountpoints-N.img` records them: CRIU's file system type
//! numbers, and the mount and superblock flags behind mountinfo's option
//! words. Shared by the dump (mountinfo -> entries) and the restore
//! (entries -> mount calls).

/// CRIU's `fstype` numbers and the kernel's names for them. 0 is
/// "unsupported": a file system whose contents CRIU does not dump
/// (disk file systems): it comes back only as the root, as an external
/// mount or as a bind of another mount.
pub const FSTYPES: [(u32, &str); 18] = [
    (1, "proc"),
    (2, "sysfs"),
    (3, "devtmpfs"),
    (4, "binfmt_misc"),
    (5, "tmpfs"),
    (6, "devpts"),
    (7, "simfs"),
    (8, "pstore"),
    (9, "securityfs"),
    (10, "fusectl"),
    (11, "debugfs"),
    (12, "cgroup"),
    (13, "aufs"),
    (14, "mqueue"),
    (15, "fuse"),
    (17, "overlay"),
    (18, "autofs"),
    (19, "tracefs"),
];

pub const UNSUPPORTED: u32 = 0;
pub const TMPFS: u32 = 5;
pub const DEVPTS: u32 = 6;
pub const CGROUP2: u32 = 23;

/// The fstype number of a kernel file system name.
pub fn fstype_of(name: &str) -> u32 {
    if name == "cgroup2" {
        return CGROUP2;
    }
    FSTYPES
        .iter()
        .find(|(_, n)| *n == name)
        .map_or(UNSUPPORTED, |(c, _)| *c)
}

/// The kernel name of an fstype number, None for unsupported ones.
pub fn fstype_name(code: u32) -> Option<&'static str> {
    if code == CGROUP2 {
        return Some("cgroup2");
    }
    FSTYPES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// Whether the file system of `code` holds nothing to dump: it is made
/// anew at restore from its type and options.
pub fn is_virtual(code: u32) -> bool {
    matches!(
        code,
        1 | 2 | 4 | 6 | 8 | 9 | 10 | 11 | 12 | 14 | 19 | CGROUP2
    )
}

pub const MS_RDONLY: u32 = 1;
pub const MS_NOSUID: u32 = 2;
pub const MS_NODEV: u32 = 4;
pub const MS_NOEXEC: u32 = 8;
pub const MS_SYNCHRONOUS: u32 = 16;
pub const MS_MANDLOCK: u32 = 64;
pub const MS_DIRSYNC: u32 = 128;
pub const MS_NOATIME: u32 = 1024;
pub const MS_NODIRATIME: u32 = 2048;
pub const MS_RELATIME: u32 = 1 << 21;
pub const MS_STRICTATIME: u32 = 1 << 24;
pub const MS_LAZYTIME: u32 = 1 << 25;

/// Per-mount option words of mountinfo (field 6) and their flags.
const MOUNT_WORDS: [(&str, u32); 9] = [
    ("ro", MS_RDONLY),
    ("nosuid", MS_NOSUID),
    ("nodev", MS_NODEV),
    ("noexec", MS_NOEXEC),
    ("noatime", MS_NOATIME),
    ("nodiratime", MS_NODIRATIME),
    ("relatime", MS_RELATIME),
    ("strictatime", MS_STRICTATIME),
    ("rw", 0),
];

/// Superblock option words (mountinfo's last field) that are flags, not
/// file system options.
const SB_WORDS: [(&str, u32); 6] = [
    ("ro", MS_RDONLY),
    ("rw", 0),
    ("sync", MS_SYNCHRONOUS),
    ("dirsync", MS_DIRSYNC),
    ("mand", MS_MANDLOCK),
    ("lazytime", MS_LAZYTIME),
];

/// The mount flags of mountinfo's per-mount options ("rw,nosuid,relatime").
/// A mount with none of the atime words is strictatime.
pub fn mount_flags(opts: &str) -> u32 {
    let mut f = 0;
    let mut atime = false;
    for w in opts.split(',') {
        if let Some((_, v)) = MOUNT_WORDS.iter().find(|(n, _)| *n == w) {
            f |= v;
            atime |= matches!(w, "noatime" | "relatime" | "strictatime");
        }
    }
    if !atime {
        f |= MS_STRICTATIME;
    }
    f
}

/// Splits superblock options into flags and the file system's own
/// options (joined by commas, flag words left out).
pub fn sb_flags_and_options(opts: &str) -> (u32, String) {
    let mut f = 0;
    let mut rest = Vec::new();
    for w in opts.split(',').filter(|w| !w.is_empty()) {
        match SB_WORDS.iter().find(|(n, _)| *n == w) {
            Some((_, v)) => f |= v,
            None => rest.push(w),
        }
    }
    (f, rest.join(","))
}

/// The mount(2) flags that a bind remount applies per mount.
pub const PER_MOUNT: u32 = MS_RDONLY
    | MS_NOSUID
    | MS_NODEV
    | MS_NOEXEC
    | MS_NOATIME
    | MS_NODIRATIME
    | MS_RELATIME
    | MS_STRICTATIME;

/// A kernel device number as mountinfo prints it ("MAJ:MIN") in the
/// kernel's internal form (major << 20 | minor), as CRIU stores it.
pub fn kdev(majmin: &str) -> Option<u32> {
    let (a, b) = majmin.split_once(':')?;
    Some((a.parse::<u32>().ok()? << 20) | b.parse::<u32>().ok()?)
}

/// The name of the image holding the contents of the tmpfs with kernel
/// device `dev`.
pub fn tmpfs_image(dev: u32) -> String {
    format!("tmpfs-dev-{dev}.tar.gz.img")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_as_criu_records_them() {
        // Values seen in CRIU 4.2's images of a runc container.
        assert_eq!(mount_flags("ro,relatime"), 0x200001);
        assert_eq!(mount_flags("rw,nosuid,nodev,noexec,relatime"), 0x20000e);
        assert_eq!(mount_flags("rw,nosuid"), 0x1000002);
        assert_eq!(sb_flags_and_options("ro"), (1, String::new()));
        assert_eq!(
            sb_flags_and_options("rw,size=65536k,mode=755"),
            (0, "size=65536k,mode=755".to_string())
        );
        assert_eq!(kdev("0:47"), Some(47));
        assert_eq!(kdev("254:0"), Some(254 << 20));
    }

    #[test]
    fn fstypes_go_both_ways() {
        assert_eq!(fstype_of("tmpfs"), TMPFS);
        assert_eq!(fstype_name(TMPFS), Some("tmpfs"));
        assert_eq!(fstype_of("ext4"), UNSUPPORTED);
        assert_eq!(fstype_name(fstype_of("cgroup2")), Some("cgroup2"));
    }
}
