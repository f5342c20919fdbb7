//! Entry framing. A CRIU image is its magic(s), then entries: each a
//! little-endian u32 length and a protobuf message, and in some images raw
//! bytes after the message (a payload) whose length comes from fields of
//! the message. This is the one place that reads and writes that framing:
//! readers get whole, checked entries from [`EntryReader`]; writers frame
//! them with [`write_header`], [`write_entry`] and [`write_payload`].

use super::magic::{self, Header, Layout, Magic, IMG_COMMON, IMG_SERVICE};
use super::pb;
use super::schema::{msg, MESSAGES};
use super::source::Source;
use super::wire::Fields;
use crate::error::{Error, Result};
use prost::Message;
use std::io::{self, Write};
use std::ops::Range;

/// CRIU (criu/ipc_ns.c) rounds a shared memory segment up to 4 bytes, and
/// semaphore values and each queued message's body up to 8.
const SHM_ALIGN: u64 = 4;
const SEM_ALIGN: u64 = 8;
const MSG_ALIGN: u64 = 8;

/// Zero bytes after `len` bytes aligned to `align`. (No overflow, unlike
/// rounding up, for a length near `u64::MAX` in a crafted image.)
fn padding(len: u64, align: u64) -> u64 {
    (align - len % align) % align
}

/// A little-endian u32, or `None` at a clean end of input.
fn u32_or_eof(src: &mut Source, what: &str) -> Result<Option<u32>> {
    let at = src.pos();
    let r = src.read(4)?;
    let got = src.get(r);
    match *got {
        [] => Ok(None),
        [a, b, c, d] => Ok(Some(u32::from_le_bytes([a, b, c, d]))),
        _ => Err(src.err(at, format!("truncated {what}: {} of 4 bytes", got.len()))),
    }
}

/// Reads the leading magic(s) and finds the image type.
pub fn read_magic(src: &mut Source) -> Result<&'static Magic> {
    src.clear();
    let Some(mut v) = u32_or_eof(src, "magic")? else {
        return Err(src.err(0, "empty file: no magic"));
    };
    let header = match v {
        IMG_COMMON => Header::Common,
        IMG_SERVICE => Header::Service,
        _ => Header::Bare,
    };
    if header != Header::Bare {
        v = u32_or_eof(src, "magic")?
            .ok_or_else(|| src.err(4, "truncated magic: the file ends after the common magic"))?;
    }
    let m = magic::by_value(v).ok_or_else(|| {
        let at = src.pos() - 4;
        src.err(
            at,
            format!("unknown magic {v:#x}: not a CRIU image (raw data such as pages-*.img has no magic)"),
        )
    })?;
    // As CRIU's loader: each image type has one first magic (writing it
    // back would otherwise change the file).
    if m.header != header {
        let name = |h: Header, own: &'static str| match h {
            Header::Bare => own,
            Header::Common => "the common magic",
            Header::Service => "the service magic",
        };
        return Err(src.err(
            0,
            format!(
                "{} starts with {}; {} images start with {}",
                m.name,
                name(header, "its own magic"),
                m.name,
                name(m.header, "their own magic")
            ),
        ));
    }
    Ok(m)
}

/// Which message entry `index` (from 0) of a `layout` image holds (an
/// index into `schema::MESSAGES`).
pub fn message_of(layout: Layout, index: u64) -> usize {
    match layout {
        Layout::Entries(m, _) => m,
        Layout::Pagemap if index == 0 => msg::PAGEMAP_HEAD,
        Layout::Pagemap => msg::PAGEMAP_ENTRY,
        Layout::GhostFile if index == 0 => msg::GHOST_FILE_ENTRY,
        Layout::GhostFile => msg::GHOST_CHUNK_ENTRY,
    }
}

/// One entry as it lies in the image, its lengths checked.
pub struct Entry<'e> {
    /// The image's name, for error messages.
    pub file: &'e str,
    /// Offset of the entry's length prefix in the file.
    pub offset: u64,
    /// Which message it holds (an index into `schema::MESSAGES`).
    pub msg: usize,
    /// The message bytes, without the length prefix.
    pub message: &'e [u8],
    /// What follows the message, cut into its parts, padding left out.
    pub payload: Payload<'e>,
    /// Every byte between this entry's message and the next entry
    /// (payload and padding), as it was.
    pub raw_payload: &'e [u8],
}

