//! File locks (`--file-locks`): each lock of filelocks.img is taken
//! again by the task that held it, through the descriptor the images
//! name, before the tree runs.
//!
//! A POSIX lock belongs to the process that takes it, so every lock is
//! taken by a call injected into its task ([`take`]), non-blocking: a
//! lock someone else holds now fails the restore, naming it, and the
//! rollback ends the tree. It is taken once the task's descriptors are
//! final and crit's own (the files its mappings came from) are closed,
//! since closing any descriptor of a file drops the POSIX locks the
//! process holds on it. A flock or OFD lock belongs to the open file
//! description, which tasks that inherited it share: the images record
//! it once, by one task, and it is taken once.
//!
//! A lease (F_SETLEASE) also belongs to the open file description; it
//! is taken by the task the images name, through its descriptor, so that
//! the kernel records that task as the lease's taker and, where the
//! images name no other owner for the file (F_SETOWN, restored with the
//! descriptor), sends it the lease-break signal (SIGIO, or the file's
//! F_SETSIG signal, restored with the descriptor too). The call runs with
//! the credentials the task has then, crit's, as for the other locks (the
//! task's own are set last): the kernel wants the file's owner or
//! CAP_LEASE. A lease fails where the file is open elsewhere (for
//! writing, for a read lease; at all, for a write lease): the restore
//! then fails naming it. A lease that was being broken is refused when
//! the images are read ([`Lock::of_entry`]).

use super::error::{SetupError, TaskError};
use super::plan::{FileTable, Task};
use super::remote::Tracee;
use crate::error::Result;
use crate::image::pb;
use crate::model::lock::{Kind, Lock};

const NR_FCNTL: i64 = libc::SYS_fcntl;
const NR_FLOCK: i64 = libc::SYS_flock;
const F_SETLK: u64 = libc::F_SETLK as u64;
const F_SETLEASE: u64 = libc::F_SETLEASE as u64;
const F_OFD_SETLK: u64 = libc::F_OFD_SETLK as u64;
const LOCK_SH: u64 = libc::LOCK_SH as u64;
const LOCK_EX: u64 = libc::LOCK_EX as u64;
const LOCK_NB: u64 = libc::LOCK_NB as u64;

/// A lock a task takes again: through its fd `fd`, on `file` (named for
/// messages).
#[derive(Debug, Clone)]
pub struct Take {
    pub fd: u32,
    pub lock: Lock,
    pub file: String,
}

/// Gives each task the locks of filelocks.img it held, in the images'
/// order. An entry naming no live task of the images, a descriptor its
/// task does not hold, or a kind crit does not take (a lease being
/// broken) is refused.
pub fn assign(tasks: &mut [Task], entries: &[pb::FileLockEntry], files: &FileTable) -> Result<()> {
    for e in entries {
        let refuse = |why: String| SetupError::LockEntry {
            pid: e.pid,
            fd: e.fd,
            why,
        };
        let lock = Lock::of_entry(e).map_err(refuse)?;
        let t = tasks
            .iter_mut()
            .find(|t| i64::from(t.pid) == i64::from(e.pid) && t.zombie.is_none())
            .ok_or_else(|| refuse("no live task of the images has that pid".into()))?;
        let f = t
            .fds
            .iter()
            .find(|f| i64::from(f.fd) == i64::from(e.fd))
            .ok_or_else(|| refuse("the task has no such descriptor".into()))?;
        let take = Take {
            fd: f.fd,
            lock,
            file: name(files, f.id),
        };
        t.locks.push(take);
    }
    Ok(())
}

/// A file as messages name it: its path, or its id.
fn name(files: &FileTable, id: u32) -> String {
    match files.get(&id).and_then(|f| f.reg.as_ref()) {
        Some(r) => r.name.clone(),
        None => format!("file id {id}"),
    }
}

