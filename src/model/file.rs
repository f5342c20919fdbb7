//! What crit knows of a file beyond its path: the ELF build id that CRIU
//! records to tell whether a file at restore is the one dumped, and the
//! check itself (size, mode, build id, as CRIU 4.2's validate_file); and
//! what crit's images add to CRIU's file entries.

use crate::image::pb;

/// Bit 0 of an eventfd entry's flags, in crit's images: the eventfd is
/// EFD_SEMAPHORE, for which CRIU's image has no field. An eventfd's own
/// flags are O_RDWR, so the bit is otherwise clear, and CRIU's restore
/// ignores it (F_SETFL drops the access mode): such an image restores
/// under CRIU as it always did, without the flag.
pub const EFD_SEMAPHORE_MARK: u32 = 1;

/// The GNU build id of an ELF file, as CRIU stores it (u32 words), read
/// from the notes of its first MiB (CRIU maps no more); empty when there
/// is none.
pub fn build_id(path: &str, size: u64) -> Vec<u32> {
    match std::fs::File::open(path) {
        Ok(f) => build_id_at(&f, size),
        Err(_) => Vec::new(),
    }
}

/// [`build_id`] of an open file of `size` bytes. Only the pages that
/// hold the headers and the notes are read (usually the first one), with
/// positioned reads: the file's offset does not move. Reading the whole
/// first MiB cost a small dump about a millisecond per library.
pub fn build_id_at(f: &std::fs::File, size: u64) -> Vec<u32> {
    if size < 5 {
        return Vec::new();
    }
    let mut pages = Pages {
        file: f,
        limit: size.min(1 << 20),
        got: Vec::new(),
    };
    elf_build_id(&mut pages)
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

/// The first `limit` bytes of a file, read a 4 KiB page at a time as
/// they are asked for.
struct Pages<'a> {
    file: &'a std::fs::File,
    limit: u64,
    /// (page number, its bytes: fewer than 4 KiB at the limit or end).
    got: Vec<(u64, Vec<u8>)>,
}

impl Pages<'_> {
    const PAGE: u64 = 4096;

    /// `len` bytes at `off`; None if any lies past the limit or the file.
    fn get(&mut self, off: u64, len: usize) -> Option<Vec<u8>> {
        let end = off.checked_add(len as u64)?;
        if end > self.limit {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        let mut at = off;
        while at < end {
            let page = self.page(at / Self::PAGE)?;
            let from = (at % Self::PAGE) as usize;
            let upto = ((end - at) as usize + from).min(page.len());
            if upto <= from {
                return None;
            }
            out.extend_from_slice(&page[from..upto]);
            at += (upto - from) as u64;
        }
        Some(out)
    }

    fn page(&mut self, n: u64) -> Option<&[u8]> {
        use std::os::unix::fs::FileExt;
        let k = match self.got.iter().position(|(p, _)| *p == n) {
            Some(k) => k,
            None => {
                let start = n * Self::PAGE;
                let want = (self.limit - start).min(Self::PAGE) as usize;
                let mut buf = vec![0u8; want];
                let mut done = 0;
                while done < want {
                    match self.file.read_at(&mut buf[done..], start + done as u64) {
                        Ok(0) | Err(_) => break,
                        Ok(r) => done += r,
                    }
                }
                buf.truncate(done);
                self.got.push((n, buf));
                self.got.len() - 1
            }
        };
        Some(&self.got[k].1)
    }
}