impl Entry<'_> {
    /// Offset of the message in the file.
    pub fn message_offset(&self) -> u64 {
        self.offset + 4
    }

    /// Offset of the byte after the entry (its message, payload and
    /// padding): where the next entry starts.
    pub fn end(&self) -> u64 {
        self.message_offset() + (self.message.len() + self.raw_payload.len()) as u64
    }

    /// The message decoded as `T`, with every required field there (as
    /// CRIU reads it); an error names the file and the entry.
    pub fn decode<T: Message + Default>(&self) -> Result<T> {
        let m = T::decode(self.message).map_err(|e| Error::Image {
            file: self.file.to_string(),
            offset: self.offset,
            msg: format!("bad entry: {e}"),
        })?;
        match super::schema::lacks_required(self.msg, self.message) {
            None => Ok(m),
            Some((at, what)) => Err(Error::Image {
                file: self.file.to_string(),
                offset: self.message_offset() + at as u64,
                msg: what,
            }),
        }
    }
}

/// The raw bytes after an entry's message, by image type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'e> {
    /// Nothing follows (most images; a chunked ghost file's head).
    None,
    /// Plain bytes: pipe or fifo data, a queued packet, a bpf map's keys
    /// then values, a ghost file's contents or one chunk of them.
    Bytes(&'e [u8]),
    /// A shared memory segment (`size` bytes, padded to 4 in the file).
    Shm(&'e [u8]),
    /// A TCP connection's input then output queue.
    Tcp { inq: &'e [u8], outq: &'e [u8] },
    /// `nsems` little-endian u16 semaphore values (padded to 8).
    Sem(&'e [u8]),
    /// The messages queued on a System V queue.
    Msgs(IpcMsgs<'e>),
}

/// The framed `ipc_msg`s after an `ipc_msg_entry`, each followed by its
/// body padded to 8. Iterating gives them in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpcMsgs<'e> {
    bytes: &'e [u8],
    /// Offset of `bytes` in the file.
    offset: u64,
}

/// One queued System V message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuedMsg<'e> {
    /// Offset of its `ipc_msg` header (after the length prefix) in the file.
    pub header_offset: u64,
    /// The `ipc_msg` message bytes.
    pub header: &'e [u8],
    /// `msize` bytes of message text.
    pub body: &'e [u8],
}

impl<'e> Iterator for IpcMsgs<'e> {
    type Item = QueuedMsg<'e>;

    fn next(&mut self) -> Option<QueuedMsg<'e>> {
        // The reader checked every length when it read the entry, so
        // nothing here can fall short; `get` only keeps that panic-free.
        let b = self.bytes;
        let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let header = b.get(4..4 + len)?;
        let msize = pb::IpcMsg::decode(header).ok()?.msize as usize;
        let body = b.get(4 + len..4 + len + msize)?;
        let used = 4 + len + msize + padding(msize as u64, MSG_ALIGN) as usize;
        let m = QueuedMsg {
            header_offset: self.offset + 4,
            header,
            body,
        };
        self.bytes = b.get(used..).unwrap_or_default();
        self.offset += used as u64;
        Some(m)
    }
}

/// Where the parts of a payload are in the source, before they are
/// resolved to slices (a stream's buffer may move while they are read).
enum Spans {
    None,
    Bytes(Range<usize>),
    Shm(Range<usize>),
    Tcp(Range<usize>, Range<usize>),
    Sem(Range<usize>),
    Msgs(Range<usize>, u64),
}

/// What follows an entry's message.
#[derive(Clone, Copy)]
enum Follows {
    Layout(magic::Payload),
    GhostHead,
    GhostChunk,
}

/// Reads an image entry by entry, from a memory-mapped file without
/// copying or from a stream holding one entry at a time. Every length is
/// checked once, here: a negative, truncated or missing one is an error
/// naming the file and the byte offset.
pub struct EntryReader<'s, 'a> {
    src: &'s mut Source<'a>,
    magic: &'static Magic,
    /// Entries read so far.
    count: u64,
}