/// Takes the locks of `task` in it; `scratch` is task memory for a
/// `struct flock`.
pub fn take(t: &mut dyn Tracee, task: &Task, scratch: u64) -> Result<()> {
    for k in &task.locks {
        let fd = u64::from(k.fd);
        let r = match k.lock.kind {
            Kind::Flock => {
                let op = if k.lock.write { LOCK_EX } else { LOCK_SH };
                t.syscall(NR_FLOCK, [fd, op | LOCK_NB, 0, 0, 0, 0])?
            }
            Kind::Lease => {
                let ty = if k.lock.write {
                    libc::F_WRLCK
                } else {
                    libc::F_RDLCK
                };
                t.syscall(NR_FCNTL, [fd, F_SETLEASE, ty as u64, 0, 0, 0])?
            }
            Kind::Posix | Kind::Ofd => {
                t.write_mem(&[(scratch, &flock_struct(&k.lock))])?;
                let cmd = match k.lock.kind {
                    Kind::Ofd => F_OFD_SETLK,
                    _ => F_SETLK,
                };
                t.syscall(NR_FCNTL, [fd, cmd, scratch, 0, 0, 0])?
            }
        };
        if (-4095..0).contains(&r) {
            return Err(refused(task.pid, k, -r as i32).into());
        }
    }
    Ok(())
}

/// Why lock `k` of task `pid` was not taken (errno `e`).
fn refused(pid: u32, k: &Take, e: i32) -> TaskError {
    let err = std::io::Error::from_raw_os_error(e);
    let why = match (k.lock.kind, e) {
        (Kind::Lease, libc::EAGAIN) if k.lock.write => {
            format!("the file is open elsewhere now (by another process, another open of it, or a mapping) ({err})")
        }
        (Kind::Lease, libc::EAGAIN) => {
            format!("the file is open for writing elsewhere now ({err})")
        }
        (Kind::Lease, libc::EACCES) => {
            format!("the task neither owns the file nor has CAP_LEASE ({err})")
        }
        (Kind::Lease, libc::EINVAL) => format!(
            "this kernel refuses a lease on it (not a regular file, a file system without leases, or /proc/sys/fs/leases-enable is 0) ({err})"
        ),
        (_, libc::EAGAIN | libc::EACCES) => {
            format!("another process holds a conflicting lock on it now ({err})")
        }
        (_, _) => err.to_string(),
    };
    TaskError::Lock {
        pid,
        fd: k.fd,
        lock: k.lock.to_string(),
        file: k.file.clone(),
        why,
    }
}