fn elf_build_id(b: &mut Pages) -> Option<Vec<u8>> {
    let head = b.get(0, 64)?;
    if &head[0..4] != b"\x7fELF" || head[4] != 2 {
        return None;
    }
    let u16_at = |s: &[u8], o: usize| u16::from_le_bytes([s[o], s[o + 1]]) as u64;
    let phoff = u64::from_le_bytes(head[32..40].try_into().ok()?);
    let phentsize = u16_at(&head, 54);
    let phnum = u16_at(&head, 56);
    let mut notes = Vec::new();
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if b.get(ph, 4)? != 4u32.to_le_bytes() {
            continue; // not PT_NOTE
        }
        // p_offset at 8, p_filesz at 32.
        let s = b.get(ph + 8, 32)?;
        let off = u64::from_le_bytes(s[0..8].try_into().ok()?);
        let sz = u64::from_le_bytes(s[24..32].try_into().ok()?);
        notes.push((off, sz));
    }
    for (off, sz) in notes {
        let end = off.checked_add(sz)?.min(b.limit);
        let mut p = off;
        while p + 12 <= end {
            let s = b.get(p, 12)?;
            let word = |o: usize| u32::from_le_bytes([s[o], s[o + 1], s[o + 2], s[o + 3]]) as u64;
            let (namesz, descsz, ty) = (word(0), word(4), word(8));
            let name_at = p + 12;
            let desc_at = name_at.checked_add((namesz + 3) & !3)?;
            let next = desc_at.checked_add((descsz + 3) & !3)?;
            if ty == 3 && namesz == 4 && b.get(name_at, 4).as_deref() == Some(b"GNU\0") {
                return b.get(desc_at, descsz as usize);
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
    if !r.build_id.is_empty() && m.is_file() && build_id_at(f, m.len()) != r.build_id {
        return Ok(Some(Changed::BuildId));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const ID: [u8; 20] = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
    ];

    /// An ELF64 file of `size` bytes with a PT_LOAD and a PT_NOTE at
    /// `note_at`: first a note of another owner, then the GNU build id.
    fn elf(size: usize, note_at: usize) -> tempfile::NamedTempFile {
        let mut b = vec![0u8; size.max(note_at + 64)];
        b[0..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        b[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        let mut notes = Vec::new();
        for (name, ty, desc) in [(&b"Go\0\0"[..], 4u32, &[9u8; 8][..]), (b"GNU\0", 3, &ID)] {
            notes.extend_from_slice(&(name.len() as u32).to_le_bytes());
            notes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            notes.extend_from_slice(&ty.to_le_bytes());
            notes.extend_from_slice(name);
            notes.extend_from_slice(desc);
        }
        let ph = 64 + 56;
        b[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
        b[ph + 8..ph + 16].copy_from_slice(&(note_at as u64).to_le_bytes());
        b[ph + 32..ph + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        b[note_at..note_at + notes.len()].copy_from_slice(&notes);
        b.truncate(size);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&b).unwrap();
        f
    }

    fn id_of(f: &tempfile::NamedTempFile) -> Vec<u32> {
        build_id(
            f.path().to_str().unwrap(),
            f.as_file().metadata().unwrap().len(),
        )
    }

    fn words() -> Vec<u32> {
        ID.chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn the_gnu_note_is_found_after_another() {
        assert_eq!(id_of(&elf(8192, 0x200)), words());
    }

    #[test]
    fn a_note_across_two_pages_is_read_whole() {
        assert_eq!(id_of(&elf(3 << 12, 4096 - 30)), words());
    }

    #[test]
    fn notes_past_the_first_mib_are_not_read_as_criu_does() {
        assert_eq!(id_of(&elf(2 << 20, 1 << 20)), Vec::<u32>::new());
        assert_eq!(id_of(&elf(2 << 20, (1 << 20) - 40)), Vec::<u32>::new());
        assert_eq!(id_of(&elf(2 << 20, (1 << 20) - 4096)), words());
    }

    #[test]
    fn a_file_cut_short_has_none() {
        assert_eq!(id_of(&elf(0x200 + 30, 0x200)), Vec::<u32>::new());
        assert_eq!(id_of(&elf(100, 0x200)), Vec::<u32>::new());
    }

    #[test]
    fn the_check_leaves_the_file_offset_alone() {
        use std::io::{Seek, SeekFrom};
        let f = elf(8192, 0x200);
        let mut file = f.reopen().unwrap();
        file.seek(SeekFrom::Start(77)).unwrap();
        assert_eq!(build_id_at(&file, 8192), words());
        assert_eq!(file.stream_position().unwrap(), 77);
    }
}
