//! `crit x DIR mems`: each process's memory mappings.
//!
//! Text (crit 4.2, byte for byte): for every `pstree.img` entry, its pid,
//! the executable (`"\t%-36s    %s"`), then one line per vma of
//! `mm-PID.img` (`"\t%-36s%s%s"`: `%08lx-%08lx` range, `rwx` protection,
//! what is mapped):
//!
//! ```text
//! 26773
//! <TAB>exe                                     /tmp/scen/bin/kitchen
//! <TAB>564896bcf000-564896bd1000           r-x /tmp/scen/bin/kitchen + 0x2000
//! <TAB>7f9d114c7000-7f9d114d7000           rw- unknown path (s)
//! <TAB>ffffffffff600000-ffffffffff601000   --x [vsyscall] *
//! ```
//!
//! What is mapped, by the first matching `status` bit: SysV IPC
//! ` ips[N]`, shared anonymous ` shmem[N]`, packet socket ` packet[N]`
//! (N: hex, numbering the distinct `shmid`s from 1 across all processes),
//! a file ` PATH` (plus ` + 0xPGOFF` when the offset is not 0 and ` (s)`
//! when shared), ` [stack]`, ` [vsyscall]`, ` [vdso]`, then ` [stack?]` for
//! a grows-down vma, else nothing; ` *` is appended when the vma is not a
//! regular area.
//!
//! JSON: an array with one object per process,
//! `{"pid": N, "exe": "…", "vmas": [VMA, …]}`, each VMA
//! `{"start": "0x…", "end": "0x…", "prot": "r-x", "kind": K, …,
//! "regular": BOOL}` where K is `sysvipc`, `shmem` or `packet` (with
//! `"id": N`, the number of the text view), `file` (with `"file": "…",
//! "pgoff": N, "shared": BOOL`), `stack`, `vsyscall`, `vdso`, `growsdown` or
//! `anon`.

use super::files::Files;
use super::tasks::pstree;
use super::Out;
use crate::error::Result;
use crate::image::pb;
use crate::image::store::Images;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

use crate::image::flags::{
    VMA_ANON_SHARED, VMA_AREA_REGULAR, VMA_AREA_SOCKET, VMA_AREA_STACK, VMA_AREA_SYSVIPC,
    VMA_AREA_VDSO, VMA_AREA_VSYSCALL, VMA_FILE_PRIVATE, VMA_FILE_SHARED,
};

/// A grows-down mapping (`vma_entry.flags`).
const MAP_GROWSDOWN: u32 = 0x0100;

/// Small numbers for `shmid`s, in order of first use (crit's `vma_id`).
#[derive(Default)]
pub(crate) struct VmaIds {
    ids: HashMap<u64, u64>,
}

impl VmaIds {
    fn get(&mut self, shmid: u64) -> u64 {
        let next = self.ids.len() as u64 + 1;
        *self.ids.entry(shmid).or_insert(next)
    }
}

pub(crate) enum Kind {
    Numbered(&'static str, &'static str, u64),
    File {
        path: String,
        pgoff: u64,
        shared: bool,
    },
    Plain(&'static str, &'static str),
}

pub fn run(dir: &Images, json: bool, out: &mut Out) -> Result<()> {
    let mut files = Files::new(dir);
    let mut vids = VmaIds::default();
    let mut list = Vec::new();
    for p in pstree(dir)? {
        let pid = p.pid;
        let mm = dir.read_one::<pb::MmEntry>(&format!("mm-{pid}.img"), "MM")?;
        let exe = files.reg(u64::from(mm.exe_file_id))?;
        if !json {
            out.put(format_args!("{pid}\n"))?;
            out.put(format_args!("\t{:<36}    {}\n", "exe", exe))?;
        }
        let mut jvmas = Vec::new();
        for vma in &mm.vmas {
            let kind = kind_of(vma, &mut files, &mut vids)?;
            let regular = vma.status & VMA_AREA_REGULAR != 0;
            let prot = prot_text(vma.prot);
            if json {
                jvmas.push(vma_json(vma, prot, kind, regular));
                continue;
            }
            let mut what = vma_text(kind);
            if !regular {
                what.push_str(" *");
            }
            let range = format!("{:08x}-{:08x}", vma.start, vma.end);
            out.put(format_args!("\t{range:<36}{prot}{what}\n"))?;
        }
        if json {
            list.push(json!({"pid": pid, "exe": exe, "vmas": jvmas}));
        }
    }
    if json {
        out.json(&Value::Array(list))?;
    }
    Ok(())
}

