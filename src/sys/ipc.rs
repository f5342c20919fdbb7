//! System V IPC of the calling thread's ipc namespace: listing shared
//! memory segments, semaphore sets and message queues, reading them
//! (attach, GETALL, MSG_COPY) and making them again.
//!
//! The structures are the kernel's 64-bit ones (x86-64 always uses
//! them); the calls go straight to the syscalls.

use super::err;
use std::io;

const IPC_RMID: i64 = 0;
const IPC_SET: i64 = 1;
const MSG_STAT: i64 = 11;
const MSG_INFO: i64 = 12;
const SHM_STAT: i64 = 13;
const SHM_INFO: i64 = 14;
const SEM_STAT: i64 = 18;
const SEM_INFO: i64 = 19;
const GETALL: i64 = 13;
const SETALL: i64 = 17;
const IPC_CREAT: i64 = 0o1000;
const IPC_EXCL: i64 = 0o2000;
const IPC_NOWAIT: i64 = 0o4000;
const MSG_COPY: i64 = 0o40000;
const SHM_RDONLY: i64 = 0o10000;

/// The kernel's `ipc64_perm`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct Perm64 {
    key: i32,
    uid: u32,
    gid: u32,
    cuid: u32,
    cgid: u32,
    mode: u32,
    seq: u16,
    pad: u16,
    unused: [u64; 2],
}

#[repr(C)]
#[derive(Default)]
struct ShmidDs {
    perm: Perm64,
    segsz: u64,
    times: [i64; 3],
    cpid: i32,
    lpid: i32,
    nattch: u64,
    unused: [u64; 2],
}

#[repr(C)]
#[derive(Default)]
struct SemidDs {
    perm: Perm64,
    otime: i64,
    unused1: u64,
    ctime: i64,
    unused2: u64,
    nsems: u64,
    unused: [u64; 2],
}

#[repr(C)]
#[derive(Default)]
struct MsqidDs {
    perm: Perm64,
    times: [i64; 3],
    cbytes: u64,
    qnum: u64,
    qbytes: u64,
    lspid: i32,
    lrpid: i32,
    unused: [u64; 2],
}

/// Who owns an IPC object and who may use it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    /// The permission bits (lower 9 bits matter).
    pub mode: u32,
}

impl From<Perm64> for Perm {
    fn from(p: Perm64) -> Perm {
        Perm {
            key: p.key,
            uid: p.uid,
            gid: p.gid,
            cuid: p.cuid,
            cgid: p.cgid,
            mode: p.mode,
        }
    }
}

/// The kind of an IPC object, for the calls every kind has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Shm,
    Sem,
    Msg,
}

impl Kind {
    fn ctl(self) -> i64 {
        match self {
            Kind::Shm => libc::SYS_shmctl,
            Kind::Sem => libc::SYS_semctl,
            Kind::Msg => libc::SYS_msgctl,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Shm => "shm",
            Kind::Sem => "sem",
            Kind::Msg => "msg",
        }
    }

    /// The ctl call with a pointer argument (semctl's goes as its union).
    fn call(self, id: i64, cmd: i64, arg: *mut u8) -> i64 {
        // SAFETY: `arg` points to a buffer at least as large as the
        // structure `cmd` reads or writes (the callers pass the kernel's
        // 64-bit layouts, or 256 zeroed bytes for the *_INFO calls).
        unsafe {
            match self {
                Kind::Sem => libc::syscall(self.ctl(), id, 0, cmd, arg),
                _ => libc::syscall(self.ctl(), id, cmd, arg),
            }
        }
    }

    /// The highest index in use (the *_INFO call), -1 when none is.
    fn max_index(self) -> io::Result<i64> {
        let cmd = match self {
            Kind::Shm => SHM_INFO,
            Kind::Sem => SEM_INFO,
            Kind::Msg => MSG_INFO,
        };
        let mut buf = [0u8; 256];
        let r = self.call(0, cmd, buf.as_mut_ptr());
        if r < 0 {
            return Err(err::last(format!("{}ctl(INFO)", self.name())));
        }
        Ok(r)
    }