/// x86-64's `struct flock` for `l` from the start of the file: l_type
/// and l_whence (16 bits each), l_start and l_len (64 bits, from byte 8),
/// l_pid (0: the kernel fills it in, and an OFD lock requires 0).
fn flock_struct(l: &Lock) -> [u8; 32] {
    let mut b = [0u8; 32];
    let ty = match l.write {
        true => libc::F_WRLCK,
        false => libc::F_RDLCK,
    } as i16;
    b[0..2].copy_from_slice(&ty.to_ne_bytes());
    b[2..4].copy_from_slice(&(libc::SEEK_SET as i16).to_ne_bytes());
    b[8..16].copy_from_slice(&l.start.to_ne_bytes());
    b[16..24].copy_from_slice(&l.len.to_ne_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_flock_struct_has_libcs_layout() {
        assert_eq!(std::mem::size_of::<libc::flock>(), 32);
        assert_eq!(std::mem::offset_of!(libc::flock, l_type), 0);
        assert_eq!(std::mem::offset_of!(libc::flock, l_whence), 2);
        assert_eq!(std::mem::offset_of!(libc::flock, l_start), 8);
        assert_eq!(std::mem::offset_of!(libc::flock, l_len), 16);
        assert_eq!(std::mem::offset_of!(libc::flock, l_pid), 24);
        let b = flock_struct(&Lock {
            kind: Kind::Posix,
            write: true,
            start: 200,
            len: 100,
        });
        assert_eq!(i16::from_ne_bytes([b[0], b[1]]), libc::F_WRLCK as i16);
        assert_eq!(i64::from_ne_bytes(b[8..16].try_into().unwrap()), 200);
        assert_eq!(i64::from_ne_bytes(b[16..24].try_into().unwrap()), 100);
    }

    /// A recorded call: (number, fd, command, third argument, the
    /// struct it points to).
    type Call = (i64, u64, u64, u64, Option<[u8; 32]>);

    /// A task whose calls are recorded; a lock on fd 9 is someone
    /// else's.
    #[derive(Default)]
    struct Fake {
        mem: HashMap<u64, [u8; 32]>,
        calls: Vec<Call>,
    }

    impl Tracee for Fake {
        fn tid(&self) -> u32 {
            42
        }
        fn syscall(&mut self, nr: i64, a: [u64; 6]) -> Result<i64> {
            // F_SETLEASE's argument is the type, not a struct.
            let st = (nr == NR_FCNTL && a[1] != F_SETLEASE).then(|| self.mem[&a[2]]);
            self.calls.push((nr, a[0], a[1], a[2], st));
            Ok(if a[0] == 9 { -(libc::EAGAIN as i64) } else { 0 })
        }
        fn write_mem(&mut self, iov: &[(u64, &[u8])]) -> Result<()> {
            for (a, b) in iov {
                self.mem.insert(*a, (*b).try_into().unwrap());
            }
            Ok(())
        }
        fn read_mem(&mut self, _: u64, _: &mut [u8]) -> Result<()> {
            unreachable!()
        }
    }

    fn task_with(locks: Vec<Take>) -> Task {
        let e = pb::PstreeEntry {
            pid: 42,
            ppid: 1,
            pgid: 42,
            sid: 42,
            threads: vec![42],
        };
        let mut t = super::super::plan::zombie(&e, 0, pb::CoreEntry::default());
        t.locks = locks;
        t
    }

    fn take_of(fd: u32, kind: Kind, write: bool, start: i64, len: i64) -> Take {
        Take {
            fd,
            lock: Lock {
                kind,
                write,
                start,
                len,
            },
            file: "/tmp/f".into(),
        }
    }

    #[test]
    fn each_kind_is_taken_by_its_call_without_waiting() {
        let task = task_with(vec![
            take_of(3, Kind::Posix, true, 0, 100),
            take_of(4, Kind::Ofd, false, 1000, 0),
            take_of(5, Kind::Flock, true, 0, 0),
            take_of(6, Kind::Lease, false, 0, 0),
            take_of(7, Kind::Lease, true, 0, 0),
        ]);
        let mut t = Fake::default();
        take(&mut t, &task, 0x1000).unwrap();
        let calls: Vec<(i64, u64, u64)> = t.calls.iter().map(|c| (c.0, c.1, c.2)).collect();
        assert_eq!(
            calls,
            vec![
                (NR_FCNTL, 3, F_SETLK),
                (NR_FCNTL, 4, F_OFD_SETLK),
                (NR_FLOCK, 5, LOCK_EX | LOCK_NB),
                (NR_FCNTL, 6, F_SETLEASE),
                (NR_FCNTL, 7, F_SETLEASE),
            ]
        );
        let (read, write) = (t.calls[3], t.calls[4]);
        assert_eq!(
            (read.3, write.3),
            (libc::F_RDLCK as u64, libc::F_WRLCK as u64)
        );
        let ofd = t.calls[1].4.unwrap();
        assert_eq!(i16::from_ne_bytes([ofd[0], ofd[1]]), libc::F_RDLCK as i16);
        assert_eq!(i64::from_ne_bytes(ofd[8..16].try_into().unwrap()), 1000);
    }

    #[test]
    fn a_lock_held_by_another_is_refused_naming_it() {
        let task = task_with(vec![take_of(9, Kind::Posix, true, 0, 100)]);
        let e = take(&mut Fake::default(), &task, 0x1000)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("pid 42 fd 9: its POSIX WRITE lock on bytes 0-99 on /tmp/f")
                && e.contains("another process holds a conflicting lock"),
            "{e}"
        );
    }

    #[test]
    fn a_lease_the_kernel_refuses_is_named_with_the_reason() {
        for (write, want) in [
            (false, "pid 42 fd 9: its READ lease on /tmp/f cannot be taken again: the file is open for writing elsewhere"),
            (true, "pid 42 fd 9: its WRITE lease on /tmp/f cannot be taken again: the file is open elsewhere"),
        ] {
            let task = task_with(vec![take_of(9, Kind::Lease, write, 0, 0)]);
            let e = take(&mut Fake::default(), &task, 0x1000)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want) && !e.contains('\n'), "{e}");
        }
    }
}
