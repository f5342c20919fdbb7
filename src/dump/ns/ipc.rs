//! The tree's ipc namespace: its limits (ipcns-var), and its System V
//! shared memory segments, semaphore sets and message queues with their
//! contents (ipcns-shm/sem/msg; segment contents go to
//! pagemap-shmem-SHMID.img as CRIU 4.2 writes them). Read on a thread
//! that entered the namespace.

use crate::dump::error::DumpError;
use crate::error::Result;
use crate::image::pb;
use crate::sys::ipc;

/// A queue with its messages (header, text).
pub type Queue = (pb::IpcMsgEntry, Vec<(pb::IpcMsg, Vec<u8>)>);

/// Everything of one ipc namespace.
pub struct IpcNs {
    pub var: pb::IpcVarEntry,
    /// Each segment with its contents.
    pub shm: Vec<(pb::IpcShmEntry, Vec<u8>)>,
    /// Each set with its values.
    pub sem: Vec<(pb::IpcSemEntry, Vec<u16>)>,
    /// Each queue with its messages (header, text).
    pub msg: Vec<Queue>,
}

/// The sysctls of ipcns-var, in CRIU's order: (file under /proc/sys,
/// required).
const VARS: [&str; 17] = [
    "kernel/sem",
    "kernel/msgmax",
    "kernel/msgmnb",
    "kernel/auto_msgmni",
    "kernel/msgmni",
    "kernel/shmmax",
    "kernel/shmall",
    "kernel/shmmni",
    "kernel/shm_rmid_forced",
    "fs/mqueue/queues_max",
    "fs/mqueue/msg_max",
    "fs/mqueue/msgsize_max",
    "fs/mqueue/msg_default",
    "fs/mqueue/msgsize_default",
    "kernel/msg_next_id",
    "kernel/sem_next_id",
    "kernel/shm_next_id",
];

/// Reads the namespace the calling thread is in.
pub fn read() -> Result<IpcNs> {
    Ok(IpcNs {
        var: var()?,
        shm: shm()?,
        sem: sem()?,
        msg: msg()?,
    })
}

/// The numbers of /proc/sys/`name` (None when the file does not exist,
/// as auto_msgmni on newer kernels).
fn sysctl(name: &str) -> Result<Option<Vec<u64>>> {
    let path = format!("/proc/sys/{name}");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DumpError::File {
                path: path.into(),
                source,
            }
            .into())
        }
    };
    // The next-id files hold -1 when unset.
    text.split_whitespace()
        .map(|w| {
            w.parse::<u64>()
                .or_else(|_| w.parse::<i64>().map(|v| v as u64))
        })
        .collect::<std::result::Result<Vec<u64>, _>>()
        .map(Some)
        .map_err(|_| {
            DumpError::SysctlValue {
                name: name.to_string(),
                value: text.trim().to_string(),
            }
            .into()
        })
}

fn var() -> Result<pb::IpcVarEntry> {
    let mut v: Vec<Option<Vec<u64>>> = Vec::new();
    for name in VARS {
        v.push(sysctl(name)?);
    }
    let one = |i: usize| v[i].as_ref().and_then(|x| x.first().copied());
    let u32_of = |i: usize| one(i).unwrap_or(0) as u32;
    // A next id of -1 is "not set": left out, as CRIU does.
    let next = |i: usize| one(i).filter(|&x| x as u32 != u32::MAX).map(|x| x as u32);
    Ok(pb::IpcVarEntry {
        sem_ctls: v[0]
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|x| x as u32)
            .collect(),
        msg_ctlmax: u32_of(1),
        msg_ctlmnb: u32_of(2),
        auto_msgmni: u32_of(3),
        msg_ctlmni: u32_of(4),
        shm_ctlmax: one(5).unwrap_or(0),
        shm_ctlall: one(6).unwrap_or(0),
        shm_ctlmni: u32_of(7),
        shm_rmid_forced: u32_of(8),
        mq_queues_max: u32_of(9),
        mq_msg_max: u32_of(10),
        mq_msgsize_max: u32_of(11),
        mq_msg_default: one(12).map(|x| x as u32),
        mq_msgsize_default: one(13).map(|x| x as u32),
        msg_next_id: next(14),
        sem_next_id: next(15),
        shm_next_id: next(16),
    })
}