    /// Sets owner and mode of object `id` (IPC_SET).
    pub fn set_perm(self, id: i32, p: &Perm) -> io::Result<()> {
        let perm = Perm64 {
            uid: p.uid,
            gid: p.gid,
            mode: p.mode,
            ..Default::default()
        };
        let r = match self {
            Kind::Shm => {
                let mut ds = ShmidDs {
                    perm,
                    ..Default::default()
                };
                self.call(id as i64, IPC_SET, (&mut ds as *mut ShmidDs).cast())
            }
            Kind::Sem => {
                let mut ds = SemidDs {
                    perm,
                    ..Default::default()
                };
                self.call(id as i64, IPC_SET, (&mut ds as *mut SemidDs).cast())
            }
            Kind::Msg => {
                let mut ds = MsqidDs {
                    perm,
                    ..Default::default()
                };
                // Keep the queue's byte limit (IPC_SET sets it too).
                let mut cur = MsqidDs::default();
                if self.call(
                    id as i64,
                    libc::IPC_STAT as i64,
                    (&mut cur as *mut MsqidDs).cast(),
                ) == 0
                {
                    ds.qbytes = cur.qbytes;
                }
                self.call(id as i64, IPC_SET, (&mut ds as *mut MsqidDs).cast())
            }
        };
        if r < 0 {
            return Err(err::last(format!("{}ctl({id}, IPC_SET)", self.name())));
        }
        Ok(())
    }

    /// Removes object `id`.
    pub fn remove(self, id: i32) -> io::Result<()> {
        if self.call(id as i64, IPC_RMID, std::ptr::null_mut()) < 0 {
            return Err(err::last(format!("{}ctl({id}, IPC_RMID)", self.name())));
        }
        Ok(())
    }
}

/// A shared memory segment.
#[derive(Debug, Clone, Copy)]
pub struct Shm {
    pub id: i32,
    pub perm: Perm,
    pub size: u64,
}

/// A semaphore set.
#[derive(Debug, Clone, Copy)]
pub struct Sem {
    pub id: i32,
    pub perm: Perm,
    pub nsems: u32,
}

/// A message queue.
#[derive(Debug, Clone, Copy)]
pub struct Msg {
    pub id: i32,
    pub perm: Perm,
    pub qbytes: u64,
    pub qnum: u64,
}

/// Every segment of the namespace, by index (SHM_STAT).
pub fn shm_list() -> io::Result<Vec<Shm>> {
    let mut out = Vec::new();
    for i in 0..=Kind::Shm.max_index()? {
        let mut ds = ShmidDs::default();
        let id = Kind::Shm.call(i, SHM_STAT, (&mut ds as *mut ShmidDs).cast());
        if id >= 0 {
            out.push(Shm {
                id: id as i32,
                perm: ds.perm.into(),
                size: ds.segsz,
            });
        }
    }
    Ok(out)
}

/// Every semaphore set of the namespace (SEM_STAT).
pub fn sem_list() -> io::Result<Vec<Sem>> {
    let mut out = Vec::new();
    for i in 0..=Kind::Sem.max_index()? {
        let mut ds = SemidDs::default();
        let id = Kind::Sem.call(i, SEM_STAT, (&mut ds as *mut SemidDs).cast());
        if id >= 0 {
            out.push(Sem {
                id: id as i32,
                perm: ds.perm.into(),
                nsems: ds.nsems as u32,
            });
        }
    }
    Ok(out)
}

/// Every message queue of the namespace (MSG_STAT).
pub fn msg_list() -> io::Result<Vec<Msg>> {
    let mut out = Vec::new();
    for i in 0..=Kind::Msg.max_index()? {
        let mut ds = MsqidDs::default();
        let id = Kind::Msg.call(i, MSG_STAT, (&mut ds as *mut MsqidDs).cast());
        if id >= 0 {
            out.push(Msg {
                id: id as i32,
                perm: ds.perm.into(),
                qbytes: ds.qbytes,
                qnum: ds.qnum,
            });
        }
    }
    Ok(out)
}

/// A segment attached to crit's address space; detached on drop.
pub struct Attached {
    addr: *mut u8,
    len: usize,
}

