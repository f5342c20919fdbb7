//! The ipc namespace again: its limits (ipcns-var), then every System V
//! segment, semaphore set and message queue with its id, key, owner,
//! mode and contents. Ids come back by setting the namespace's next-id
//! sysctl before each object is made, as CRIU does. Runs on the thread
//! that made the namespace.

use super::error::NsError;
use crate::error::Result;
use crate::image::entry::{EntryReader, Payload};
use crate::image::pb;
use crate::image::typed::{read_all, Mapped};
use crate::sys::ipc;
use std::path::Path;

/// A queue with its messages (type, text).
pub type Queue = (pb::IpcMsgEntry, Vec<(u64, Vec<u8>)>);

/// The images of one ipc namespace.
#[derive(Default)]
pub struct IpcImages {
    pub var: Option<pb::IpcVarEntry>,
    pub shm: Vec<pb::IpcShmEntry>,
    pub sem: Vec<(pb::IpcSemEntry, Vec<u16>)>,
    pub msg: Vec<Queue>,
}

fn bad(image: &str, why: impl Into<String>) -> crate::error::Error {
    NsError::Image {
        image: image.to_string(),
        why: why.into(),
    }
    .into()
}

/// Reads ipcns-var/shm/sem/msg-`id`.img (missing ones are empty).
pub fn read(dir: &Path, id: u32) -> Result<IpcImages> {
    let mut out = IpcImages::default();
    let var = dir.join(format!("ipcns-var-{id}.img"));
    if var.exists() {
        out.var = read_all::<pb::IpcVarEntry>(&var, "IPC_VAR")?
            .into_iter()
            .next();
    }
    let shm = dir.join(format!("ipcns-shm-{id}.img"));
    if shm.exists() {
        out.shm = read_all(&shm, "IPCNS_SHM")?;
    }
    let sem = format!("ipcns-sem-{id}.img");
    if dir.join(&sem).exists() {
        let f = Mapped::open(&dir.join(&sem))?;
        let mut src = f.source();
        let mut rd = EntryReader::expect(&mut src, "IPCNS_SEM")?;
        while let Some(e) = rd.next_entry()? {
            let s: pb::IpcSemEntry = e.decode()?;
            let Payload::Sem(vals) = e.payload else {
                return Err(bad(&sem, "a semaphore set without values"));
            };
            let vals = vals
                .chunks_exact(2)
                .map(|c| u16::from_ne_bytes([c[0], c[1]]))
                .collect();
            out.sem.push((s, vals));
        }
    }
    let msg = format!("ipcns-msg-{id}.img");
    if dir.join(&msg).exists() {
        let f = Mapped::open(&dir.join(&msg))?;
        let mut src = f.source();
        let mut rd = EntryReader::expect(&mut src, "IPCNS_MSG")?;
        while let Some(e) = rd.next_entry()? {
            let q: pb::IpcMsgEntry = e.decode()?;
            let Payload::Msgs(list) = e.payload else {
                return Err(bad(&msg, "a queue without its messages"));
            };
            let mut msgs = Vec::new();
            for m in list {
                let h = <pb::IpcMsg as prost::Message>::decode(m.header)
                    .map_err(|e| bad(&msg, format!("message header: {e}")))?;
                msgs.push((h.mtype, m.body.to_vec()));
            }
            out.msg.push((q, msgs));
        }
    }
    Ok(out)
}

/// A failed call on System V object `kind` `id`, as an error naming it.
fn call(
    what: &'static str,
    kind: &'static str,
    id: impl Into<i64>,
) -> impl FnOnce(std::io::Error) -> crate::error::Error {
    let id = id.into();
    move |source| {
        NsError::IpcCall {
            what,
            kind,
            id,
            source,
        }
        .into()
    }
}

/// Writes /proc/sys/`name` (the calling thread's ipc namespace).
fn sysctl(name: &str, value: &str) -> Result<()> {
    std::fs::write(format!("/proc/sys/{name}"), value).map_err(|source| {
        NsError::Sysctl {
            name: name.to_string(),
            value: value.to_string(),
            source,
        }
        .into()
    })
}

/// The limits of ipcns-var, in CRIU's order (next ids are set per object).
fn set_var(v: &pb::IpcVarEntry) -> Result<()> {
    let sem: Vec<String> = v.sem_ctls.iter().map(|x| x.to_string()).collect();
    if !sem.is_empty() {
        sysctl("kernel/sem", &sem.join(" "))?;
    }
    sysctl("kernel/msgmax", &v.msg_ctlmax.to_string())?;
    sysctl("kernel/msgmnb", &v.msg_ctlmnb.to_string())?;
    sysctl("kernel/msgmni", &v.msg_ctlmni.to_string())?;
    sysctl("kernel/shmmax", &v.shm_ctlmax.to_string())?;
    sysctl("kernel/shmall", &v.shm_ctlall.to_string())?;
    sysctl("kernel/shmmni", &v.shm_ctlmni.to_string())?;
    sysctl("kernel/shm_rmid_forced", &v.shm_rmid_forced.to_string())?;
    if Path::new("/proc/sys/fs/mqueue").exists() {
        sysctl("fs/mqueue/queues_max", &v.mq_queues_max.to_string())?;
        sysctl("fs/mqueue/msg_max", &v.mq_msg_max.to_string())?;
        sysctl("fs/mqueue/msgsize_max", &v.mq_msgsize_max.to_string())?;
        if let (Some(a), Some(b)) = (v.mq_msg_default, v.mq_msgsize_default) {
            sysctl("fs/mqueue/msg_default", &a.to_string())?;
            sysctl("fs/mqueue/msgsize_default", &b.to_string())?;
        }
    }
    Ok(())
}

