//! Where image bytes come from: a memory-mapped file, or a stream (stdin,
//! a pipe) read one entry at a time. Either way the entry reader
//! ([`super::entry`]) sees byte ranges and the offsets they start at, and
//! memory stays bounded by one entry.

use crate::error::{Error, Result};
use std::io::Read;
use std::ops::Range;

pub struct Source<'a> {
    /// Name used in error messages.
    pub name: String,
    kind: Kind<'a>,
    /// Offset of the next unread byte.
    pos: u64,
}

enum Kind<'a> {
    Slice(&'a [u8]),
    Stream {
        r: Box<dyn Read + 'a>,
        /// The bytes of the current entry, from [`Source::clear`] on.
        buf: Vec<u8>,
        eof: bool,
    },
}

/// Bytes read per step from a stream, so that a huge length prefix cannot
/// make us allocate before the data is really there.
const STEP: usize = 1 << 20;

impl<'a> Source<'a> {
    pub fn from_slice(name: impl Into<String>, data: &'a [u8]) -> Self {
        Source {
            name: name.into(),
            kind: Kind::Slice(data),
            pos: 0,
        }
    }

    pub fn from_reader(name: impl Into<String>, r: impl Read + 'a) -> Self {
        Source {
            name: name.into(),
            kind: Kind::Stream {
                r: Box::new(r),
                buf: Vec::new(),
                eof: false,
            },
            pos: 0,
        }
    }

    /// Offset of the next unread byte.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn err(&self, offset: u64, msg: impl Into<String>) -> Error {
        Error::Image {
            file: self.name.clone(),
            offset,
            msg: msg.into(),
        }
    }

    /// Forgets the bytes read so far: a stream keeps only those of the
    /// entry being read. Ranges returned before are no longer valid.
    pub(super) fn clear(&mut self) {
        if let Kind::Stream { buf, .. } = &mut self.kind {
            buf.clear();
        }
    }

    /// Reads up to `n` bytes, fewer only at the end of the input, and
    /// returns where they are for [`Source::get`].
    pub(super) fn read(&mut self, n: usize) -> Result<Range<usize>> {
        match &mut self.kind {
            Kind::Slice(data) => {
                let start = (self.pos as usize).min(data.len());
                let end = start + n.min(data.len() - start);
                self.pos = end as u64;
                Ok(start..end)
            }
            Kind::Stream { r, buf, eof } => {
                let start = buf.len();
                while buf.len() - start < n && !*eof {
                    let want = (n - (buf.len() - start)).min(STEP);
                    let old = buf.len();
                    buf.resize(old + want, 0);
                    let got = loop {
                        match r.read(&mut buf[old..]) {
                            Ok(k) => break k,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(source) => {
                                return Err(Error::FileOp {
                                    path: self.name.clone().into(),
                                    what: "read",
                                    source,
                                })
                            }
                        }
                    };
                    buf.truncate(old + got);
                    if got == 0 {
                        *eof = true;
                    }
                }
                self.pos += (buf.len() - start) as u64;
                Ok(start..buf.len())
            }
        }
    }

    /// The bytes of a range returned by [`Source::read`] since the last
    /// [`Source::clear`].
    pub(super) fn get(&self, r: Range<usize>) -> &[u8] {
        let all: &[u8] = match &self.kind {
            Kind::Slice(data) => data,
            Kind::Stream { buf, .. } => buf,
        };
        all.get(r).unwrap_or_default()
    }
}
