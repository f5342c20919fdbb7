//! CPU compatibility between the machine a tree was dumped on and the one
//! it is restored on, as CRIU 4.2 decides it, plus crit's own check of the
//! xsave state each thread actually uses.
//!
//! - `--cpu-cap[=CAPS]` (CRIU's syntax: `fpu`, `ins`, `cpu`, `all`,
//!   `none`, `^` to negate, `,` to list). Given to `crit dump` it writes
//!   `cpuinfo.img`; given to `crit restore` it checks that image against
//!   this CPU: `fpu` the xsave components and sizes, `ins` the instruction
//!   sets, `cpu` every capability bit. As in CRIU, nothing is written or
//!   checked without the option.
//! - Always (unless `--cpu-cap` leaves out `fpu`): every thread's recorded
//!   xsave state is looked at, and a component the thread was using (its
//!   `xstate_bv` bit set) that this CPU lacks refuses the restore, naming
//!   the thread and the component: the task would lose that register
//!   state, and code that used those instructions would fault. A
//!   component that merely existed on the old CPU (bit clear, or PKRU at
//!   the kernel's default) is dropped quietly, as CRIU drops it.
//! - CET: a shadow stack that was on at dump is restored off, with a
//!   warning (crit does not rebuild shadow stacks; CRIU 4.2 warns the
//!   same way on a CPU without CET).
//! - `--cpu-cap=none` restores whatever this CPU can hold and warns about
//!   the rest.

use crate::image::pb;
use crate::sys::cpu::{CpuInfo, Vendor, NCAPINTS};

/// Which checks `--cpu-cap` asks for (CRIU's `CPU_CAP_*` bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuCaps(u32);

impl Default for CpuCaps {
    fn default() -> Self {
        Self::default_caps()
    }
}

impl CpuCaps {
    pub const NONE: u32 = 0;
    pub const FPU: u32 = 1;
    pub const CPU: u32 = 2;
    pub const INS: u32 = 4;
    /// Write `cpuinfo.img` at dump, check it at restore.
    pub const IMAGE: u32 = 8;
    const ALL: u32 = Self::FPU | Self::CPU | Self::INS;

    /// Without `--cpu-cap`: CRIU's default (fpu and ins, no cpuinfo image).
    pub fn default_caps() -> CpuCaps {
        CpuCaps(Self::FPU | Self::INS)
    }

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// Parses a `--cpu-cap` value ("" for the bare option: everything).
    pub fn parse(v: &str) -> Result<CpuCaps, crate::error::Error> {
        let mut caps = Self::default_caps().0;
        if v.is_empty() {
            return Ok(CpuCaps(caps | Self::ALL | Self::IMAGE));
        }
        let mut rest = v;
        let mut inverse = false;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('^') {
                inverse = !inverse;
                rest = r;
                continue;
            }
            if let Some(r) = rest.strip_prefix(',') {
                inverse = false;
                rest = r;
                continue;
            }
            let (bits, len) = if rest.starts_with("fpu") {
                (Self::FPU, 3)
            } else if rest.starts_with("all") {
                (Self::ALL, 3)
            } else if rest.starts_with("cpu") {
                (Self::CPU, 3)
            } else if rest.starts_with("ins") {
                (Self::INS, 3)
            } else if rest.starts_with("none") {
                caps = if inverse { Self::ALL } else { Self::NONE };
                rest = &rest[4..];
                continue;
            } else {
                return Err(crate::error::Error::BadValue {
                    option: "--cpu-cap",
                    value: v.to_string(),
                    expected: "expected a list of fpu, ins, cpu, all, none",
                });
            };
            if inverse {
                caps &= !bits;
            } else {
                caps |= bits;
            }
            rest = &rest[len..];
        }
        if caps != Self::NONE {
            caps |= Self::IMAGE;
        }
        Ok(CpuCaps(caps))
    }
}