/// Makes object `kind` with the dumped id: next id set, made, checked.
fn make(kind: ipc::Kind, d: &pb::IpcDescEntry, size: u64) -> Result<i32> {
    let (next, name) = match kind {
        ipc::Kind::Shm => ("kernel/shm_next_id", "shm"),
        ipc::Kind::Sem => ("kernel/sem_next_id", "sem"),
        ipc::Kind::Msg => ("kernel/msg_next_id", "msg"),
    };
    sysctl(next, &d.id.to_string())?;
    let got = ipc::create(kind, d.key as i32, size, d.mode).map_err(call("making", name, d.id))?;
    if got as u32 != d.id {
        let _ = kind.remove(got);
        return Err(NsError::IpcId {
            kind: name,
            id: d.id,
            got,
        }
        .into());
    }
    let perm = ipc::Perm {
        key: d.key as i32,
        uid: d.uid,
        gid: d.gid,
        cuid: d.cuid,
        cgid: d.cgid,
        mode: d.mode,
    };
    kind.set_perm(got, &perm)
        .map_err(call("owner of", name, d.id))?;
    Ok(got)
}

/// Makes the namespace's objects again (the calling thread is in it).
/// `shm_pages(shmid, segment)` fills a segment from its pages images.
pub fn restore(imgs: &IpcImages, shm_pages: &dyn Fn(u32, &mut [u8]) -> Result<()>) -> Result<()> {
    if let Some(v) = &imgs.var {
        set_var(v)?;
    }
    for s in &imgs.shm {
        let id = make(ipc::Kind::Shm, &s.desc, s.size)?;
        if s.in_pagemaps != Some(true) {
            return Err(bad(
                "ipcns-shm",
                format!(
                    "segment {}: contents not in pagemaps (old image format)",
                    s.desc.id
                ),
            ));
        }
        let mut a =
            ipc::Attached::new(id, s.size as usize, true).map_err(call("attaching", "shm", id))?;
        shm_pages(s.desc.id, a.bytes_mut())?;
    }
    for (s, vals) in &imgs.sem {
        let id = make(ipc::Kind::Sem, &s.desc, u64::from(s.nsems))?;
        let n = (s.nsems as usize).min(vals.len());
        ipc::set_sem_values(id, &vals[..n]).map_err(call("values of", "sem", id))?;
    }
    for (q, msgs) in &imgs.msg {
        let id = make(ipc::Kind::Msg, &q.desc, 0)?;
        for (mtype, text) in msgs {
            ipc::msg_send(id, *mtype as i64, text).map_err(call(
                "queueing a message on",
                "msg",
                id,
            ))?;
        }
    }
    // Each make() used up its next id (the kernel sets it back to -1,
    // which cannot be written): only a pending one comes back.
    if let Some(v) = &imgs.var {
        for (name, next) in [
            ("kernel/msg_next_id", v.msg_next_id),
            ("kernel/sem_next_id", v.sem_next_id),
            ("kernel/shm_next_id", v.shm_next_id),
        ] {
            if let Some(n) = next.filter(|&n| (n as i32) >= 0) {
                sysctl(name, &n.to_string())?;
            }
        }
    }
    Ok(())
}

/// For an ipc namespace the tree joins (`--join-ns`), which crit leaves
/// as it is: every object of the images must be there with its id, key,
/// and a segment's size or a set's number of semaphores (the namespace
/// outlived the tree, as a pod's does), else the tree would miss it or
/// fault past its end. The calling thread is in the namespace.
pub fn check_present(imgs: &IpcImages) -> Result<()> {
    let missing = |kind: &'static str, d: &pb::IpcDescEntry, what: String| -> crate::error::Error {
        NsError::JoinedIpcMissing {
            kind,
            id: d.id,
            key: d.key,
            what,
        }
        .into()
    };
    let same = |id: i32, perm: &ipc::Perm, d: &pb::IpcDescEntry| {
        id as u32 == d.id && perm.key == d.key as i32
    };
    let list = |what| move |e| -> crate::error::Error { call("listing", what, 0)(e) };
    let shm = ipc::shm_list().map_err(list("shm"))?;
    for s in &imgs.shm {
        let what = format!("of {} bytes", s.size);
        match shm.iter().find(|o| same(o.id, &o.perm, &s.desc)) {
            Some(o) if o.size == s.size => {}
            _ => return Err(missing("shm", &s.desc, what)),
        }
    }
    let sem = ipc::sem_list().map_err(list("sem"))?;
    for (s, _) in &imgs.sem {
        let what = format!("of {} semaphores", s.nsems);
        match sem.iter().find(|o| same(o.id, &o.perm, &s.desc)) {
            Some(o) if o.nsems == s.nsems => {}
            _ => return Err(missing("sem", &s.desc, what)),
        }
    }
    let msg = ipc::msg_list().map_err(list("msg"))?;
    for (q, _) in &imgs.msg {
        if !msg.iter().any(|o| same(o.id, &o.perm, &q.desc)) {
            return Err(missing("msg", &q.desc, "queue".into()));
        }
    }
    Ok(())
}