fn desc(id: i32, p: &ipc::Perm) -> pb::IpcDescEntry {
    pb::IpcDescEntry {
        key: p.key as u32,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: p.mode,
        id: id as u32,
    }
}

fn call(what: &'static str) -> impl Fn(std::io::Error) -> crate::error::Error {
    move |source| DumpError::Call { what, source }.into()
}

fn shm() -> Result<Vec<(pb::IpcShmEntry, Vec<u8>)>> {
    let mut out = Vec::new();
    for s in ipc::shm_list().map_err(call("listing System V shared memory"))? {
        let a = ipc::Attached::new(s.id, s.size as usize, false)
            .map_err(call("attaching System V shared memory"))?;
        let e = pb::IpcShmEntry {
            desc: desc(s.id, &s.perm),
            size: s.size,
            in_pagemaps: Some(true),
            hugetlb_flag: None,
        };
        out.push((e, a.bytes().to_vec()));
    }
    Ok(out)
}

fn sem() -> Result<Vec<(pb::IpcSemEntry, Vec<u16>)>> {
    let mut out = Vec::new();
    for s in ipc::sem_list().map_err(call("listing System V semaphores"))? {
        let vals = ipc::sem_values(s.id, s.nsems).map_err(call("reading System V semaphores"))?;
        let e = pb::IpcSemEntry {
            desc: desc(s.id, &s.perm),
            nsems: s.nsems,
        };
        out.push((e, vals));
    }
    Ok(out)
}

fn msg() -> Result<Vec<Queue>> {
    let max = sysctl("kernel/msgmax")?
        .and_then(|v| v.first().copied())
        .unwrap_or(8192) as usize;
    let mut out = Vec::new();
    for q in ipc::msg_list().map_err(call("listing System V message queues"))? {
        let mut msgs = Vec::new();
        for i in 0..q.qnum {
            let (mtype, text) =
                ipc::msg_copy(q.id, i, max).map_err(call("copying a System V message"))?;
            let h = pb::IpcMsg {
                mtype: mtype as u64,
                msize: text.len() as u32,
            };
            msgs.push((h, text));
        }
        let e = pb::IpcMsgEntry {
            desc: desc(q.id, &q.perm),
            qbytes: q.qbytes as u32,
            qnum: q.qnum as u32,
        };
        out.push((e, msgs));
    }
    Ok(out)
}

/// Pads `b` with zeros to a multiple of `align`.
fn padded(mut b: Vec<u8>, align: usize) -> Vec<u8> {
    b.resize(b.len().div_ceil(align) * align, 0);
    b
}

/// The images of namespace `id`: ipcns-var, and ipcns-shm/sem/msg when
/// the namespace has such objects. Segment contents are written by the
/// caller (as shared memory pages).
pub fn images(id: u32, ns: &IpcNs) -> Result<Vec<(String, crate::image::typed::ImageBuilder)>> {
    use crate::image::typed::ImageBuilder;
    let mut out = Vec::new();
    let mut b = ImageBuilder::new("IPC_VAR")?;
    b.entry(&ns.var);
    out.push((format!("ipcns-var-{id}.img"), b));
    if !ns.shm.is_empty() {
        let mut b = ImageBuilder::new("IPCNS_SHM")?;
        for (e, _) in &ns.shm {
            b.entry(e);
        }
        out.push((format!("ipcns-shm-{id}.img"), b));
    }
    if !ns.sem.is_empty() {
        let mut b = ImageBuilder::new("IPCNS_SEM")?;
        for (e, vals) in &ns.sem {
            b.entry(e);
            let raw: Vec<u8> = vals.iter().flat_map(|v| v.to_ne_bytes()).collect();
            b.raw(&padded(raw, 8));
        }
        out.push((format!("ipcns-sem-{id}.img"), b));
    }
    if !ns.msg.is_empty() {
        let mut b = ImageBuilder::new("IPCNS_MSG")?;
        for (e, msgs) in &ns.msg {
            b.entry(e);
            for (h, text) in msgs {
                b.entry(h);
                b.raw(&padded(text.clone(), 8));
            }
        }
        out.push((format!("ipcns-msg-{id}.img"), b));
    }
    Ok(out)
}