impl<'s, 'a> EntryReader<'s, 'a> {
    /// Reads the magic of `src`; the entries follow.
    pub fn new(src: &'s mut Source<'a>) -> Result<Self> {
        let magic = read_magic(src)?;
        Ok(EntryReader {
            src,
            magic,
            count: 0,
        })
    }

    /// Like [`EntryReader::new`], for an image that must be a `want` image
    /// (crit's magic name, e.g. `"FILES"`).
    pub fn expect(src: &'s mut Source<'a>, want: &str) -> Result<Self> {
        let r = Self::new(src)?;
        if r.magic.name != want {
            let found = r.magic.name;
            return Err(r
                .src
                .err(0, format!("expected a {want} image, found {found}")));
        }
        Ok(r)
    }

    pub fn magic(&self) -> &'static Magic {
        self.magic
    }

    /// Offset of the next unread byte.
    pub fn pos(&self) -> u64 {
        self.src.pos()
    }

    /// The image's name, for error messages.
    pub fn name(&self) -> &str {
        &self.src.name
    }

    /// The next entry with its payload, or `None` at the end of the image.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'_>>> {
        self.src.clear();
        let (msg, what, follows) = self.slot();
        let Some((offset, message)) = self.frame(what)? else {
            return Ok(None);
        };
        let after = message.end;
        let start = self.src.pos();
        let spans = self.payload(follows, offset + 4, message.clone(), msg)?;
        self.count += 1;
        let raw_end = after + (self.src.pos() - start) as usize;
        let src = &*self.src;
        let payload = match spans {
            Spans::None => Payload::None,
            Spans::Bytes(r) => Payload::Bytes(src.get(r)),
            Spans::Shm(r) => Payload::Shm(src.get(r)),
            Spans::Tcp(i, o) => Payload::Tcp {
                inq: src.get(i),
                outq: src.get(o),
            },
            Spans::Sem(r) => Payload::Sem(src.get(r)),
            Spans::Msgs(r, offset) => Payload::Msgs(IpcMsgs {
                bytes: src.get(r),
                offset,
            }),
        };
        Ok(Some(Entry {
            file: &src.name,
            offset,
            msg,
            message: src.get(message),
            payload,
            raw_payload: src.get(after..raw_end),
        }))
    }

    /// The message the next entry holds, what to call it in errors, and
    /// what follows it.
    fn slot(&self) -> (usize, &'static str, Follows) {
        let m = message_of(self.magic.layout, self.count);
        match self.magic.layout {
            Layout::Entries(_, p) => (m, "entry", Follows::Layout(p)),
            Layout::Pagemap => (m, "entry", Follows::Layout(magic::Payload::None)),
            Layout::GhostFile if self.count == 0 => (m, "ghost file entry", Follows::GhostHead),
            Layout::GhostFile => (m, "ghost chunk", Follows::GhostChunk),
        }
    }

    /// A length prefix and the message after it: the prefix's offset and
    /// where the message is, or `None` at a clean end of input.
    fn frame(&mut self, what: &str) -> Result<Option<(u64, Range<usize>)>> {
        let at = self.src.pos();
        let Some(size) = u32_or_eof(self.src, "length prefix")? else {
            return Ok(None);
        };
        // No protobuf message is 2 GiB or more: shown as the negative
        // int such a prefix reads as.
        if size > i32::MAX as u32 {
            let msg = format!("{what} has a negative length ({})", size as i32);
            return Err(self.src.err(at, msg));
        }
        let r = self.src.read(size as usize)?;
        if r.len() < size as usize {
            let msg = format!("{what} claims {size} bytes but only {} are left", r.len());
            return Err(self.src.err(at, msg));
        }
        Ok(Some((at, r)))
    }

    /// Exactly `n` bytes of payload; `what` names them if the input ends.
    fn piece(&mut self, n: u64, what: &str) -> Result<Range<usize>> {
        let at = self.src.pos();
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let r = self.src.read(n)?;
        if r.len() < n {
            let msg = format!("truncated {what}: needs {n} bytes, only {} left", r.len());
            return Err(self.src.err(at, msg));
        }
        Ok(r)
    }

    /// The message at `r` (at offset `at`), message `m` of the schema,
    /// decoded for its `lengths` fields, which must be there: without them
    /// where the payload ends is unknown.
    fn header<T: Message + Default>(
        &self,
        at: u64,
        r: Range<usize>,
        m: usize,
        lengths: &[&str],
    ) -> Result<T> {
        let b = self.src.get(r);
        let v = T::decode(b).map_err(|e| {
            // A fault in the wire format is named as `crit decode` names it
            // in entries without payload: what and where in the message.
            match Fields::new(b).find_map(|f| f.err()) {
                Some(w) => self.src.err(at + w.offset as u64, w.reason),
                None => self.src.err(at, format!("bad entry: {e}")),
            }
        })?;
        self.require(at, b, m, lengths)?;
        Ok(v)
    }

    /// Like [`Self::header`], for a ghost file's messages, whose faults
    /// crit has always named by prost's reason alone.
    fn ghost_header<T: Message + Default>(
        &self,
        at: u64,
        r: Range<usize>,
        m: usize,
        lengths: &[&str],
    ) -> Result<T> {
        let b = self.src.get(r);
        let v = T::decode(b).map_err(|e| self.src.err(at, format!("bad entry: {e}")))?;
        self.require(at, b, m, lengths)?;
        Ok(v)
    }

    /// Refuses message `b` (at `at`, message `m`) if a field named in
    /// `lengths` is absent. prost reads an absent required field as 0,
    /// which would take the payload for the next entry.
    fn require(&self, at: u64, b: &[u8], m: usize, lengths: &[&str]) -> Result<()> {
        let desc = &MESSAGES[m];
        for &name in lengths {
            let number = desc
                .fields
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.number);
            if !Fields::new(b).any(|f| f.is_ok_and(|f| Some(f.number) == number)) {
                let short = desc.name.strip_prefix("criu.").unwrap_or(desc.name);
                let msg = format!("{short} has no {name}, so where its payload ends is unknown");
                return Err(self.src.err(at, msg));
            }
        }
        Ok(())
    }

    /// `n` plain payload bytes.
    fn bytes(&mut self, n: u64) -> Result<Spans> {
        Ok(Spans::Bytes(self.piece(n, "payload")?))
    }

    /// Reads what follows message `m` read at `r` (at offset `at`).
    fn payload(&mut self, follows: Follows, at: u64, r: Range<usize>, m: usize) -> Result<Spans> {
        use magic::Payload as P;
        match follows {
            Follows::Layout(P::None) => Ok(Spans::None),
            Follows::Layout(P::PipeData) => {
                let e: pb::PipeDataEntry = self.header(at, r, m, &["bytes"])?;
                self.bytes(u64::from(e.bytes))
            }
            Follows::Layout(P::SkQueue) => {
                let e: pb::SkPacketEntry = self.header(at, r, m, &["length"])?;
                self.bytes(u64::from(e.length))
            }
            Follows::Layout(P::BpfMap) => {
                let lengths = ["keys_bytes", "values_bytes"];
                let e: pb::BpfmapDataEntry = self.header(at, r, m, &lengths)?;
                self.bytes(u64::from(e.keys_bytes) + u64::from(e.values_bytes))
            }
            Follows::Layout(P::IpcShm) => {
                let e: pb::IpcShmEntry = self.header(at, r, m, &["size"])?;
                // CRIU 4 puts the contents in pagemap-shmem-SHMID.img.
                if e.in_pagemaps == Some(true) {
                    return Ok(Spans::None);
                }
                let size = e.size;
                let d = self.piece(size, "payload")?;
                self.piece(padding(size, SHM_ALIGN), "payload padding")?;
                Ok(Spans::Shm(d))
            }
            Follows::Layout(P::TcpStream) => {
                let lengths = ["inq_len", "outq_len"];
                let t: pb::TcpStreamEntry = self.header(at, r, m, &lengths)?;
                let inq = self.piece(u64::from(t.inq_len), "tcp input queue")?;
                let outq = self.piece(u64::from(t.outq_len), "tcp output queue")?;
                Ok(Spans::Tcp(inq, outq))
            }
            Follows::Layout(P::IpcSem) => {
                let e: pb::IpcSemEntry = self.header(at, r, m, &["nsems"])?;
                let size = u64::from(e.nsems) * 2;
                let d = self.piece(size, "semaphore values")?;
                self.piece(padding(size, SEM_ALIGN), "semaphore padding")?;
                Ok(Spans::Sem(d))
            }
            Follows::Layout(P::IpcMsg) => {
                let qnum = self.header::<pb::IpcMsgEntry>(at, r, m, &["qnum"])?.qnum;
                self.ipc_msgs(qnum)
            }
            Follows::GhostHead => {
                let g: pb::GhostFileEntry = self.ghost_header(at, r, m, &[])?;
                if g.chunks.unwrap_or(false) {
                    return Ok(Spans::None);
                }
                // The file's contents: everything after the head.
                Ok(Spans::Bytes(self.src.read(usize::MAX)?))
            }
            Follows::GhostChunk => {
                let c: pb::GhostChunkEntry = self.ghost_header(at, r, m, &["len"])?;
                Ok(Spans::Bytes(self.piece(c.len, "ghost chunk data")?))
            }
        }
    }

    /// Up to `qnum` queued messages. An image that ends before them all
    /// ends the list (crit has always read it so).
    fn ipc_msgs(&mut self, qnum: u32) -> Result<Spans> {
        let offset = self.src.pos();
        let start = self.src.read(0)?.start;
        for _ in 0..qnum {
            let Some((at, r)) = self.frame("message header")? else {
                break;
            };
            let h: pb::IpcMsg = self.header(at + 4, r, msg::IPC_MSG, &["msize"])?;
            let msize = u64::from(h.msize);
            self.piece(msize, "message body")?;
            self.piece(padding(msize, MSG_ALIGN), "message padding")?;
        }
        let end = start + (self.src.pos() - offset) as usize;
        Ok(Spans::Msgs(start..end, offset))
    }
}

