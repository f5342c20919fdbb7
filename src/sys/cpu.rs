//! CPU facts the restore needs: where each xsave component lives in the
//! standard (non-compacted) xsave layout that ptrace uses.

/// (offset, size) of xsave component `n` (2 = AVX upper halves, 5 =
/// opmask, 6 = ZMM_Hi256, 7 = Hi16_ZMM, 9 = PKRU), or None when this CPU
/// has no such component.
pub fn xsave_component(n: u32) -> Option<(usize, usize)> {
    // SAFETY: cpuid is always available on x86-64; the intrinsic is safe
    // on recent compilers and marked unsafe on older ones.
    #[allow(unused_unsafe)]
    let r = unsafe { std::arch::x86_64::__cpuid_count(0xd, n) };
    if r.eax == 0 {
        None
    } else {
        Some((r.ebx as usize, r.eax as usize))
    }
}
