//! What crit knows of a file beyond its path: the ELF build id that CRIU
//! records to tell whether a file at restore is the one dumped, and the
//! check itself (size, mode, build id, as CRIU 4.2's validate_file).

use crate::image::pb;
use std::io::Read;

/// The GNU build id of an ELF file, as CRIU stores it (u32 words), read
/// from the notes of its first MiB; empty when there is none.
pub fn build_id(path: &str, size: u64) -> Vec<u32> {
    match std::fs::File::open(path) {
        Ok(mut f) => build_id_of(&mut f, size),
        Err(_) => Vec::new(),
    }
}

/// [`build_id`] of a file being read from its start.
pub fn build_id_of(f: &mut impl Read, size: u64) -> Vec<u32> {
    if size < 5 {
        return Vec::new();
    }
    let mut buf = vec![0u8; size.min(1 << 20) as usize];
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf.truncate(got);
    elf_build_id(&buf)
        .map(|b| {
            b.chunks(4)
                .map(|c| {
                    let mut w = [0u8; 4];
                    w[..c.len()].copy_from_slice(c);
                    u32::from_le_bytes(w)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn elf_build_id(b: &[u8]) -> Option<Vec<u8>> {
    if b.len() < 64 || &b[0..4] != b"\x7fELF" || b[4] != 2 {
        return None;
    }
    let rd16 = |o: usize| -> Option<u64> {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as u64)
    };
    let rd32 = |o: usize| -> Option<u64> {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64)
    };
    let rd64 = |o: usize| -> Option<u64> {
        b.get(o..o + 8)
            .map(|s| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
    };
    let phoff = rd64(32)? as usize;
    let phentsize = rd16(54)? as usize;
    let phnum = rd16(56)? as usize;
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if rd32(ph)? != 4 {
            continue; // PT_NOTE
        }
        let off = rd64(ph + 8)? as usize;
        let sz = rd64(ph + 32)? as usize;
        let end = off.checked_add(sz)?.min(b.len());
        let mut p = off;
        while p + 12 <= end {
            let namesz = rd32(p)? as usize;
            let descsz = rd32(p + 4)? as usize;
            let ty = rd32(p + 8)?;
            let name_at = p + 12;
            let desc_at = name_at + ((namesz + 3) & !3);
            let next = desc_at + ((descsz + 3) & !3);
            if ty == 3 && namesz == 4 && b.get(name_at..name_at + 4) == Some(b"GNU\0") {
                return b.get(desc_at..desc_at + descsz).map(|d| d.to_vec());
            }
            if next <= p {
                break;
            }
            p = next;
        }
    }
    None
}

/// How a file differs from the one the images recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    Size { now: u64, was: u64 },
    Mode { now: u32, was: u32 },
    BuildId,
}

impl std::fmt::Display for Changed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Changed::Size { now, was } => write!(f, "has size {now} but was {was} at dump"),
            Changed::Mode { now, was } => write!(f, "has mode {now:o} but was {was:o} at dump"),
            Changed::BuildId => {
                f.write_str("is another build (its ELF build id differs from the dump's)")
            }
        }
    }
}

/// Whether the open file `f` is the file `r` recorded: its size, its mode
/// and, for an ELF file whose build id was recorded, that build id.
pub fn check_unchanged(
    r: &pb::RegFileEntry,
    f: &std::fs::File,
) -> std::io::Result<Option<Changed>> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata()?;
    if let Some(was) = r.size {
        if m.is_file() && m.len() != was {
            return Ok(Some(Changed::Size { now: m.len(), was }));
        }
    }
    if let Some(was) = r.mode {
        if m.mode() != was {
            return Ok(Some(Changed::Mode { now: m.mode(), was }));
        }
    }
    if !r.build_id.is_empty() && m.is_file() {
        let mut rd = std::io::BufReader::new(f);
        std::io::Seek::seek(&mut rd, std::io::SeekFrom::Start(0))?;
        if build_id_of(&mut rd, m.len()) != r.build_id {
            return Ok(Some(Changed::BuildId));
        }
    }
    Ok(None)
}
