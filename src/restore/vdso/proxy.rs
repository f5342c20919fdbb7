//! Whether a dumped vDSO can be replaced by this kernel's, and if not, the
//! proxy that stands in for it (CRIU's way): the dumped vDSO comes back at
//! its old address from the images, and each function it exports starts
//! with a jump to the same function of this kernel's vDSO, moved out of
//! the way. C libraries keep pointers into the old vDSO (glibc looks its
//! functions up once, at start), so they must keep working there.

use super::symtab::SymTable;

/// The shape of the kernel's special mappings in one address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub vdso_len: u64,
    /// The vvar pages (with vvar_vclock), and where the vdso starts from
    /// their start: the vdso's code finds its data at that distance.
    pub vvar: Option<(u64, i64)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// The same vDSO: this kernel's is moved where the dumped one was.
    Remap,
    /// Another one: a proxy at the old address leads to this kernel's.
    Proxy(Why),
}

/// Why a proxy is needed.
#[derive(Debug, PartialEq, Eq)]
pub enum Why {
    Asked,
    Size { dumped: u64, here: u64 },
    Vvar,
    Symbols,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Asked => write!(f, "asked for (--force-vdso-proxy)"),
            Why::Size { dumped, here } => {
                write!(f, "the dumped vdso is {dumped} bytes, this kernel's {here}")
            }
            Why::Vvar => write!(f, "the vvar pages differ"),
            Why::Symbols => write!(f, "the functions sit at other offsets"),
        }
    }
}

/// Compares the dumped vDSO with this kernel's.
pub fn decide(
    dumped: &SymTable,
    dumped_shape: Shape,
    here: &SymTable,
    here_shape: Shape,
    force: bool,
) -> Decision {
    if force {
        Decision::Proxy(Why::Asked)
    } else if dumped_shape.vdso_len != here_shape.vdso_len {
        Decision::Proxy(Why::Size {
            dumped: dumped_shape.vdso_len,
            here: here_shape.vdso_len,
        })
    } else if dumped_shape.vvar != here_shape.vvar {
        Decision::Proxy(Why::Vvar)
    } else if dumped != here {
        Decision::Proxy(Why::Symbols)
    } else {
        Decision::Remap
    }
}

/// `movabs $target, %rax; jmp *%rax`: rax is free at a function's entry
/// (it carries no argument), and the jump reaches any address.
pub const JUMP_LEN: u64 = 12;

pub fn jump(target: u64) -> [u8; JUMP_LEN as usize] {
    let mut j = [0u8; JUMP_LEN as usize];
    j[..2].copy_from_slice(&[0x48, 0xb8]);
    j[2..10].copy_from_slice(&target.to_le_bytes());
    j[10..].copy_from_slice(&[0xff, 0xe0]);
    j
}

