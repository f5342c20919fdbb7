//! The functions a vDSO exports: names and offsets from its start, read
//! from the ELF image (its `.dynsym` section and the strings it links to).
//! x86_64 only: ELF64, little-endian.

use std::collections::BTreeMap;

/// Exported function name → offset of its entry in the image.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SymTable {
    pub syms: BTreeMap<String, u64>,
}

/// Why an image is not a vDSO crit can read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ElfFault {
    #[error("not a 64-bit little-endian ELF image")]
    NotElf,
    #[error("ends at byte {len}, reading {what} at byte {at}")]
    Short {
        what: &'static str,
        at: u64,
        len: u64,
    },
    #[error("has no dynamic symbol table (.dynsym)")]
    NoDynsym,
    #[error("has no loadable segment")]
    NoLoad,
}

const SHT_DYNSYM: u32 = 11;
const PT_LOAD: u32 = 1;
const STT_FUNC: u8 = 2;
const STB_GLOBAL: u8 = 1;
const STB_WEAK: u8 = 2;
const SYM_SIZE: u64 = 24;

/// Offsets from the image may be anything: out of range reads fail, sums
/// never wrap (they stick at the top, out of range).
fn add(a: u64, b: u64) -> u64 {
    a.saturating_add(b)
}

/// Reads little-endian fields with bounds checks.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn get<const N: usize>(&self, at: u64, what: &'static str) -> Result<[u8; N], ElfFault> {
        let short = ElfFault::Short {
            what,
            at,
            len: self.0.len() as u64,
        };
        let s = usize::try_from(at).map_err(|_| short.clone())?;
        self.0
            .get(s..s.checked_add(N).ok_or(short.clone())?)
            .and_then(|b| b.try_into().ok())
            .ok_or(short)
    }
    fn u16(&self, at: u64, what: &'static str) -> Result<u64, ElfFault> {
        Ok(u16::from_le_bytes(self.get(at, what)?).into())
    }
    fn u32(&self, at: u64, what: &'static str) -> Result<u32, ElfFault> {
        Ok(u32::from_le_bytes(self.get(at, what)?))
    }
    fn u64(&self, at: u64, what: &'static str) -> Result<u64, ElfFault> {
        Ok(u64::from_le_bytes(self.get(at, what)?))
    }
    /// The NUL-terminated string at `at`.
    fn cstr(&self, at: u64, end: u64) -> Result<String, ElfFault> {
        let short = ElfFault::Short {
            what: "a symbol name",
            at,
            len: self.0.len() as u64,
        };
        let (a, e) = (usize::try_from(at), usize::try_from(end));
        let (Ok(a), Ok(e)) = (a, e) else {
            return Err(short);
        };
        let s = self.0.get(a..e.min(self.0.len())).ok_or(short.clone())?;
        let n = s.iter().position(|&c| c == 0).ok_or(short)?;
        Ok(String::from_utf8_lossy(&s[..n]).into_owned())
    }
}

impl SymTable {
    /// The defined global or weak functions of the vDSO image `img`.
    pub fn parse(img: &[u8]) -> Result<SymTable, ElfFault> {
        let b = Bytes(img);
        if img.len() < 64 || &img[..4] != b"\x7fELF" || img[4] != 2 || img[5] != 1 {
            return Err(ElfFault::NotElf);
        }
        // Symbol values are link addresses: offsets from the first
        // loadable segment's.
        let (phoff, phentsize, phnum) = (
            b.u64(0x20, "e_phoff")?,
            b.u16(0x36, "e_phentsize")?,
            b.u16(0x38, "e_phnum")?,
        );
        let mut base = None;
        for i in 0..phnum {
            let ph = add(phoff, i.saturating_mul(phentsize));
            if b.u32(ph, "a program header")? == PT_LOAD {
                let vaddr = b.u64(add(ph, 16), "a program header")?;
                base = Some(base.map_or(vaddr, |v: u64| v.min(vaddr)));
            }
        }
        let base = base.ok_or(ElfFault::NoLoad)?;
        let (shoff, shentsize, shnum) = (
            b.u64(0x28, "e_shoff")?,
            b.u16(0x3a, "e_shentsize")?,
            b.u16(0x3c, "e_shnum")?,
        );
        let section = |i: u64| add(shoff, i.saturating_mul(shentsize));
        let mut dynsym = None;
        for i in 0..shnum {
            if b.u32(add(section(i), 4), "a section header")? == SHT_DYNSYM {
                dynsym = Some(section(i));
                break;
            }
        }
        let sh = dynsym.ok_or(ElfFault::NoDynsym)?;
        let (off, size) = (
            b.u64(add(sh, 24), "a section header")?,
            b.u64(add(sh, 32), "a section header")?,
        );
        let strs = section(b.u32(add(sh, 40), "a section header")?.into());
        let (str_off, str_size) = (
            b.u64(add(strs, 24), "a section header")?,
            b.u64(add(strs, 32), "a section header")?,
        );
        let mut syms = BTreeMap::new();
        for k in 0..size / SYM_SIZE {
            let s = add(off, k * SYM_SIZE);
            let name = b.u32(s, "a symbol")?;
            let info = b.get::<1>(add(s, 4), "a symbol")?[0];
            let shndx = b.u16(add(s, 6), "a symbol")?;
            let value = b.u64(add(s, 8), "a symbol")?;
            let (kind, bind) = (info & 0xf, info >> 4);
            if kind != STT_FUNC || !matches!(bind, STB_GLOBAL | STB_WEAK) || shndx == 0 {
                continue;
            }
            let name = b.cstr(add(str_off, name.into()), add(str_off, str_size))?;
            syms.insert(name, value.wrapping_sub(base));
        }
        Ok(SymTable { syms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernels_vdso_exports_clock_gettime() {
        let (_, img) = crate::sys::procfs::own_vdso().unwrap().unwrap();
        let t = SymTable::parse(&img).unwrap();
        let at = t.syms["__vdso_clock_gettime"];
        assert!(at > 0 && at < img.len() as u64, "{t:?}");
        // The libc name is an alias of the same entry.
        assert_eq!(t.syms.get("clock_gettime"), Some(&at));
    }

    #[test]
    fn cut_or_foreign_images_are_refused_without_panic() {
        let (_, img) = crate::sys::procfs::own_vdso().unwrap().unwrap();
        assert_eq!(SymTable::parse(b"not elf"), Err(ElfFault::NotElf));
        for len in [64, 200, img.len() / 2, img.len() - 1] {
            // Any answer but a panic; a cut image mostly fails.
            let _ = SymTable::parse(&img[..len]);
        }
        let mut bad = img.clone();
        bad[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(SymTable::parse(&bad), Err(ElfFault::Short { .. })));
    }

    proptest::proptest! {
        /// Any bytes of a real vDSO changed anywhere: an answer, never a
        /// panic (the dumped vDSO comes from images, which may be bad).
        #[test]
        fn changed_images_never_panic(
            changes in proptest::collection::vec(
                (proptest::prop_oneof![0usize..64, 0usize..8192], proptest::num::u8::ANY),
                1..16,
            )
        ) {
            let (_, mut img) = crate::sys::procfs::own_vdso().unwrap().unwrap();
            let len = img.len();
            for (at, b) in changes {
                img[at % len] = b;
            }
            let _ = SymTable::parse(&img);
        }
    }
}