/// `cpuinfo.img`'s entry for this CPU, as CRIU writes it.
pub fn to_image(c: &CpuInfo) -> pb::CpuinfoEntry {
    use pb::cpuinfo_x86_entry::Vendor as V;
    pb::CpuinfoEntry {
        x86_entry: vec![pb::CpuinfoX86Entry {
            vendor_id: match c.vendor {
                Vendor::Intel => V::Intel,
                _ => V::Amd,
            } as i32,
            cpu_family: c.family,
            model: c.model,
            stepping: c.stepping,
            capability_ver: 2,
            capability: c.caps.to_vec(),
            model_id: (!c.model_id.is_empty()).then(|| c.model_id.clone()),
            xfeatures_mask: Some(c.xfeatures_mask),
            xsave_size: Some(c.xsave_size),
            xsave_size_max: Some(c.xsave_size_max),
        }],
        ..Default::default()
    }
}

/// The dumped CPU from `cpuinfo.img`; words and fields an older image
/// lacks are taken from this CPU, as CRIU does.
pub fn from_image(e: &pb::CpuinfoEntry, rt: &CpuInfo) -> Result<CpuInfo, String> {
    use pb::cpuinfo_x86_entry::Vendor as V;
    let [x] = &e.x86_entry[..] else {
        return Err(format!("{} x86 entries, expected 1", e.x86_entry.len()));
    };
    let vendor = match V::try_from(x.vendor_id) {
        Ok(V::Intel) => Vendor::Intel,
        Ok(V::Amd) => Vendor::Amd,
        _ => return Err(format!("unknown CPU vendor {}", x.vendor_id)),
    };
    let words = match x.capability_ver {
        1 => 12,
        2 => NCAPINTS,
        v => return Err(format!("unknown capability version {v}")),
    };
    if x.capability.len() != words {
        return Err(format!(
            "{} capability words, expected {words} for version {}",
            x.capability.len(),
            x.capability_ver
        ));
    }
    let mut caps = rt.caps;
    caps[..words].copy_from_slice(&x.capability);
    Ok(CpuInfo {
        vendor,
        family: x.cpu_family,
        model: x.model,
        stepping: x.stepping,
        caps,
        model_id: x.model_id.clone().unwrap_or_default(),
        xfeatures_mask: x.xfeatures_mask.unwrap_or(rt.xfeatures_mask),
        xsave_size: x.xsave_size.unwrap_or(rt.xsave_size),
        xsave_size_max: x.xsave_size_max.unwrap_or(rt.xsave_size_max),
    })
}

/// Capability bits that name instruction sets (CRIU's
/// `x86_ins_capability_mask`), with /proc/cpuinfo's names.
const INS_FEATURES: &[(usize, &str)] = &[
    (0, "fpu"),
    (4, "tsc"),
    (8, "cx8"),
    (11, "sep"),
    (15, "cmov"),
    (19, "clflush"),
    (23, "mmx"),
    (24, "fxsr"),
    (25, "sse"),
    (26, "sse2"),
    (32 + 11, "syscall"),
    (32 + 22, "mmxext"),
    (32 + 27, "rdtscp"),
    (32 + 30, "3dnowext"),
    (32 + 31, "3dnow"),
    (3 * 32 + 16, "rep_good"),
    (3 * 32 + 20, "nopl"),
    (4 * 32, "pni"),
    (4 * 32 + 1, "pclmulqdq"),
    (4 * 32 + 3, "monitor"),
    (4 * 32 + 9, "ssse3"),
    (4 * 32 + 13, "cx16"),
    (4 * 32 + 19, "sse4_1"),
    (4 * 32 + 20, "sse4_2"),
    (4 * 32 + 22, "movbe"),
    (4 * 32 + 23, "popcnt"),
    (4 * 32 + 25, "aes"),
    (4 * 32 + 26, "xsave"),
    (4 * 32 + 27, "osxsave"),
    (4 * 32 + 28, "avx"),
    (4 * 32 + 29, "f16c"),
    (4 * 32 + 30, "rdrand"),
    (6 * 32 + 5, "abm"),
    (6 * 32 + 6, "sse4a"),
    (6 * 32 + 7, "misalignsse"),
    (6 * 32 + 8, "3dnowprefetch"),
    (6 * 32 + 11, "xop"),
    (6 * 32 + 16, "fma4"),
    (6 * 32 + 21, "tbm"),
    (9 * 32, "fsgsbase"),
    (9 * 32 + 3, "bmi1"),
    (9 * 32 + 4, "hle"),
    (9 * 32 + 5, "avx2"),
    (9 * 32 + 8, "bmi2"),
    (9 * 32 + 9, "erms"),
    (9 * 32 + 11, "rtm"),
    (9 * 32 + 14, "mpx"),
    (9 * 32 + 16, "avx512f"),
    (9 * 32 + 17, "avx512dq"),
    (9 * 32 + 18, "rdseed"),
    (9 * 32 + 19, "adx"),
    (9 * 32 + 23, "clflushopt"),
    (9 * 32 + 26, "avx512pf"),
    (9 * 32 + 27, "avx512er"),
    (9 * 32 + 28, "avx512cd"),
    (9 * 32 + 29, "sha_ni"),
    (9 * 32 + 30, "avx512bw"),
    (9 * 32 + 31, "avx512vl"),
    (10 * 32, "xsaveopt"),
    (10 * 32 + 1, "xsavec"),
    (10 * 32 + 2, "xgetbv1"),
    (11 * 32 + 1, "avx512vbmi"),
    (11 * 32 + 6, "avx512_vbmi2"),
    (11 * 32 + 8, "gfni"),
    (11 * 32 + 9, "vaes"),
    (11 * 32 + 10, "vpclmulqdq"),
    (11 * 32 + 11, "avx512_vnni"),
    (11 * 32 + 12, "avx512_bitalg"),
    (11 * 32 + 13, "tme"),
    (11 * 32 + 14, "avx512_vpopcntdq"),
    (11 * 32 + 22, "rdpid"),
    (13 * 32, "clzero"),
    (18 * 32 + 2, "avx512_4vnniw"),
    (18 * 32 + 3, "avx512_4fmaps"),
];

