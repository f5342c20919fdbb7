//! File locks, as the kernel shows them (a line of /proc/locks, or the
//! text of an fdinfo "lock:" line: the same format) and as CRIU's
//! `file_lock_entry` records them in filelocks.img. The dump reads the
//! first into a [`Lock`] and writes the second; the restore reads the
//! second back into a [`Lock`].
//!
//! Leases (F_SETLEASE) are recorded as CRIU 4.2 records them: flag
//! FL_LEASE, type F_RDLCK or F_WRLCK, start and len 0 (/proc shows "0
//! EOF"). A lease being broken (/proc: "LEASE BREAKING", the type shown
//! being the one it breaks to) is CRIU's type LEASE_BREAKING | F_UNLCK
//! or LEASE_BREAKING | F_RDLCK (the target F_GETLEASE gives). crit
//! neither dumps nor restores one: CRIU restores it by taking the lease
//! and opening the file itself to start a new break (with a new
//! lease-break-time and a new signal to the holder), a break nobody
//! waits for any more; the state lasts at most
//! /proc/sys/fs/lease-break-time seconds, so a dump tried again once the
//! holder has given the lease up (or it timed out) records what there is.

use crate::image::pb;

/// `file_lock_entry.flag`: CRIU's FL_* values.
pub const FL_POSIX: u32 = 1;
pub const FL_FLOCK: u32 = 2;
pub const FL_OFD: u32 = 4;
pub const FL_LEASE: u32 = 8;

/// `file_lock_entry.type` holds fcntl's lock types for every kind (a
/// flock's LOCK_SH is F_RDLCK, LOCK_EX F_WRLCK, as /proc shows them).
pub const F_RDLCK: u32 = 0;
pub const F_WRLCK: u32 = 1;
pub const F_UNLCK: u32 = 2;
/// A flock's LOCK_MAND bit (mandatory locks, gone since Linux 5.15).
const LOCK_MAND: u32 = 32;
/// CRIU's bit in a lease's type: the lease is being broken, the rest of
/// the type is what it breaks to (F_UNLCK or F_RDLCK).
pub const LEASE_BREAKING: u32 = 4;

/// The kinds of lock crit dumps and restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// fcntl F_SETLK: owned by the process, on a byte range.
    Posix,
    /// flock(2): owned by the open file description, whole file.
    Flock,
    /// fcntl F_OFD_SETLK: owned by the open file description, on a range.
    Ofd,
    /// fcntl F_SETLEASE: owned by the open file description, whole file;
    /// its taker gets a signal when another open conflicts with it.
    Lease,
}

impl Kind {
    pub fn flag(self) -> u32 {
        match self {
            Kind::Posix => FL_POSIX,
            Kind::Flock => FL_FLOCK,
            Kind::Ofd => FL_OFD,
            Kind::Lease => FL_LEASE,
        }
    }

    /// The word /proc uses.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Posix => "POSIX",
            Kind::Flock => "FLOCK",
            Kind::Ofd => "OFDLCK",
            Kind::Lease => "LEASE",
        }
    }
}

/// A lock as the images record it, but for who holds it (pid and fd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lock {
    pub kind: Kind,
    pub write: bool,
    /// First byte (0 for a flock or a lease).
    pub start: i64,
    /// Bytes from `start`; 0 is to the end of the file, however long it
    /// grows (CRIU's convention, and fcntl's).
    pub len: i64,
}

impl Lock {
    /// The entry of filelocks.img for this lock, held by task `pid` (as
    /// the tree sees it) through its descriptor `fd`.
    pub fn entry(&self, pid: i32, fd: i32) -> pb::FileLockEntry {
        pb::FileLockEntry {
            flag: self.kind.flag(),
            r#type: if self.write { F_WRLCK } else { F_RDLCK },
            pid,
            fd,
            start: self.start,
            len: self.len,
        }
    }

