//! Where image bytes come from: a memory-mapped file, or a stream (stdin,
//! a pipe) read one entry at a time. Either way callers see slices and the
//! byte offset they start at, and memory stays bounded by one entry.

use crate::error::{Error, Result};
use std::io::Read;

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

    /// Reads up to `n` bytes; fewer only at the end of the input.
    fn read_upto(&mut self, n: usize) -> Result<&[u8]> {
        match &mut self.kind {
            Kind::Slice(data) => {
                let start = self.pos.min(data.len() as u64) as usize;
                let end = start + n.min(data.len() - start);
                self.pos = end as u64;
                Ok(&data[start..end])
            }
            Kind::Stream { r, buf, eof } => {
                buf.clear();
                while buf.len() < n && !*eof {
                    let want = (n - buf.len()).min(STEP);
                    let old = buf.len();
                    buf.resize(old + want, 0);
                    let got = loop {
                        match r.read(&mut buf[old..]) {
                            Ok(k) => break k,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(Error::io(format!("{}: read", self.name), e)),
                        }
                    };
                    buf.truncate(old + got);
                    if got == 0 {
                        *eof = true;
                    }
                }
                self.pos += buf.len() as u64;
                Ok(&buf[..])
            }
        }
    }

    /// Exactly `n` bytes; `what` names them in the error if the input ends.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let start = self.pos;
        let name = self.name.clone();
        let got = self.read_upto(n)?;
        if got.len() < n {
            return Err(Error::Image {
                file: name,
                offset: start,
                msg: format!("truncated {what}: needs {n} bytes, only {} left", got.len()),
            });
        }
        Ok(got)
    }

    /// Exactly `n` bytes, or how many were left if the input ends first.
    pub fn take_short(&mut self, n: usize) -> Result<std::result::Result<&[u8], usize>> {
        // A slice knows up front whether the bytes are there.
        if let Kind::Slice(data) = &self.kind {
            let left = (data.len() as u64).saturating_sub(self.pos) as usize;
            if left < n {
                self.pos = data.len() as u64;
                return Ok(Err(left));
            }
        }
        let got = self.read_upto(n)?;
        if got.len() < n {
            return Ok(Err(got.len()));
        }
        Ok(Ok(got))
    }

    /// A little-endian u32, or `None` at a clean end of input.
    pub fn u32_or_eof(&mut self, what: &str) -> Result<Option<u32>> {
        let start = self.pos;
        let name = self.name.clone();
        let got = self.read_upto(4)?;
        match got.len() {
            0 => Ok(None),
            4 => Ok(Some(u32::from_le_bytes([got[0], got[1], got[2], got[3]]))),
            k => Err(Error::Image {
                file: name,
                offset: start,
                msg: format!("truncated {what}: {k} of 4 bytes"),
            }),
        }
    }

    /// Everything that is left.
    pub fn rest(&mut self) -> Result<&[u8]> {
        self.read_upto(usize::MAX)
    }
}
