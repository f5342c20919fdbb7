//! A task restored with a vDSO proxy (by crit or CRIU): the restore
//! marked the kernel's vDSO ([`crate::model::vdso_mark`]). Its dump leaves
//! that vDSO and the kernel's vvar out and gives the proxy, and the old
//! vvar area if something is mapped there, the vDSO's (vvar's) status,
//! as CRIU's dump does: the next restore then handles the proxy as the
//! task's vDSO.

use super::maps::{Vma, VMA_AREA_REGULAR, VMA_AREA_VDSO, VMA_AREA_VVAR};
use crate::model::vdso_mark::{self, Mark};

/// The mark at the start of `pid`'s kernel vDSO in `vmas`, if there is one.
/// A vDSO that cannot be read carries no mark that matters: the dump reads
/// its pages later and says so there.
pub fn find_mark(pid: i32, vmas: &[Vma]) -> Option<Mark> {
    let v = vmas
        .iter()
        .find(|v| v.is(VMA_AREA_VDSO) && v.name == "[vdso]")?;
    let mut b = [0u8; vdso_mark::LEN];
    crate::sys::remote::read_exact(pid, v.start, &mut b).ok()?;
    Mark::parse(&b)
}

/// Applies `mark` to `vmas`: the kernel's vDSO and vvar go, the proxy
/// (and the old vvar area) get their status back. A mark whose proxy is
/// not mapped is left alone (the task unmapped it: its kernel vDSO is
/// what it has).
pub fn apply(vmas: &mut Vec<Vma>, mark: &Mark) {
    if !vmas
        .iter()
        .any(|v| v.start == mark.proxy && v.name != "[vdso]")
    {
        return;
    }
    vmas.retain(|v| !(v.name == "[vdso]" || v.name == "[vvar]" || v.name == "[vvar_vclock]"));
    for v in vmas.iter_mut() {
        if v.start == mark.proxy {
            v.status |= VMA_AREA_REGULAR | VMA_AREA_VDSO;
        } else if Some(v.start) == mark.old_vvar {
            v.status |= VMA_AREA_REGULAR | VMA_AREA_VVAR;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::maps::VMA_ANON_PRIVATE;

    fn vma(start: u64, end: u64, name: &str, status: u32) -> Vma {
        Vma {
            start,
            end,
            pgoff: 0,
            prot: 5,
            flags: 0x22,
            status,
            madv: 0,
            fdflags: None,
            shmid: 0,
            file: None,
            name: name.to_string(),
        }
    }

    #[test]
    fn the_proxy_takes_the_vdsos_place() {
        let anon = VMA_AREA_REGULAR | VMA_ANON_PRIVATE;
        let mut v = vec![
            vma(0x1000, 0x3000, "", anon),
            vma(0x5000, 0x7000, "", anon),
            vma(0x9000, 0xb000, "[vvar]", anon | VMA_AREA_VVAR),
            vma(0xb000, 0xd000, "[vdso]", anon | VMA_AREA_VDSO),
        ];
        let m = Mark {
            proxy: 0x5000,
            old_vvar: Some(0x1000),
            vvar: Some(0x9000),
        };
        apply(&mut v, &m);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].status, anon | VMA_AREA_VVAR);
        assert_eq!(v[1].status, anon | VMA_AREA_VDSO);
        assert_eq!(v[1].start, 0x5000);
        // A mark whose proxy is gone changes nothing.
        let mut w = vec![vma(0xb000, 0xd000, "[vdso]", anon | VMA_AREA_VDSO)];
        apply(&mut w, &m);
        assert_eq!(w.len(), 1);
    }
}