/// A capability bit's name ("word W bit B" for bits without one here).
fn feature_name(bit: usize) -> String {
    INS_FEATURES
        .iter()
        .find(|(b, _)| *b == bit)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| format!("word {} bit {}", bit / 32, bit % 32))
}

/// Names of xsave components 0-63.
pub fn component_name(n: u32) -> String {
    match n {
        0 => "x87".into(),
        1 => "SSE".into(),
        2 => "AVX".into(),
        3 => "MPX bounds".into(),
        4 => "MPX CSR".into(),
        5 => "AVX-512 opmask".into(),
        6 => "AVX-512 ZMM_Hi256".into(),
        7 => "AVX-512 Hi16_ZMM".into(),
        9 => "PKRU".into(),
        n => format!("xsave component {n}"),
    }
}

fn bits(m: u64) -> impl Iterator<Item = u32> {
    (0..64).filter(move |i| m & (1 << i) != 0)
}

/// CRIU's `cpu_validate_features` for `caps`: what the dumped CPU `img`
/// had that this CPU `rt` lacks, one phrase each (empty: compatible).
pub fn check_cpuinfo(img: &CpuInfo, rt: &CpuInfo, caps: CpuCaps) -> Vec<String> {
    let mut out = Vec::new();
    if caps.has(CpuCaps::FPU) {
        // FPU, FXSR, OSXSAVE, XSAVES.
        for (bit, name) in [
            (0, "fpu"),
            (24, "fxsr"),
            (4 * 32 + 27, "osxsave"),
            (10 * 32 + 3, "xsaves"),
        ] {
            if img.has(bit) && !rt.has(bit) {
                out.push(format!("FPU feature {name}"));
            }
        }
        let m = img.xfeatures_mask & !rt.xfeatures_mask;
        if m != 0 {
            let names: Vec<String> = bits(m).map(component_name).collect();
            out.push(format!("xsave components {} ({m:#x})", names.join(", ")));
        }
        if img.xsave_size != rt.xsave_size {
            out.push(format!(
                "xsave size {} (this CPU: {})",
                img.xsave_size, rt.xsave_size
            ));
        }
        if img.xsave_size_max != rt.xsave_size_max {
            out.push(format!(
                "xsave max size {} (this CPU: {})",
                img.xsave_size_max, rt.xsave_size_max
            ));
        }
    }
    if caps.has(CpuCaps::INS) {
        let missing: Vec<String> = INS_FEATURES
            .iter()
            .filter(|(b, _)| img.has(*b) && !rt.has(*b))
            .map(|(b, _)| feature_name(*b))
            .collect();
        if !missing.is_empty() {
            out.push(format!("instructions {}", missing.join(", ")));
        }
    }
    if caps.has(CpuCaps::CPU) && img.caps != rt.caps {
        let differ: Vec<String> = (0..NCAPINTS * 32)
            .filter(|&b| img.has(b) != rt.has(b))
            .map(|b| format!("{}{}", if img.has(b) { "+" } else { "-" }, feature_name(b)))
            .collect();
        out.push(format!("capabilities differ: {}", differ.join(" ")));
    }
    out
}