    /// The lock an entry records, or why crit does not take it again.
    /// The flag is read bit by bit in the order CRIU's restore reads it.
    pub fn of_entry(e: &pb::FileLockEntry) -> Result<Lock, String> {
        let kind = if e.flag & FL_FLOCK != 0 {
            Kind::Flock
        } else if e.flag & FL_POSIX != 0 {
            Kind::Posix
        } else if e.flag & FL_OFD != 0 {
            Kind::Ofd
        } else if e.flag & FL_LEASE != 0 {
            Kind::Lease
        } else {
            return Err(format!("flag {:#x} names no kind of lock", e.flag));
        };
        let write = match e.r#type {
            F_RDLCK => false,
            F_WRLCK => true,
            t if kind == Kind::Lease && t & LEASE_BREAKING != 0 => {
                let to = match t & !LEASE_BREAKING {
                    F_UNLCK => "nothing",
                    F_RDLCK => "a read lease",
                    _ => "an unknown type",
                };
                return Err(format!(
                    "a lease that was being broken (type {t}: breaking to {to}), which crit does not restore (CRIU starts the break again)"
                ));
            }
            t if kind == Kind::Flock && t & LOCK_MAND != 0 => {
                return Err(format!(
                    "a mandatory flock (LOCK_MAND, type {t:#x}), which this kernel does not have"
                ))
            }
            t => return Err(format!("lock type {t} is neither read (0) nor write (1)")),
        };
        Ok(Lock {
            kind,
            write,
            start: e.start,
            len: e.len,
        })
    }
}

impl std::fmt::Display for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ty = if self.write { "WRITE" } else { "READ" };
        if self.kind == Kind::Lease {
            return write!(f, "{ty} lease");
        }
        write!(f, "{} {ty} lock", self.kind.name())?;
        match (self.kind, self.len) {
            (Kind::Flock | Kind::Lease, _) => Ok(()),
            (_, 0) => write!(f, " on bytes {} to the end", self.start),
            (_, n) => write!(
                f,
                " on bytes {}-{}",
                self.start,
                self.start.saturating_add(n - 1)
            ),
        }
    }
}

/// One lock as the kernel shows it: a line of /proc/locks, or what
/// follows "lock:" in fdinfo ("1: POSIX  ADVISORY  WRITE 1234 fd:01:5678
/// 0 EOF"). Its number is left out, so the same lock reads the same in
/// both files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shown {
    /// A waiter for the lock ("->" in /proc/locks), not a holder.
    pub blocked: bool,
    /// POSIX, FLOCK, OFDLCK, LEASE, DELEG, ACCESS...
    pub class: String,
    /// ADVISORY; for leases ACTIVE, BREAKING or BREAKER; MSNFS for a
    /// mandatory flock of old kernels.
    pub mode: String,
    /// READ, WRITE or UNLCK.
    pub ty: String,
    /// The owner's pid in the reader's pid namespace: a POSIX lock's
    /// process, a flock's creator, -1 for an OFD lock.
    pub pid: i32,
    /// The device of the file's file system, as (major, minor).
    pub major: u32,
    pub minor: u32,
    pub ino: u64,
    pub start: i64,
    /// The last byte; None: to the end of the file ("EOF").
    pub end: Option<i64>,
}

impl Shown {
    /// Parses one line; None if it is not a lock line this format has.
    pub fn parse(line: &str) -> Option<Shown> {
        let mut f = line.split_whitespace();
        f.next()?.strip_suffix(':')?.parse::<u64>().ok()?;
        let mut class = f.next()?;
        let blocked = class == "->";
        if blocked {
            class = f.next()?;
        }
        let mode = f.next()?;
        let ty = f.next()?;
        let pid = f.next()?.parse().ok()?;
        let mut dev = f.next()?.split(':');
        let major = u32::from_str_radix(dev.next()?, 16).ok()?;
        let minor = u32::from_str_radix(dev.next()?, 16).ok()?;
        let ino = dev.next()?.parse().ok()?;
        let start = f.next()?.parse().ok()?;
        let end = match f.next()? {
            "EOF" => None,
            e => Some(e.parse().ok()?),
        };
        if dev.next().is_some() || f.next().is_some() {
            return None;
        }
        Some(Shown {
            blocked,
            class: class.to_string(),
            mode: mode.to_string(),
            ty: ty.to_string(),
            pid,
            major,
            minor,
            ino,
            start,
            end,
        })
    }

    /// The file's device as stat(2) gives it.
    pub fn dev(&self) -> u64 {
        nix::sys::stat::makedev(self.major.into(), self.minor.into())
    }

    /// "MAJ:MIN:INODE" as /proc shows it.
    pub fn inode(&self) -> String {
        format!("{:02x}:{:02x}:{}", self.major, self.minor, self.ino)
    }

