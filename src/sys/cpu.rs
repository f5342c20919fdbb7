//! What this CPU is and can do, read with `cpuid` and `xgetbv`: the
//! capability words in CRIU's layout (its `cpuinfo.img`), the xsave
//! components and where each lives in the standard (non-compacted) xsave
//! layout that ptrace uses.

/// Capability words CRIU records (its `NCAPINTS`, capability version 2).
pub const NCAPINTS: usize = 19;

/// Which CPUID register fills each capability word (CRIU's `cpuid_leafs`;
/// the words are an image format, so their order never changes).
pub mod word {
    pub const CPUID_1_EDX: usize = 0;
    pub const CPUID_8000_0001_EDX: usize = 1;
    pub const CPUID_LNX_1: usize = 3;
    pub const CPUID_1_ECX: usize = 4;
    pub const CPUID_8000_0001_ECX: usize = 6;
    pub const CPUID_7_0_EBX: usize = 9;
    pub const CPUID_D_1_EAX: usize = 10;
    pub const CPUID_7_0_ECX: usize = 11;
    pub const CPUID_F_1_EDX: usize = 12;
    pub const CPUID_8000_0008_EBX: usize = 13;
    pub const CPUID_6_EAX: usize = 14;
    pub const CPUID_8000_000A_EDX: usize = 15;
    pub const CPUID_F_0_EDX: usize = 16;
    pub const CPUID_8000_0007_EBX: usize = 17;
    pub const CPUID_7_0_EDX: usize = 18;
}

/// CPU vendors CRIU knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    Other,
}

/// This CPU as CRIU describes one.
#[derive(Clone, Debug)]
pub struct CpuInfo {
    pub vendor: Vendor,
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    pub caps: [u32; NCAPINTS],
    pub model_id: String,
    /// The user xsave components CRIU counts (see [`criu_xfeatures`]).
    pub xfeatures_mask: u64,
    /// xsave area size for the enabled components, and for all of them.
    pub xsave_size: u32,
    pub xsave_size_max: u32,
}

impl CpuInfo {
    /// Whether capability bit `bit` (word * 32 + bit) is set.
    pub fn has(&self, bit: usize) -> bool {
        self.caps
            .get(bit / 32)
            .is_some_and(|w| w & (1 << (bit % 32)) != 0)
    }
}

fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    // SAFETY: cpuid is always available on x86-64; the intrinsic is safe
    // on recent compilers and marked unsafe on older ones.
    #[allow(unused_unsafe)]
    let r = unsafe { std::arch::x86_64::__cpuid_count(leaf, sub) };
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// The xsave components the kernel enabled (XCR0), or x87|SSE where the OS
/// does not use xsave. Read once: CPUID is a VM exit under a hypervisor.
pub fn enabled_xfeatures() -> u64 {
    static XCR0: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *XCR0.get_or_init(read_xcr0)
}

fn read_xcr0() -> u64 {
    if cpuid(1, 0).2 & (1 << 27) == 0 {
        return 3;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: CPUID.1:ECX.OSXSAVE (checked above) means the OS set
    // CR4.OSXSAVE, so xgetbv with ecx=0 does not fault; it only reads XCR0.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
                        options(nomem, nostack, preserves_flags));
    }
    u64::from(lo) | (u64::from(hi) << 32)
}

/// Whether this thread's CPU and kernel give it xsave component `n`
/// (2 = AVX, 3/4 = MPX, 5-7 = AVX-512, 9 = PKRU).
pub fn has_xsave_component(n: u32) -> bool {
    n < 64 && enabled_xfeatures() & (1 << n) != 0
}

/// (offset, size) of xsave component `n` in the standard layout, or None
/// when the kernel does not enable it.
pub fn xsave_component(n: u32) -> Option<(usize, usize)> {
    // Asked for every thread dumped or restored: the table is read once.
    static TABLE: std::sync::OnceLock<[Option<(usize, usize)>; 64]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        std::array::from_fn(|n| {
            let n = n as u32;
            if !has_xsave_component(n) {
                return None;
            }
            let (eax, ebx, _, _) = cpuid(0xd, n);
            (eax != 0).then_some((ebx as usize, eax as usize))
        })
    });
    table.get(n as usize).copied().flatten()
}