/// The jumps to write into the dumped vDSO image.
#[derive(Debug, PartialEq, Eq)]
pub struct Patches {
    /// (offset in the dumped image, target address), by offset.
    pub jumps: Vec<(u64, u64)>,
    /// Functions this kernel's vDSO lacks: left as they were.
    pub missing: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchFault {
    #[error("the entries at offsets {a:#x} and {b:#x} are too close for a {JUMP_LEN}-byte jump")]
    Overlap { a: u64, b: u64 },
    #[error("the entry of {name} at offset {at:#x} is too close to the end ({len} bytes)")]
    PastEnd { name: String, at: u64, len: u64 },
}

/// One jump per entry of the dumped vDSO (`dumped_len` bytes) that this
/// kernel's exports too, to that function in this kernel's vDSO mapped at
/// `here_base`. Names that share an entry (aliases) share its jump.
pub fn patches(
    dumped: &SymTable,
    dumped_len: u64,
    here: &SymTable,
    here_base: u64,
) -> Result<Patches, PatchFault> {
    let mut jumps: Vec<(u64, u64)> = Vec::new();
    let mut missing = Vec::new();
    for (name, &at) in &dumped.syms {
        let Some(&to) = here.syms.get(name) else {
            missing.push(name.clone());
            continue;
        };
        if at.checked_add(JUMP_LEN).is_none_or(|e| e > dumped_len) {
            return Err(PatchFault::PastEnd {
                name: name.clone(),
                at,
                len: dumped_len,
            });
        }
        jumps.push((at, here_base + to));
    }
    jumps.sort_unstable();
    jumps.dedup_by_key(|j| j.0);
    for w in jumps.windows(2) {
        if w[1].0 - w[0].0 < JUMP_LEN {
            return Err(PatchFault::Overlap {
                a: w[0].0,
                b: w[1].0,
            });
        }
    }
    // An alias the kernel lacks still gets its entry's jump.
    missing.retain(|n| !jumps.iter().any(|j| j.0 == dumped.syms[n]));
    Ok(Patches { jumps, missing })
}

/// Writes the jumps into `img` (the dumped vDSO).
pub fn apply(img: &mut [u8], p: &Patches) {
    for &(at, to) in &p.jumps {
        let at = at as usize;
        if let Some(dst) = img.get_mut(at..at + JUMP_LEN as usize) {
            dst.copy_from_slice(&jump(to));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(syms: &[(&str, u64)]) -> SymTable {
        SymTable {
            syms: syms.iter().map(|&(n, a)| (n.to_string(), a)).collect(),
        }
    }

    const SHAPE: Shape = Shape {
        vdso_len: 0x2000,
        vvar: Some((0x4000, 0x4000)),
    };

    #[test]
    fn the_same_vdso_is_remapped_and_any_difference_proxied() {
        let a = table(&[
            ("__vdso_time", 0x900),
            ("time", 0x900),
            ("__vdso_getcpu", 0x940),
        ]);
        assert_eq!(decide(&a, SHAPE, &a.clone(), SHAPE, false), Decision::Remap);
        assert_eq!(
            decide(&a, SHAPE, &a, SHAPE, true),
            Decision::Proxy(Why::Asked)
        );
        let bigger = Shape {
            vdso_len: 0x3000,
            ..SHAPE
        };
        assert_eq!(
            decide(&a, SHAPE, &a, bigger, false),
            Decision::Proxy(Why::Size {
                dumped: 0x2000,
                here: 0x3000
            })
        );
        let vvar = Shape {
            vvar: Some((0x3000, 0x3000)),
            ..SHAPE
        };
        assert_eq!(
            decide(&a, SHAPE, &a, vvar, false),
            Decision::Proxy(Why::Vvar)
        );
        let moved = table(&[
            ("__vdso_time", 0x910),
            ("time", 0x910),
            ("__vdso_getcpu", 0x940),
        ]);
        assert_eq!(
            decide(&a, SHAPE, &moved, SHAPE, false),
            Decision::Proxy(Why::Symbols)
        );
        let more = table(&[
            ("__vdso_time", 0x900),
            ("time", 0x900),
            ("__vdso_getcpu", 0x940),
            ("__vdso_getrandom", 0x980),
        ]);
        assert_eq!(
            decide(&a, SHAPE, &more, SHAPE, false),
            Decision::Proxy(Why::Symbols)
        );
    }

    #[test]
    fn each_entry_jumps_to_the_same_function_of_the_new_vdso() {
        let old = table(&[
            ("__vdso_clock_gettime", 0x800),
            ("clock_gettime", 0x800),
            ("__vdso_time", 0x880),
            ("time", 0x880),
            ("__vdso_sgx_enter_enclave", 0x900),
        ]);
        let new = table(&[
            ("__vdso_clock_gettime", 0xa00),
            ("clock_gettime", 0xa00),
            ("__vdso_time", 0xc40),
            ("__vdso_getrandom", 0xd00),
        ]);
        let base = 0x7fff_0000_0000;
        let p = patches(&old, 0x1000, &new, base).unwrap();
        assert_eq!(p.jumps, vec![(0x800, base + 0xa00), (0x880, base + 0xc40)]);
        // `time` shares __vdso_time's entry; sgx has no counterpart.
        assert_eq!(p.missing, vec!["__vdso_sgx_enter_enclave".to_string()]);
        let mut img = vec![0xccu8; 0x1000];
        apply(&mut img, &p);
        assert_eq!(&img[0x800..0x802], &[0x48, 0xb8]);
        assert_eq!(img[0x802..0x80a], (base + 0xa00).to_le_bytes());
        assert_eq!(&img[0x80a..0x80c], &[0xff, 0xe0]);
        assert_eq!(img[0x80c], 0xcc);
        assert_eq!(img[0x882..0x88a], (base + 0xc40).to_le_bytes());
        assert!(img[0x900..0x910].iter().all(|&b| b == 0xcc));
    }

    #[test]
    fn entries_too_close_or_at_the_end_are_refused() {
        let new = table(&[("a", 0x100), ("b", 0x200)]);
        let close = table(&[("a", 0x100), ("b", 0x108)]);
        assert_eq!(
            patches(&close, 0x1000, &new, 0),
            Err(PatchFault::Overlap { a: 0x100, b: 0x108 })
        );
        let end = table(&[("a", 0xff8)]);
        assert!(matches!(
            patches(&end, 0x1000, &new, 0),
            Err(PatchFault::PastEnd { at: 0xff8, .. })
        ));
        let wild = table(&[("a", u64::MAX - 2)]);
        assert!(patches(&wild, 0x1000, &new, 0).is_err());
    }
}