/// `rwx`, with `-` for each bit not set.
pub(crate) fn prot_text(prot: u32) -> String {
    [(1, 'r'), (2, 'w'), (4, 'x')]
        .iter()
        .map(|&(bit, c)| if prot & bit != 0 { c } else { '-' })
        .collect()
}

/// What a mapping maps, as crit 4.2 tells them apart.
pub(crate) fn kind_of(vma: &pb::VmaEntry, files: &mut Files, vids: &mut VmaIds) -> Result<Kind> {
    let st = vma.status;
    Ok(if st & VMA_AREA_SYSVIPC != 0 {
        Kind::Numbered("ips", "sysvipc", vids.get(vma.shmid))
    } else if st & VMA_ANON_SHARED != 0 {
        Kind::Numbered("shmem", "shmem", vids.get(vma.shmid))
    } else if st & VMA_AREA_SOCKET != 0 {
        Kind::Numbered("packet", "packet", vids.get(vma.shmid))
    } else if st & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
        Kind::File {
            path: files.reg(vma.shmid)?,
            pgoff: vma.pgoff,
            shared: st & VMA_FILE_SHARED != 0,
        }
    } else if st & VMA_AREA_STACK != 0 {
        Kind::Plain(" [stack]", "stack")
    } else if st & VMA_AREA_VSYSCALL != 0 {
        Kind::Plain(" [vsyscall]", "vsyscall")
    } else if st & VMA_AREA_VDSO != 0 {
        Kind::Plain(" [vdso]", "vdso")
    } else if vma.flags & MAP_GROWSDOWN != 0 {
        Kind::Plain(" [stack?]", "growsdown")
    } else {
        Kind::Plain("", "anon")
    })
}

pub(crate) fn vma_json(vma: &pb::VmaEntry, prot: String, kind: Kind, regular: bool) -> Value {
    let mut o = Map::new();
    o.insert("start".into(), format!("{:#x}", vma.start).into());
    o.insert("end".into(), format!("{:#x}", vma.end).into());
    o.insert("prot".into(), prot.into());
    match kind {
        Kind::Numbered(_, name, id) => {
            o.insert("kind".into(), name.into());
            o.insert("id".into(), id.into());
        }
        Kind::File {
            path,
            pgoff,
            shared,
        } => {
            o.insert("kind".into(), "file".into());
            o.insert("file".into(), path.into());
            o.insert("pgoff".into(), pgoff.into());
            o.insert("shared".into(), shared.into());
        }
        Kind::Plain(_, name) => {
            o.insert("kind".into(), name.into());
        }
    }
    o.insert("regular".into(), regular.into());
    Value::Object(o)
}

/// The text after a mapping's protection, as crit 4.2 prints it.
pub(crate) fn vma_text(kind: Kind) -> String {
    match kind {
        Kind::Numbered(text, _, id) => format!(" {text}[{id:x}]"),
        Kind::File {
            path,
            pgoff,
            shared,
        } => {
            let mut s = format!(" {path}");
            if pgoff != 0 {
                s.push_str(&format!(" + {pgoff:#x}"));
            }
            if shared {
                s.push_str(" (s)");
            }
            s
        }
        Kind::Plain(text, _) => text.to_string(),
    }
}