/// The kernel's default PKRU (every key but 0 denies access): a thread
/// with this value never used protection keys.
const PKRU_DEFAULT: u32 = 0x5555_5554;

/// The xsave components a thread was using at dump (state not in its
/// initial form), from its recorded FPU state.
pub fn components_in_use(f: &pb::UserX86FpregsEntry) -> u64 {
    let Some(x) = &f.xsave else { return 0 };
    let mut m = x.xstate_bv & !3;
    if m & (1 << 9) != 0 && x.pkru.first().is_none_or(|&v| v == 0 || v == PKRU_DEFAULT) {
        m &= !(1 << 9);
    }
    m
}

/// Whether the thread had its CET shadow stack on (ARCH_SHSTK_SHSTK).
pub fn shadow_stack_on(f: &pb::UserX86FpregsEntry) -> bool {
    f.xsave
        .as_ref()
        .and_then(|x| x.cet.as_ref())
        .is_some_and(|c| c.cet & 1 != 0)
}

/// What one thread would lose on a CPU whose enabled xsave components are
/// `have`: the components it used that are missing.
pub fn lost_components(f: &pb::UserX86FpregsEntry, have: u64) -> Vec<String> {
    bits(components_in_use(f) & !have)
        .map(component_name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(bv: u64, pkru: Option<u32>, cet: Option<u64>) -> pb::UserX86FpregsEntry {
        pb::UserX86FpregsEntry {
            xsave: Some(pb::UserX86XsaveEntry {
                xstate_bv: bv,
                pkru: pkru.into_iter().collect(),
                cet: cet.map(|c| pb::UserX86CetEntry { cet: c, ssp: 0 }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn caps_parse_as_criu() {
        let d = CpuCaps::default_caps();
        assert!(d.has(CpuCaps::FPU) && d.has(CpuCaps::INS) && !d.has(CpuCaps::IMAGE));
        let all = CpuCaps::parse("").unwrap();
        assert!(all.has(CpuCaps::CPU) && all.has(CpuCaps::IMAGE));
        assert_eq!(CpuCaps::parse("none").unwrap(), CpuCaps(0));
        let c = CpuCaps::parse("^fpu").unwrap();
        assert!(!c.has(CpuCaps::FPU) && c.has(CpuCaps::INS) && c.has(CpuCaps::IMAGE));
        let c = CpuCaps::parse("none,ins").unwrap();
        assert_eq!(c, CpuCaps(CpuCaps::INS | CpuCaps::IMAGE));
        let c = CpuCaps::parse("^all").unwrap();
        assert_eq!(c, CpuCaps(0));
        assert!(CpuCaps::parse("fpux").is_err());
        assert!(CpuCaps::parse("avx").is_err());
    }

    #[test]
    fn only_state_in_use_counts() {
        // x87/SSE never count; AVX-512 hi16 in use.
        assert_eq!(components_in_use(&fp(0x83, None, None)), 0x80);
        // PKRU at the kernel's default was never used.
        assert_eq!(components_in_use(&fp(0x203, Some(PKRU_DEFAULT), None)), 0);
        assert_eq!(
            components_in_use(&fp(0x203, Some(0x5555_555c), None)),
            0x200
        );
        assert_eq!(
            lost_components(&fp(0x2e3, Some(1), None), 0xe7),
            vec!["PKRU".to_string()]
        );
        assert!(lost_components(&fp(0xe7, None, None), 0xe7).is_empty());
        assert_eq!(
            lost_components(&fp(0xa2, None, None), 0x7),
            vec!["AVX-512 opmask".to_string(), "AVX-512 Hi16_ZMM".to_string()]
        );
        // No xsave at all: nothing in use.
        assert_eq!(components_in_use(&pb::UserX86FpregsEntry::default()), 0);
    }

    #[test]
    fn shadow_stack_state() {
        assert!(!shadow_stack_on(&fp(3, None, Some(0))));
        assert!(shadow_stack_on(&fp(3, None, Some(1))));
        assert!(!shadow_stack_on(&fp(3, None, None)));
    }

    fn cpu(caps: &[(usize, bool)], xf: u64, size: u32) -> CpuInfo {
        let mut c = CpuInfo {
            vendor: Vendor::Intel,
            family: 6,
            model: 143,
            stepping: 8,
            caps: [0; NCAPINTS],
            model_id: "test".into(),
            xfeatures_mask: xf,
            xsave_size: size,
            xsave_size_max: size,
        };
        for &(b, on) in caps {
            if on {
                c.caps[b / 32] |= 1 << (b % 32);
            }
        }
        c
    }

    #[test]
    fn cpuinfo_checks_name_what_is_missing() {
        let old = cpu(&[(9 * 32 + 16, true), (4 * 32 + 28, true)], 0xe5, 2688);
        let new = cpu(&[(4 * 32 + 28, true)], 0x5, 832);
        let d = CpuCaps::parse("fpu,ins").unwrap();
        let got = check_cpuinfo(&old, &new, d);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[0].contains("AVX-512 opmask"), "{got:?}");
        assert!(got[1].starts_with("xsave size 2688"), "{got:?}");
        assert_eq!(got[3], "instructions avx512f");
        // The other way round nothing is missing but the sizes.
        let got = check_cpuinfo(&new, &old, CpuCaps::parse("^fpu").unwrap());
        assert!(got.is_empty(), "{got:?}");
        // Strict: every differing bit, signed.
        let got = check_cpuinfo(&old, &new, CpuCaps::parse("none,cpu").unwrap());
        assert_eq!(got, vec!["capabilities differ: +avx512f".to_string()]);
        assert!(check_cpuinfo(&old, &old, CpuCaps::parse("").unwrap()).is_empty());
    }

    #[test]
    fn cpuinfo_image_round_trip_and_old_versions() {
        let c = cpu(&[(9 * 32 + 16, true)], 0xe5, 2688);
        let e = to_image(&c);
        let back = from_image(&e, &c).unwrap();
        assert_eq!(back.caps, c.caps);
        assert_eq!(back.xfeatures_mask, 0xe5);
        // Version 1 has 12 words; the rest come from this CPU.
        let mut v1 = e.clone();
        v1.x86_entry[0].capability_ver = 1;
        v1.x86_entry[0].capability.truncate(12);
        let mut rt = c.clone();
        rt.caps[18] = 7;
        assert_eq!(from_image(&v1, &rt).unwrap().caps[18], 7);
        v1.x86_entry[0].capability.push(0);
        assert!(from_image(&v1, &rt)
            .unwrap_err()
            .contains("13 capability words"));
        let mut bad = e.clone();
        bad.x86_entry[0].vendor_id = 0;
        assert!(from_image(&bad, &c).is_err());
        let mut none = e;
        none.x86_entry.clear();
        assert!(from_image(&none, &c).is_err());
    }

    #[test]
    fn this_cpu_is_consistent() {
        let me = crate::sys::cpu::this_cpu();
        // x87 and SSE state are always there on x86-64; CRIU's mask drops
        // bit 1 (see criu_xfeatures).
        assert!(me.has(0) && me.has(25) && me.has(26));
        assert!(check_cpuinfo(&me, &me, CpuCaps::parse("").unwrap()).is_empty());
        let back = from_image(&to_image(&me), &me).unwrap();
        assert_eq!(back.caps, me.caps);
    }
}