/// Writes the magic(s) that start an `mg` image.
pub fn write_header(out: &mut impl Write, mg: &Magic) -> io::Result<()> {
    match mg.header {
        Header::Bare => {}
        Header::Common => out.write_all(&IMG_COMMON.to_le_bytes())?,
        Header::Service => out.write_all(&IMG_SERVICE.to_le_bytes())?,
    }
    out.write_all(&mg.value.to_le_bytes())
}

/// Writes one entry's message with its length in front, as CRIU's
/// `pb_write_one` does.
pub fn write_entry(out: &mut impl Write, message: &[u8]) -> io::Result<()> {
    out.write_all(&(message.len() as u32).to_le_bytes())?;
    out.write_all(message)
}

/// Appends `m` as an entry, encoded in place rather than copied.
pub fn put_message(out: &mut Vec<u8>, m: &impl Message) {
    out.extend_from_slice(&(m.encoded_len() as u32).to_le_bytes());
    // Encoding into a Vec cannot run out of space.
    let _ = m.encode(out);
}

/// Writes what follows an entry's message, with the padding its image
/// type wants. The lengths must be those the message gives.
pub fn write_payload(out: &mut impl Write, p: &Payload) -> io::Result<()> {
    match *p {
        Payload::None => Ok(()),
        Payload::Bytes(d) => out.write_all(d),
        Payload::Shm(d) => {
            out.write_all(d)?;
            zeros(out, padding(d.len() as u64, SHM_ALIGN))
        }
        Payload::Tcp { inq, outq } => {
            out.write_all(inq)?;
            out.write_all(outq)
        }
        Payload::Sem(d) => {
            out.write_all(d)?;
            zeros(out, padding(d.len() as u64, SEM_ALIGN))
        }
        Payload::Msgs(msgs) => {
            for m in msgs {
                write_ipc_msg(out, m.header, m.body)?;
            }
            Ok(())
        }
    }
}

/// Writes one queued System V message: its framed `ipc_msg` header, then
/// its body padded to 8.
pub fn write_ipc_msg(out: &mut impl Write, header: &[u8], body: &[u8]) -> io::Result<()> {
    write_entry(out, header)?;
    out.write_all(body)?;
    zeros(out, padding(body.len() as u64, MSG_ALIGN))
}

/// `n` (under 8) zero bytes of padding.
fn zeros(out: &mut impl Write, n: u64) -> io::Result<()> {
    out.write_all(&[0; 8][..n as usize])
}

#[cfg(test)]
mod tests;
