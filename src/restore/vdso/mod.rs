//! A restored task's vDSO. Where the dumped one is this kernel's (same
//! size, same vvar, functions at the same offsets), this kernel's is moved
//! to its address ([`super::memory::move_special`]). Otherwise a proxy
//! ([`proxy`]): this kernel's vvar and vDSO go to a hole free in the
//! dumped layout, and the dumped vDSO comes back at its old address from
//! the images, each exported function patched to jump to this kernel's.
//! The dumped vvar's address is only kept taken (PROT_NONE, no pages):
//! only the old vDSO's code read it, and its entries now jump away. Needs
//! the dumped vDSO's pages (crit and CRIU dump them); without them only
//! the remap is possible.
//!
//! A proxy leaves CRIU's mark in this kernel's vDSO
//! ([`crate::model::vdso_mark`]), so that the next dump (crit's or CRIU's)
//! stores the proxy as the task's vDSO and not this kernel's.
//!
//! `--force-vdso-proxy` makes the proxy even for this kernel's own vDSO,
//! which tests the other-kernel path on one machine.

pub mod proxy;
pub mod symtab;

use super::error::TaskError;
use super::memory::{self, Special};
use super::plan::Task;
use super::remote::{call, Tracee};
use crate::error::Result;
use crate::image::flags::{VMA_AREA_VDSO, VMA_AREA_VVAR};
use proxy::{Decision, Shape};
use symtab::SymTable;

/// This kernel's vDSO, as crit (and so every task it forks) has it.
pub struct Here {
    table: SymTable,
    force: bool,
}

impl Here {
    /// Reads crit's own vDSO; `force`: always proxy.
    pub fn read(force: bool) -> Result<Here> {
        let own = crate::sys::procfs::own_vdso().map_err(|source| TaskError::Proc {
            pid: std::process::id(),
            name: "mem ([vdso])",
            source,
        })?;
        let table = match own {
            Some((start, img)) => SymTable::parse(&img).map_err(|why| TaskError::VdsoImage {
                whose: format!("this kernel's (at {start:#x})"),
                why,
            })?,
            None => SymTable::default(),
        };
        Ok(Here { table, force })
    }
}