impl Attached {
    /// Attaches segment `id` of `len` bytes (read-only unless `write`).
    pub fn new(id: i32, len: usize, write: bool) -> io::Result<Attached> {
        let flags = if write { 0 } else { SHM_RDONLY };
        // SAFETY: shmat picks a free address; nothing in crit's memory is
        // touched. The mapping is only used through this struct.
        let a = unsafe { libc::syscall(libc::SYS_shmat, id, 0usize, flags) };
        if a == -1 {
            return Err(err::last(format!("shmat({id})")));
        }
        Ok(Attached {
            addr: a as *mut u8,
            len,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the segment is mapped at `addr` for at least `len`
        // bytes (its size) until drop.
        unsafe { std::slice::from_raw_parts(self.addr, self.len) }
    }

    /// The segment's bytes for writing (attached with `write`).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in bytes(); `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.addr, self.len) }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // SAFETY: `addr` is the address shmat returned; nothing refers to
        // the mapping after this.
        unsafe { libc::syscall(libc::SYS_shmdt, self.addr) };
    }
}

/// The values of the `n` semaphores of set `id`.
pub fn sem_values(id: i32, n: u32) -> io::Result<Vec<u16>> {
    let mut v = vec![0u16; n as usize];
    if n > 0 && Kind::Sem.call(id as i64, GETALL, v.as_mut_ptr().cast()) < 0 {
        return Err(err::last(format!("semctl({id}, GETALL)")));
    }
    Ok(v)
}

/// Sets every semaphore of set `id`.
pub fn set_sem_values(id: i32, vals: &[u16]) -> io::Result<()> {
    let mut v = vals.to_vec();
    if !v.is_empty() && Kind::Sem.call(id as i64, SETALL, v.as_mut_ptr().cast()) < 0 {
        return Err(err::last(format!("semctl({id}, SETALL)")));
    }
    Ok(())
}

/// A copy of message `index` of queue `id`, left in the queue
/// (MSG_COPY): its type and text. `max` bounds the text.
pub fn msg_copy(id: i32, index: u64, max: usize) -> io::Result<(i64, Vec<u8>)> {
    let mut buf = vec![0u8; 8 + max];
    // SAFETY: `buf` holds the type word and `max` bytes of text, as the
    // size argument tells the kernel.
    let n = unsafe {
        libc::syscall(
            libc::SYS_msgrcv,
            id,
            buf.as_mut_ptr(),
            max,
            index,
            IPC_NOWAIT | MSG_COPY,
        )
    };
    if n < 0 {
        return Err(err::last(format!("msgrcv({id}, MSG_COPY {index})")));
    }
    let mtype = i64::from_ne_bytes(buf[..8].try_into().unwrap_or([0; 8]));
    Ok((mtype, buf[8..8 + n as usize].to_vec()))
}

/// Queues a message of type `mtype` on queue `id`.
pub fn msg_send(id: i32, mtype: i64, text: &[u8]) -> io::Result<()> {
    let mut buf = mtype.to_ne_bytes().to_vec();
    buf.extend_from_slice(text);
    // SAFETY: `buf` is the type word followed by `text.len()` bytes.
    let r = unsafe { libc::syscall(libc::SYS_msgsnd, id, buf.as_ptr(), text.len(), IPC_NOWAIT) };
    if r < 0 {
        return Err(err::last(format!("msgsnd({id})")));
    }
    Ok(())
}

/// Makes a new object of `kind` with `key` (0 for IPC_PRIVATE) and `mode`;
/// `size` is the segment's bytes or the set's semaphores. Returns its id.
pub fn create(kind: Kind, key: i32, size: u64, mode: u32) -> io::Result<i32> {
    let flags = IPC_CREAT | IPC_EXCL | (mode & 0o777) as i64;
    // SAFETY: plain value arguments; nothing in crit's memory is passed.
    let r = unsafe {
        match kind {
            Kind::Shm => libc::syscall(libc::SYS_shmget, key, size, flags),
            Kind::Sem => libc::syscall(libc::SYS_semget, key, size, flags),
            Kind::Msg => libc::syscall(libc::SYS_msgget, key, flags),
        }
    };
    if r < 0 {
        return Err(err::last(format!("{}get(key {key:#x})", kind.name())));
    }
    Ok(r as i32)
}