/// Whether the CPU has CET shadow stacks (CPUID.7.0:ECX bit 7).
pub fn has_shstk() -> bool {
    static SHSTK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SHSTK.get_or_init(|| cpuid(7, 0).2 & (1 << 7) != 0)
}

/// Whether the OS saves extended state with xsave (CPUID.1:ECX.OSXSAVE).
pub fn has_osxsave() -> bool {
    static OSXSAVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OSXSAVE.get_or_init(|| cpuid(1, 0).2 & (1 << 27) != 0)
}

/// The capability bit that must be set for each of xsave components 0-10
/// to count (CRIU's `xsave_cpuid_features`).
const XSAVE_CPUID_FEATURES: [usize; 11] = [
    0,           // x87: FPU
    25,          // SSE: XMM
    4 * 32 + 28, // AVX
    9 * 32 + 14, // MPX
    9 * 32 + 14, // MPX
    9 * 32 + 16, // AVX512F
    9 * 32 + 16,
    9 * 32 + 16,
    9 * 32 + 25,  // Intel PT
    11 * 32 + 3,  // PKU
    14 * 32 + 13, // HDC
];

/// The xsave component mask CRIU computes and writes to `cpuinfo.img`:
/// CPUID.0xD.0 filtered by the capability words and to user components.
/// CRIU's filter also clears bits 1 and 3 (its supervisor mask ORs the
/// component number 10 rather than its bit), so those never appear; the
/// same rule on both sides keeps comparisons with CRIU's images exact.
pub fn criu_xfeatures(caps: &[u32; NCAPINTS], cpuid_mask: u64) -> u64 {
    let has = |bit: usize| caps[bit / 32] & (1 << (bit % 32)) != 0;
    let mut m = cpuid_mask;
    for (i, &bit) in XSAVE_CPUID_FEATURES.iter().enumerate() {
        if !has(bit) {
            m &= !(1 << i);
        }
    }
    // x87, SSE, AVX, MPX (2), AVX-512 (3), PKRU.
    const USER: u64 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x200;
    m &= USER;
    m &= !((1 << 8) | 10);
    m
}

/// Reads this CPU the way CRIU's compel does.
pub fn this_cpu() -> CpuInfo {
    let (max_leaf, b, c, d) = cpuid(0, 0);
    let mut vendor_id = Vec::with_capacity(12);
    for r in [b, d, c] {
        vendor_id.extend_from_slice(&r.to_le_bytes());
    }
    let vendor = match &vendor_id[..] {
        b"GenuineIntel" => Vendor::Intel,
        b"AuthenticAMD" | b"HygonGenuine" => Vendor::Amd,
        _ => Vendor::Other,
    };
    let (mut family, mut model, mut stepping) = (4, 0, 0);
    if max_leaf >= 1 {
        let a = cpuid(1, 0).0;
        family = (a >> 8) & 0xf;
        model = (a >> 4) & 0xf;
        stepping = a & 0xf;
        if family == 0xf {
            family += (a >> 20) & 0xff;
        }
        if family >= 6 {
            model += ((a >> 16) & 0xf) << 4;
        }
    }
    let mut caps = base_caps(max_leaf);
    let model_id = extended_caps(&mut caps);
    fix_caps(&mut caps, vendor, family, max_leaf);
    let (mut xfeatures_mask, mut xsave_size, mut xsave_size_max) = (0, 0, 0);
    if caps[4] & (1 << 26) != 0 {
        let (a, b, c, d) = cpuid(0xd, 0);
        xfeatures_mask = criu_xfeatures(&caps, u64::from(a) | (u64::from(d) << 32));
        xsave_size = b;
        xsave_size_max = c;
    }
    CpuInfo {
        vendor,
        family,
        model,
        stepping,
        caps,
        model_id,
        xfeatures_mask,
        xsave_size,
        xsave_size_max,
    }
}