/// Puts the kernel's special mappings of task `t` in place (see the
/// module docs). `dumped`: the dumped vDSO's pages, if the images hold
/// them; `keep`: crit's area in the task, to stay clear of.
pub fn place(
    t: &mut dyn Tracee,
    task: &Task,
    sp: &Special,
    here: &Here,
    dumped: Option<Vec<u8>>,
    keep: (u64, u64),
    log: &super::Log,
) -> Result<()> {
    let pid = task.pid;
    let find = |bit| task.mm.vmas.iter().find(|v| v.status & bit != 0);
    let (Some(iv), Some(cur)) = (find(VMA_AREA_VDSO), sp.vdso) else {
        return memory::move_special(t, task, sp, keep.0, keep.1);
    };
    let dumped_shape = Shape {
        vdso_len: iv.end - iv.start,
        vvar: find(VMA_AREA_VVAR).map(|v| (v.end - v.start, iv.start as i64 - v.start as i64)),
    };
    let here_shape = Shape {
        vdso_len: cur.1 - cur.0,
        vvar: sp.vvar.map(|(s, e)| {
            let len = e - s + sp.vclock.map_or(0, |(a, b)| b - a);
            (len, cur.0 as i64 - s as i64)
        }),
    };
    let parsed = dumped
        .filter(|img| img.len() as u64 == dumped_shape.vdso_len)
        .map(|img| SymTable::parse(&img).map(|tab| (img, tab)));
    let (mut img, table) = match parsed {
        Some(Ok(p)) => p,
        // Nothing to build a proxy from: this kernel's vDSO it is.
        None if !here.force => return memory::move_special(t, task, sp, keep.0, keep.1),
        None => {
            return Err(TaskError::VdsoNoPages {
                pid,
                start: iv.start,
            }
            .into())
        }
        Some(Err(why)) => {
            return Err(TaskError::VdsoImage {
                whose: format!("pid {pid}'s dumped one (at {:#x})", iv.start),
                why,
            }
            .into())
        }
    };
    let why = match proxy::decide(&table, dumped_shape, &here.table, here_shape, here.force) {
        Decision::Remap => return memory::move_special(t, task, sp, keep.0, keep.1),
        Decision::Proxy(why) => why,
    };
    let (base, vvar) = clear_of_dump(t, task, sp, keep)?;
    let patches = proxy::patches(&table, dumped_shape.vdso_len, &here.table, base)
        .map_err(|why| TaskError::VdsoProxy { pid, why })?;
    proxy::apply(&mut img, &patches);
    // The old vDSO as private memory, written, then read-only again.
    let len = iv.end - iv.start;
    const PRIVATE_ANON_FIXED: u64 =
        (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64;
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    call(
        t,
        "mmap vdso proxy",
        libc::SYS_mmap,
        [iv.start, len, rw, PRIVATE_ANON_FIXED, u64::MAX, 0],
    )?;
    t.write_pages(&[(iv.start, &img)])?;
    call(
        t,
        "mprotect vdso proxy",
        libc::SYS_mprotect,
        [iv.start, len, iv.prot.into(), 0, 0, 0],
    )?;
    let old_vvar = find(VMA_AREA_VVAR).map(|v| (v.start, v.end - v.start));
    if let Some((at, len)) = old_vvar {
        // The old vvar's place stays taken (PROT_NONE, nothing behind):
        // the next dump finds it by the mark and stores it as the vvar,
        // so that a restore on this kernel can put the task's layout
        // back as it first was. Best effort: without it, the next
        // restore makes a proxy again.
        const NONE_FIXED: u64 =
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
        let r = call(
            t,
            "mmap old vvar place",
            libc::SYS_mmap,
            [at, len, libc::PROT_NONE as u64, NONE_FIXED, u64::MAX, 0],
        );
        if let Err(e) = r {
            log.debug(format!(
                "pid {pid}: old vvar place at {at:#x} left empty: {e}"
            ));
        }
    }
    mark(
        t,
        base,
        cur.1 - cur.0,
        iv.start,
        old_vvar.map(|v| v.0),
        vvar,
    )?;
    log.info(format!(
        "pid {pid}: vdso proxy at {:#x} leads to this kernel's at {base:#x} ({why}; {} entries{})",
        iv.start,
        patches.jumps.len(),
        match patches.missing.is_empty() {
            true => String::new(),
            false => format!(", not here: {}", patches.missing.join(" ")),
        }
    ));
    Ok(())
}

/// Leaves CRIU's mark ([`crate::model::vdso_mark`]) at the start of this
/// kernel's vDSO (at `vdso`, `len` bytes) in the task, for the next dump:
/// the proxy is at `proxy`, the dumped vvar was at `old_vvar`, this
/// kernel's vvar is at `vvar`. The page becomes the task's own copy.
fn mark(
    t: &mut dyn Tracee,
    vdso: u64,
    len: u64,
    proxy: u64,
    old_vvar: Option<u64>,
    vvar: Option<u64>,
) -> Result<()> {
    let m = crate::model::vdso_mark::Mark {
        proxy,
        old_vvar,
        vvar,
    };
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    call(
        t,
        "mprotect vdso to mark it",
        libc::SYS_mprotect,
        [vdso, len, rw, 0, 0, 0],
    )?;
    t.write_pages(&[(vdso, &m.bytes())])?;
    call(
        t,
        "mprotect marked vdso",
        libc::SYS_mprotect,
        [vdso, len, rx, 0, 0, 0],
    )?;
    Ok(())
}

/// Moves this kernel's vvar and vDSO together, as they lie, to a hole
/// free in the dumped layout if they are not in one; returns the vDSO's
/// start and the vvar's (if there is one).
fn clear_of_dump(
    t: &mut dyn Tracee,
    task: &Task,
    sp: &Special,
    keep: (u64, u64),
) -> Result<(u64, Option<u64>)> {
    let pieces: Vec<(u64, u64)> = [sp.vvar, sp.vclock, sp.vdso]
        .into_iter()
        .flatten()
        .collect();
    let lo = pieces.iter().map(|p| p.0).min().unwrap_or(0);
    let hi = pieces.iter().map(|p| p.1).max().unwrap_or(0);
    let mut taken: Vec<(u64, u64)> = task.mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    taken.push((keep.0, keep.0 + keep.1));
    let vdso = sp.vdso.map_or(0, |v| v.0);
    let vvar = sp.vvar.map(|v| v.0);
    if !taken.iter().any(|&(s, e)| s < hi && lo < e) {
        return Ok((vdso, vvar));
    }
    taken.extend(pieces.iter().copied());
    let to = memory::find_hole(&taken, hi - lo).ok_or(TaskError::NoRoom {
        pid: task.pid,
        what: "no room to move the vdso",
    })?;
    for (s, e) in pieces {
        let fixed = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
        call(
            t,
            "mremap vdso",
            libc::SYS_mremap,
            [s, e - s, e - s, fixed, to + (s - lo), 0],
        )?;
    }
    Ok((to + (vdso - lo), vvar.map(|v| to + (v - lo))))
}
