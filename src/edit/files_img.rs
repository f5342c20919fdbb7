//! `files.img` as it lies in the file (memory-mapped), read one entry at
//! a time. Nothing of an entry is kept but what the caller takes from it
//! and where it is; writing the file back copies every byte range that
//! did not change as it was, so fields crit's schema does not know, and
//! any encoding quirk, survive the edit.

use crate::error::{Error, Result};
use crate::image::entry::{write_entry, EntryReader};
use crate::image::pb;
use crate::image::typed::Mapped;
use prost::Message;
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The pages of the file read are given back every this many bytes.
const RELEASE_EVERY: u64 = 4 << 20;

/// Where one entry of `files.img` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At {
    /// Offset of the entry's length prefix in the file.
    pub offset: u64,
    /// Where its message bytes are (without the length prefix).
    pub message: Range<u64>,
    /// Offset of the byte after the entry.
    pub end: u64,
}

pub struct FilesImg {
    pub path: PathBuf,
    /// The path as printed in messages.
    pub name: String,
    file: Mapped,
}

/// A change to the file: `message` framed as an entry at byte `at` (an
/// entry's offset, or the file's end), in place of the bytes up to
/// `skip_to` (`at` itself for an insertion).
pub struct Splice<'a> {
    pub at: u64,
    pub skip_to: u64,
    pub message: &'a [u8],
}

impl FilesImg {
    /// Opens `path` and checks that it is a FILES image; the entries are
    /// read by [`FilesImg::for_each`].
    pub fn open(path: &Path) -> Result<FilesImg> {
        let file = Mapped::open(path)?;
        EntryReader::expect(&mut file.source(), "FILES")?;
        Ok(FilesImg {
            path: path.to_path_buf(),
            name: file.name.clone(),
            file,
        })
    }

    /// Calls `f` with where each entry is and the entry decoded, in file
    /// order. Every entry is decoded (and so checked) before the call
    /// returns Ok; the pages read are given back as it goes.
    pub fn for_each(&self, mut f: impl FnMut(At, pb::FileEntry) -> Result<()>) -> Result<()> {
        let mut src = self.file.source();
        let mut rd = EntryReader::expect(&mut src, "FILES")?;
        let mut released = 0u64;
        let r = loop {
            let Some(e) = rd.next_entry()? else {
                break Ok(());
            };
            let fe: pb::FileEntry = e.decode()?;
            let at = At {
                offset: e.offset,
                message: e.message_offset()..e.message_offset() + e.message.len() as u64,
                end: e.end(),
            };
            let end = at.end;
            if let Err(err) = f(at, fe) {
                break Err(err);
            }
            if end - released >= RELEASE_EVERY {
                self.file
                    .release(released as usize, (end - released) as usize);
                released = end;
            }
        };
        self.file.release(0, self.file.len());
        r
    }

    /// The message bytes of the entry at `at`, as they are in the file.
    pub fn message(&self, at: &At) -> &[u8] {
        self.file
            .bytes()
            .get(at.message.start as usize..at.message.end as usize)
            .unwrap_or_default()
    }

    /// The entry at `at` decoded.
    pub fn entry(&self, at: &At) -> Result<pb::FileEntry> {
        pb::FileEntry::decode(self.message(at)).map_err(|e| Error::Image {
            file: self.name.clone(),
            offset: at.offset,
            msg: format!("bad entry: {e}"),
        })
    }

    /// Writes the image again with `splices` (in file order; an insertion
    /// before the replacement of the same entry) and then the `tail`
    /// messages as entries at the end. Every byte not spliced is copied
    /// as it was, the magic and the entries' framing too.
    pub fn write(
        &self,
        out: &mut impl Write,
        splices: &[Splice],
        tail: &[&[u8]],
    ) -> io::Result<()> {
        let mut cursor = 0usize;
        for s in splices {
            self.file.write_range(out, cursor..s.at as usize)?;
            write_entry(out, s.message)?;
            cursor = cursor.max(s.skip_to as usize);
        }
        self.file.write_range(out, cursor..self.file.len())?;
        for m in tail {
            write_entry(out, m)?;
        }
        Ok(())
    }
}

/// prost's encoding of a message.
pub fn encode<T: Message>(m: &T) -> Vec<u8> {
    m.encode_to_vec()
}