/// The capability words of the standard CPUID leaves.
fn base_caps(max_leaf: u32) -> [u32; NCAPINTS] {
    let mut caps = [0u32; NCAPINTS];
    if max_leaf >= 1 {
        let (_, _, c, d) = cpuid(1, 0);
        caps[word::CPUID_1_EDX] = d;
        caps[word::CPUID_1_ECX] = c;
    }
    if max_leaf >= 6 {
        caps[word::CPUID_6_EAX] = cpuid(6, 0).0;
    }
    if max_leaf >= 7 {
        let (_, b, c, d) = cpuid(7, 0);
        caps[word::CPUID_7_0_EBX] = b;
        caps[word::CPUID_7_0_ECX] = c;
        caps[word::CPUID_7_0_EDX] = d;
    }
    if max_leaf >= 0xd {
        caps[word::CPUID_D_1_EAX] = cpuid(0xd, 1).0;
    }
    if max_leaf >= 0xf {
        caps[word::CPUID_F_0_EDX] = cpuid(0xf, 0).3;
        // CQM_LLC (word 16 bit 1) says whether sub-leaf 1 exists.
        if caps[word::CPUID_F_0_EDX] & 2 != 0 {
            caps[word::CPUID_F_1_EDX] = cpuid(0xf, 1).3;
        }
    }
    caps
}

/// The capability words of the extended leaves; returns the model name.
fn extended_caps(caps: &mut [u32; NCAPINTS]) -> String {
    let ext = cpuid(0x8000_0000, 0).0;
    let mut model_id = String::new();
    if ext & 0xffff_0000 != 0x8000_0000 {
        return model_id;
    }
    if ext >= 0x8000_0001 {
        let (_, _, c, d) = cpuid(0x8000_0001, 0);
        caps[word::CPUID_8000_0001_ECX] = c;
        caps[word::CPUID_8000_0001_EDX] = d;
    }
    if ext >= 0x8000_0004 {
        let mut s = Vec::with_capacity(48);
        for leaf in 0x8000_0002..=0x8000_0004 {
            let (a, b, c, d) = cpuid(leaf, 0);
            for r in [a, b, c, d] {
                s.extend_from_slice(&r.to_le_bytes());
            }
        }
        let end = s.iter().position(|&x| x == 0).unwrap_or(s.len());
        model_id = String::from_utf8_lossy(&s[..end]).trim_start().to_string();
    }
    if ext >= 0x8000_0007 {
        caps[word::CPUID_8000_0007_EBX] = cpuid(0x8000_0007, 0).1;
    }
    if ext >= 0x8000_000a {
        caps[word::CPUID_8000_000A_EDX] = cpuid(0x8000_000a, 0).3;
    }
    if ext >= 0x8000_0008 {
        caps[word::CPUID_8000_0008_EBX] = cpuid(0x8000_0008, 0).1;
    }
    model_id
}

/// The bits CRIU sets or clears by itself (always there on x86-64, or
/// per vendor and family).
fn fix_caps(caps: &mut [u32; NCAPINTS], vendor: Vendor, family: u32, max_leaf: u32) {
    let mut set = |bit: usize, on: bool| {
        if on {
            caps[bit / 32] |= 1 << (bit % 32);
        } else {
            caps[bit / 32] &= !(1 << (bit % 32));
        }
    };
    const REP_GOOD: usize = 3 * 32 + 16;
    set(3 * 32 + 25, true); // CPUID
    set(3 * 32 + 20, true); // NOPL
    if max_leaf < 0xd {
        set(4 * 32 + 26, false); // XSAVE
    }
    match vendor {
        Vendor::Intel if family == 15 => {
            set(REP_GOOD, false);
            set(9 * 32 + 9, false); // ERMS
        }
        Vendor::Intel if family == 6 => set(REP_GOOD, true),
        Vendor::Amd => {
            set(31, false);
            if family >= 0x10 {
                set(REP_GOOD, true);
            }
            if family == 0xf {
                let level = cpuid(1, 0).0;
                if (0x0f48..0x0f50).contains(&level) || level >= 0x0f58 {
                    set(REP_GOOD, true);
                }
            }
        }
        _ => {}
    }
}
