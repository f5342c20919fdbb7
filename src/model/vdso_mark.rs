//! The mark a restore leaves in a task whose vDSO it proxied, in CRIU's
//! layout (its `struct vdso_mark`), so that the next dump, by crit or by
//! CRIU, finds the proxy again. A proxy is the dumped vDSO put back at its
//! old address with each function jumping to this kernel's vDSO, which
//! lies elsewhere; the mark goes over the first bytes of that kernel vDSO
//! (its ELF header, read by nothing once the C library has started) and
//! says where the proxy and the dumped vvar are. A dump that finds it
//! leaves the kernel's vDSO and vvar out and gives the proxy the vDSO's
//! place in the images: the restore after treats the proxy as the task's
//! vDSO, and each move to another kernel replaces the jumps instead of
//! adding one.
//!
//! Layout (five 64-bit little-endian words): signature, proxy (the dumped
//! vDSO's) address, version, dumped vvar address, the kernel vvar's
//! address. Older versions (signatures 1 and 2) lack the last one or two;
//! a missing address is all ones.

/// "CRIUvDSO", "criuvDSO", "criuvdso" as little-endian words: versions 3, 2, 1.
const SIGNATURES: [(u64, u32); 3] = [
    (0x4f53_4476_5549_5243, 3),
    (0x4f53_4476_7569_7263, 2),
    (0x6f73_6476_7569_7263, 1),
];
const VERSION: u64 = 3;
/// CRIU's VVAR_BAD_ADDR: no such area.
const NONE: u64 = u64::MAX;
/// The bytes a mark takes.
pub const LEN: usize = 40;

/// What a mark says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Where the proxy is: the dumped vDSO's address.
    pub proxy: u64,
    /// Where the dumped vvar was, if it had one.
    pub old_vvar: Option<u64>,
    /// Where the kernel's vvar is (versions before 3 do not say).
    pub vvar: Option<u64>,
}

fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i * 8..i * 8 + 8]);
    u64::from_le_bytes(w)
}

fn addr(v: u64) -> Option<u64> {
    (v != NONE).then_some(v)
}

impl Mark {
    /// The mark at the start of `b` (the first bytes of a vDSO), if any.
    pub fn parse(b: &[u8]) -> Option<Mark> {
        if b.len() < LEN {
            return None;
        }
        let version = SIGNATURES.iter().find(|s| s.0 == word(b, 0))?.1;
        Some(Mark {
            proxy: word(b, 1),
            old_vvar: if version >= 2 { addr(word(b, 3)) } else { None },
            vvar: if version >= 3 { addr(word(b, 4)) } else { None },
        })
    }

    /// The mark's bytes (version 3).
    pub fn bytes(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        let words = [
            SIGNATURES[0].0,
            self.proxy,
            VERSION,
            self.old_vvar.unwrap_or(NONE),
            self.vvar.unwrap_or(NONE),
        ];
        for (i, w) in words.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_criu_signature() {
        let m = Mark {
            proxy: 0x7fff_1000_0000,
            old_vvar: Some(0x7fff_0fff_c000),
            vvar: Some(0x7f00_0000_0000),
        };
        let b = m.bytes();
        // CRIU's VDSO_MARK_SIGNATURE_V3 reads "CRIUvDSO" in memory.
        assert_eq!(&b[..8], b"CRIUvDSO");
        assert_eq!(Mark::parse(&b), Some(m));
        let none = Mark {
            proxy: 0x1000,
            old_vvar: None,
            vvar: None,
        };
        assert_eq!(Mark::parse(&none.bytes()), Some(none));
    }

    #[test]
    fn older_versions_and_non_marks() {
        let mut b = [0xffu8; LEN];
        b[..8].copy_from_slice(b"criuvdso");
        b[8..16].copy_from_slice(&0x5000u64.to_le_bytes());
        b[24..32].copy_from_slice(&0x3000u64.to_le_bytes());
        // Version 1 says only where the proxy is.
        assert_eq!(
            Mark::parse(&b),
            Some(Mark {
                proxy: 0x5000,
                old_vvar: None,
                vvar: None
            })
        );
        b[..8].copy_from_slice(b"criuvDSO");
        assert_eq!(Mark::parse(&b).unwrap().old_vvar, Some(0x3000));
        assert_eq!(Mark::parse(&b).unwrap().vvar, None);
        // An ELF header is no mark; nor is a short read.
        let mut elf = [0u8; LEN];
        elf[..4].copy_from_slice(b"\x7fELF");
        assert_eq!(Mark::parse(&elf), None);
        assert_eq!(Mark::parse(&b[..20]), None);
    }
}