    /// The lock to record, or what it is that crit does not dump.
    pub fn lock(&self) -> Result<Lock, String> {
        let kind = match (self.class.as_str(), self.mode.as_str()) {
            ("POSIX", _) => Kind::Posix,
            ("OFDLCK", _) => Kind::Ofd,
            ("FLOCK", "ADVISORY") => Kind::Flock,
            ("FLOCK", m) => return Err(format!("a {m} flock (mandatory)")),
            ("LEASE", "ACTIVE") => Kind::Lease,
            ("LEASE", "BREAKING") => {
                return Err(format!(
                    "a lease being broken (to {}: another process opened the file and waits for the holder; dump again once the lease is given up)",
                    self.ty
                ))
            }
            ("LEASE", m) => return Err(format!("a lease in state {m}")),
            (c, _) => return Err(format!("a {c} lock")),
        };
        let write = match self.ty.as_str() {
            "READ" => false,
            "WRITE" => true,
            t => return Err(format!("a {} lock of type {t}", self.class)),
        };
        // What CRIU records: the length from the last byte, 0 to the end.
        let len = match self.end {
            None => 0,
            Some(e) => e.saturating_sub(self.start).saturating_add(1),
        };
        Ok(Lock {
            kind,
            write,
            start: self.start,
            len,
        })
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = self.end.map_or("EOF".to_string(), |e| e.to_string());
        write!(
            f,
            "{} {} {} {} {} {} {end}",
            self.class,
            self.mode,
            self.ty,
            self.pid,
            self.inode(),
            self.start
        )
    }
}

