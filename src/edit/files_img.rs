//! `files.img` kept as it was read: the header bytes and every entry's
//! message bytes, next to the entry decoded by prost. Writing it back
//! copies every entry that did not change verbatim, so fields crit's
//! schema does not know, and any encoding quirk, survive the edit.

use crate::error::Result;
use crate::image::entry::{write_entry, EntryReader};
use crate::image::pb;
use crate::image::typed::Mapped;
use prost::Message;
use std::path::{Path, PathBuf};

/// One entry of `files.img`.
pub struct Entry {
    /// Offset of the entry's length prefix in the file.
    pub offset: u64,
    /// The message bytes exactly as they were (without the length prefix).
    pub raw: Vec<u8>,
    /// The same bytes decoded.
    pub fe: pb::FileEntry,
}

pub struct FilesImg {
    pub path: PathBuf,
    /// The path as printed in messages.
    pub name: String,
    /// Magic bytes, copied as they were.
    pub header: Vec<u8>,
    pub entries: Vec<Entry>,
}

impl FilesImg {
    pub fn read(path: &Path) -> Result<FilesImg> {
        let file = Mapped::open(path)?;
        let name = file.name.clone();
        let mut src = file.source();
        let mut rd = EntryReader::expect(&mut src, "FILES")?;
        let header = file
            .bytes()
            .get(..rd.pos() as usize)
            .unwrap_or_default()
            .to_vec();
        let mut entries = Vec::new();
        while let Some(e) = rd.next_entry()? {
            let fe: pb::FileEntry = e.decode()?;
            entries.push(Entry {
                offset: e.offset,
                raw: e.message.to_vec(),
                fe,
            });
        }
        Ok(FilesImg {
            path: path.to_path_buf(),
            name,
            header,
            entries,
        })
    }

    /// The image again: header, then each entry framed with its length.
    /// `replace[i]`, when set, stands for entry `i`'s message bytes; the
    /// others are copied as read. Each `added` message (an external
    /// socket entry) goes right before the first entry whose unix peer it
    /// is: CRIU resolves a socket's peer among the entries read before it,
    /// and an external entry never points back, so it must come first
    /// (CRIU's own dump writes it in that order). Added entries nothing
    /// points to come last.
    pub fn assemble(&self, replace: &[Option<Vec<u8>>], added: &[Vec<u8>]) -> Vec<u8> {
        let ino_of = |b: &[u8]| {
            pb::FileEntry::decode(b)
                .ok()
                .and_then(|f| f.usk)
                .map(|u| (u.ino, u.peer))
        };
        let added_ino: Vec<Option<u32>> = added.iter().map(|b| ino_of(b).map(|x| x.0)).collect();
        let mut placed = vec![false; added.len()];
        let mut out = self.header.clone();
        for (i, e) in self.entries.iter().enumerate() {
            let bytes: &[u8] = match replace.get(i) {
                Some(Some(bytes)) => bytes,
                _ => &e.raw,
            };
            if let Some((_, peer)) = ino_of(bytes).filter(|x| x.1 != 0) {
                for (k, a) in added.iter().enumerate() {
                    if !placed[k] && added_ino[k] == Some(peer) {
                        frame(&mut out, a);
                        placed[k] = true;
                    }
                }
            }
            frame(&mut out, bytes);
        }
        for (k, bytes) in added.iter().enumerate() {
            if !placed[k] {
                frame(&mut out, bytes);
            }
        }
        out
    }
}

/// Appends a framed entry.
fn frame(out: &mut Vec<u8>, msg: &[u8]) {
    // Writing to a Vec cannot fail.
    let _ = write_entry(out, msg);
}

/// prost's encoding of a message.
pub fn encode<T: Message>(m: &T) -> Vec<u8> {
    m.encode_to_vec()
}