/// The "lock:" lines of an fdinfo text, each as shown.
pub fn fdinfo_lines(info: &str) -> impl Iterator<Item = &str> {
    info.lines()
        .filter_map(|l| l.strip_prefix("lock:"))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_proc_locks_parse() {
        let s = Shown::parse("1: POSIX  ADVISORY  WRITE 1234 fd:01:5678 0 99").unwrap();
        assert_eq!(
            (
                s.class.as_str(),
                s.ty.as_str(),
                s.pid,
                s.ino,
                s.start,
                s.end
            ),
            ("POSIX", "WRITE", 1234, 5678, 0, Some(99))
        );
        assert_eq!((s.major, s.minor, s.blocked), (0xfd, 1, false));
        assert_eq!(s.dev(), nix::sys::stat::makedev(0xfd, 1));
        let l = s.lock().unwrap();
        assert_eq!(
            (l.kind, l.write, l.start, l.len),
            (Kind::Posix, true, 0, 100)
        );
        assert_eq!(l.to_string(), "POSIX WRITE lock on bytes 0-99");

        let s = Shown::parse("12: OFDLCK ADVISORY  READ -1 00:1b:42 200 EOF").unwrap();
        assert_eq!((s.pid, s.end), (-1, None));
        let l = s.lock().unwrap();
        assert_eq!(
            (l.kind, l.write, l.start, l.len),
            (Kind::Ofd, false, 200, 0)
        );
        assert_eq!(l.to_string(), "OFDLCK READ lock on bytes 200 to the end");

        let s = Shown::parse("3: FLOCK  ADVISORY  WRITE 77 08:02:9 0 EOF").unwrap();
        let l = s.lock().unwrap();
        assert_eq!((l.kind, l.len), (Kind::Flock, 0));
        assert_eq!(l.to_string(), "FLOCK WRITE lock");

        // A waiter: its line has "->" after the number.
        let s = Shown::parse("4: -> POSIX  ADVISORY  WRITE 88 fd:01:5678 0 EOF").unwrap();
        assert!(s.blocked);
        assert_eq!(s.pid, 88);
    }

    #[test]
    fn the_same_lock_reads_the_same_in_fdinfo_and_proc_locks() {
        let info = "pos:\t0\nflags:\t0100002\nmnt_id:\t30\nino:\t5678\n\
                    lock:\t1: POSIX  ADVISORY  WRITE 1234 fd:01:5678 0 99\n";
        let from_info: Vec<Shown> = fdinfo_lines(info).filter_map(Shown::parse).collect();
        let from_proc = Shown::parse("7: POSIX  ADVISORY  WRITE 1234 fd:01:5678 0 99").unwrap();
        assert_eq!(from_info, vec![from_proc]);
    }

    #[test]
    fn leases_read_as_criu_records_them() {
        for (line, write) in [
            ("1: LEASE  ACTIVE    READ 5 fd:01:2 0 EOF", false),
            ("2: LEASE  ACTIVE    WRITE 5 fd:01:3 0 EOF", true),
        ] {
            let l = Shown::parse(line).unwrap().lock().unwrap();
            assert_eq!(
                (l.kind, l.write, l.start, l.len),
                (Kind::Lease, write, 0, 0)
            );
            let e = l.entry(5, 4);
            let ty = if write { F_WRLCK } else { F_RDLCK };
            assert_eq!((e.flag, e.r#type, e.start, e.len), (FL_LEASE, ty, 0, 0));
            assert_eq!(Lock::of_entry(&e).unwrap(), l);
        }
        let l = Shown::parse("2: LEASE  ACTIVE    WRITE 5 fd:01:3 0 EOF").unwrap();
        assert_eq!(l.lock().unwrap().to_string(), "WRITE lease");
    }

    #[test]
    fn a_lease_being_broken_is_refused_both_ways() {
        // /proc shows the type it breaks to: READ (a write lease that a
        // reader broke) or UNLCK.
        for to in ["READ", "UNLCK"] {
            let s = Shown::parse(&format!("1: LEASE  BREAKING  {to} 5 fd:01:2 0 EOF")).unwrap();
            let e = s.lock().unwrap_err();
            assert!(
                e.contains("being broken") && e.contains(&format!("(to {to}:")),
                "{e}"
            );
        }
        // CRIU records LEASE_BREAKING | the target F_GETLEASE gives.
        for (ty, to) in [(6, "breaking to nothing"), (4, "breaking to a read lease")] {
            let e = pb::FileLockEntry {
                flag: FL_LEASE,
                r#type: ty,
                pid: 5,
                fd: 4,
                start: 0,
                len: 0,
            };
            let why = Lock::of_entry(&e).unwrap_err();
            assert!(why.contains("being broken") && why.contains(to), "{why}");
        }
        let odd = pb::FileLockEntry {
            flag: FL_LEASE,
            r#type: F_UNLCK,
            pid: 5,
            fd: 4,
            start: 0,
            len: 0,
        };
        assert!(Lock::of_entry(&odd).unwrap_err().contains("type 2"));
    }

    #[test]
    fn what_crit_does_not_dump_is_named() {
        let mand = Shown::parse("1: FLOCK  MSNFS     READ 5 fd:01:2 0 EOF").unwrap();
        assert!(mand.lock().unwrap_err().contains("MSNFS"));
        let deleg = Shown::parse("1: DELEG  ACTIVE    READ 5 fd:01:2 0 EOF").unwrap();
        assert!(deleg.lock().unwrap_err().contains("DELEG"));
    }

    #[test]
    fn lines_of_other_forms_are_not_locks() {
        for l in [
            "",
            "POSIX  ADVISORY  WRITE 1234 fd:01:5678 0 99",
            "1: POSIX *NOINODE* WRITE 1234 <none>:0 0 EOF",
            "1: POSIX  ADVISORY  WRITE x fd:01:5678 0 99",
            "1: POSIX  ADVISORY  WRITE 1 fd:01:5678 0 99 extra",
            "1: POSIX  ADVISORY  WRITE 1 fd:01 0 99",
        ] {
            assert_eq!(Shown::parse(l), None, "{l:?}");
        }
    }

    #[test]
    fn entries_round_trip_and_unknown_kinds_are_refused() {
        let l = Lock {
            kind: Kind::Ofd,
            write: true,
            start: 1000,
            len: 0,
        };
        let e = l.entry(7, 4);
        assert_eq!((e.flag, e.r#type, e.pid, e.fd), (FL_OFD, F_WRLCK, 7, 4));
        assert_eq!(Lock::of_entry(&e).unwrap(), l);
        // The flag is read in CRIU's order: a flock bit wins.
        let both = pb::FileLockEntry {
            flag: FL_LEASE | FL_FLOCK,
            ..e
        };
        assert_eq!(Lock::of_entry(&both).unwrap().kind, Kind::Flock);
        let mand = pb::FileLockEntry {
            flag: FL_FLOCK,
            r#type: LOCK_MAND | 64,
            ..e
        };
        assert!(Lock::of_entry(&mand).unwrap_err().contains("LOCK_MAND"));
        let none = pb::FileLockEntry { flag: 0, ..e };
        assert!(Lock::of_entry(&none).is_err());
    }
}
