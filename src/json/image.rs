//! Whole images to and from crit's JSON document
//! `{"magic": NAME, "entries": [...]}`, one entry at a time, with the raw
//! bytes some entries carry after them as crit 4.2's `"extra"`.

use super::bytes_forms::{base64_decodebytes, base64_encodebytes};
use super::decode::{self, Style};
use super::encode::{EncodeError, Encoder};
use super::reader::JsonReader;
use super::writer::JsonWriter;
use crate::error::{Error, Result};
use crate::image::entry::{self, Entry, EntryReader, IpcMsgs, Payload as EntryPayload};
use crate::image::magic::{self, Layout, Magic, Payload};
use crate::image::pb;
use crate::image::schema::msg;
use crate::image::source::Source;
use prost::Message;
use std::io::Write;

#[derive(Clone, Copy, Default)]
pub struct DecodeOpts {
    /// CRIU's pretty value forms and 4-space indentation.
    pub pretty: bool,
    /// Replace payloads by their size (`crit show --nopl`).
    pub nopl: bool,
}

fn message_json<W: Write>(
    w: &mut JsonWriter<W>,
    src_name: &str,
    m: usize,
    start: u64,
    data: &[u8],
    pretty: bool,
) -> Result<()> {
    message_json_open(w, src_name, m, start, data, pretty)?;
    w.end_object();
    Ok(())
}

/// The entry's object, left open for an `"extra"` member.
fn message_json_open<W: Write>(
    w: &mut JsonWriter<W>,
    src_name: &str,
    m: usize,
    start: u64,
    data: &[u8],
    pretty: bool,
) -> Result<()> {
    decode::message_open(w, m, data, Style { pretty }, false).map_err(|e| Error::Image {
        file: src_name.to_string(),
        offset: start + e.offset as u64,
        msg: e.reason,
    })
}

fn human_size(n: u64) -> String {
    let mut num = n as f64;
    for unit in ["", "K", "M", "G", "T", "P", "E", "Z"] {
        if num < 1024.0 {
            return if num.fract() == 0.0 {
                format!("{num:.0}{unit}B")
            } else {
                format!("{num:.1}{unit}B")
            };
        }
        num /= 1024.0;
    }
    format!("{num:.1}YB")
}

fn b64<W: Write>(w: &mut JsonWriter<W>, data: &[u8]) -> Result<()> {
    // Whole base64 lines at a time, each piece written out as it is
    // made: a large payload is never held again in memory.
    const PIECE: usize = super::bytes_forms::B64_MAXBINSIZE * 16 * 1024;
    w.buf.push(b'"');
    let mut s = Vec::with_capacity(PIECE / 3 * 4 + PIECE / 57 + 4);
    for chunk in data.chunks(PIECE) {
        s.clear();
        base64_encodebytes(chunk, &mut s);
        super::writer::write_str_body(&mut w.buf, &s);
        w.maybe_flush().map_err(|e| Error::io("write", e))?;
    }
    w.buf.push(b'"');
    Ok(())
}

/// Decodes a whole image into `w`; returns how many entries it printed.
pub fn decode<W: Write>(src: &mut Source, w: &mut JsonWriter<W>, opts: DecodeOpts) -> Result<u64> {
    let mut rd = EntryReader::new(src)?;
    decode_entries(&mut rd, w, opts)
}

fn decode_entries<W: Write>(
    rd: &mut EntryReader,
    w: &mut JsonWriter<W>,
    opts: DecodeOpts,
) -> Result<u64> {
    let mg = rd.magic();
    w.begin_object();
    w.key("magic");
    w.str(mg.name.as_bytes());
    w.key("entries");
    w.begin_array();
    let ghost = mg.layout == Layout::GhostFile;
    let mut n = 0u64;
    while let Some(e) = rd.next_entry()? {
        n += 1;
        w.element();
        // The entry object is closed after its "extra" member.
        message_json_open(w, e.file, e.msg, e.message_offset(), e.message, opts.pretty)?;
        // With --nopl crit 4.2 leaves a ghost file's contents out, size
        // and all.
        if !(ghost && opts.nopl) {
            extra_json(w, &e, opts)?;
        }
        w.end_object();
        w.maybe_flush().map_err(|e| Error::io("write", e))?;
    }
    if ghost && n == 0 {
        return Err(Error::Image {
            file: rd.name().to_string(),
            offset: rd.pos(),
            msg: "ghost file image has no entry".into(),
        });
    }
    w.end_array();
    w.end_object();
    Ok(n)
}

/// `... <SIZE>`, for a payload left out (`crit show --nopl`).
fn size_json<W: Write>(w: &mut JsonWriter<W>, n: usize) {
    w.str(format!("... <{}>", human_size(n as u64)).as_bytes());
}

/// An entry's payload as crit 4.2's `"extra"` member, if it has one.
fn extra_json<W: Write>(w: &mut JsonWriter<W>, e: &Entry, opts: DecodeOpts) -> Result<()> {
    let size = match e.payload {
        EntryPayload::None => return Ok(()),
        EntryPayload::Msgs(msgs) => return msgs_json(w, e.file, msgs, opts),
        EntryPayload::Bytes(d) | EntryPayload::Shm(d) | EntryPayload::Sem(d) => d.len(),
        EntryPayload::Tcp { inq, outq } => inq.len() + outq.len(),
    };
    w.key("extra");
    if opts.nopl {
        size_json(w, size);
        return Ok(());
    }
    match e.payload {
        EntryPayload::Bytes(d) | EntryPayload::Shm(d) => b64(w, d)?,
        EntryPayload::Tcp { inq, outq } => {
            w.begin_object();
            w.key("inq");
            b64(w, inq)?;
            w.key("outq");
            b64(w, outq)?;
            w.end_object();
        }
        EntryPayload::Sem(v) => {
            w.begin_array();
            for p in v.chunks_exact(2) {
                w.element();
                w.u64(u64::from(u16::from_le_bytes([p[0], p[1]])));
            }
            w.end_array();
        }
        // Returned above.
        EntryPayload::None | EntryPayload::Msgs(_) => {}
    }
    Ok(())
}

/// A System V queue's messages: each `ipc_msg` then its text.
fn msgs_json<W: Write>(
    w: &mut JsonWriter<W>,
    file: &str,
    msgs: IpcMsgs,
    opts: DecodeOpts,
) -> Result<()> {
    w.key("extra");
    if opts.nopl {
        let total = msgs.map(|m| m.header.len() + m.body.len()).sum();
        size_json(w, total);
        return Ok(());
    }
    w.begin_array();
    for m in msgs {
        w.element();
        // crit 4.2 prints these without the pretty value forms.
        message_json(w, file, msg::IPC_MSG, m.header_offset, m.header, false)?;
        w.element();
        b64(w, m.body)?;
    }
    w.end_array();
    Ok(())
}

/// Counts entries the way decode sees them (crit 4.2's `info` miscounts
/// images whose entries carry payloads; this does not). For pagemaps the
/// head is not counted, as in crit.
pub fn count(src: &mut Source) -> Result<(&'static Magic, u64)> {
    let mut rd = EntryReader::new(src)?;
    let mg = rd.magic();
    // Walk the entries exactly as decode does, so that a count is only
    // given for an image that decodes.
    let mut sink = JsonWriter::new(std::io::sink(), false);
    let mut n = decode_entries(
        &mut rd,
        &mut sink,
        DecodeOpts {
            pretty: false,
            nopl: true,
        },
    )?;
    if mg.layout == Layout::Pagemap {
        n = n.saturating_sub(1);
    }
    Ok((mg, n))
}

fn json_err(file: &str, e: EncodeError) -> Error {
    Error::Json {
        file: file.to_string(),
        at: format!("at byte {} ({})", e.offset, e.path),
        msg: e.msg,
    }
}

/// Encodes a JSON document from `r` into binary image bytes on `out`.
pub fn encode(r: &mut JsonReader, file: &str, out: &mut impl Write) -> Result<()> {
    let mut enc = Encoder::new(r);
    let fail = |enc: &Encoder, m: &str| json_err(file, enc.fail::<()>(m).unwrap_err());
    let lift = |e: EncodeError| json_err(file, e);
    let st = enc.r.expect(b'{', "an object");
    enc.lift(st).map_err(lift)?;
    let mut first = true;
    let mut mg: Option<&'static Magic> = None;
    let mut early_entries: Option<Vec<u8>> = None;
    let mut done = false;
    loop {
        let k = enc.r.next_key(&mut first);
        if !enc.lift(k).map_err(lift)? {
            break;
        }
        // A key twice would write a second header or entry list.
        let dup = match enc.r.scratch.as_slice() {
            b"magic" => mg.is_some(),
            b"entries" => done || early_entries.is_some(),
            _ => false,
        };
        if dup {
            let k = String::from_utf8_lossy(&enc.r.scratch).into_owned();
            return Err(fail(&enc, &format!("duplicate key {k:?}")));
        }
        match enc.r.scratch.as_slice() {
            b"magic" => {
                enc.path.key("magic");
                let s = enc.r.string();
                enc.lift(s).map_err(lift)?;
                let found = magic::by_name(&enc.r.scratch).ok_or_else(|| {
                    fail(
                        &enc,
                        &format!(
                            "unknown magic {:?}",
                            String::from_utf8_lossy(&enc.r.scratch)
                        ),
                    )
                })?;
                enc.path.pop();
                mg = Some(found);
                if let Some(text) = early_entries.take() {
                    // "entries" came first: encode the text kept for it.
                    let mut sub = JsonReader::new(&text[..]);
                    let mut e2 = Encoder::new(&mut sub);
                    e2.path.key("entries");
                    entry::write_header(out, found).map_err(|e| Error::io("write", e))?;
                    entries(&mut e2, found, out).map_err(|e| match e {
                        Fail::Json(e) => json_err(file, e),
                        Fail::Other(e) => e,
                    })?;
                    done = true;
                }
            }
            b"entries" => {
                let Some(found) = mg else {
                    let c = enc.r.capture();
                    early_entries = Some(enc.lift(c).map_err(lift)?);
                    continue;
                };
                enc.path.key("entries");
                entry::write_header(out, found).map_err(|e| Error::io("write", e))?;
                entries(&mut enc, found, out).map_err(|e| match e {
                    Fail::Json(e) => json_err(file, e),
                    Fail::Other(e) => e,
                })?;
                enc.path.pop();
                done = true;
            }
            other => {
                let k = String::from_utf8_lossy(other).into_owned();
                return Err(fail(
                    &enc,
                    &format!("unexpected key {k:?} (an image has \"magic\" and \"entries\")"),
                ));
            }
        }
    }
    if mg.is_none() {
        return Err(fail(&enc, "no \"magic\" key"));
    }
    if !done {
        return Err(fail(&enc, "no \"entries\" key"));
    }
    let e = enc.r.end();
    enc.lift(e).map_err(lift)?;
    Ok(())
}

enum Fail {
    Json(EncodeError),
    Other(Error),
}

impl From<EncodeError> for Fail {
    fn from(e: EncodeError) -> Self {
        Fail::Json(e)
    }
}

fn write_err(e: std::io::Error) -> Fail {
    Fail::Other(Error::io("write", e))
}

fn entries(enc: &mut Encoder, mg: &Magic, out: &mut impl Write) -> std::result::Result<(), Fail> {
    let st = enc.r.expect(b'[', "a list of entries");
    enc.lift(st)?;
    let mut first = true;
    let mut i = 0usize;
    let mut buf = Vec::with_capacity(4096);
    enc.path.index(0);
    loop {
        let more = enc.r.next_element(&mut first);
        if !enc.lift(more)? {
            break;
        }
        enc.path.set_index(i);
        buf.clear();
        let m = entry::message_of(mg.layout, i as u64);
        let extras = enc.message(m, &mut buf, &["extra"])?;
        let extra = extras.into_iter().next().map(|(_, v)| v);
        entry::write_entry(out, &buf).map_err(write_err)?;
        match mg.layout {
            Layout::GhostFile => ghost_payload(enc, i, &buf, extra.as_deref(), out)?,
            Layout::Entries(_, payload) if payload != Payload::None => {
                write_payload(enc, payload, &buf, extra.as_deref(), out)?
            }
            _ if extra.is_some() => {
                return Err(
                    enc_fail(enc, &format!("{} entries carry no \"extra\"", mg.name)).into(),
                )
            }
            _ => {}
        }
        i += 1;
    }
    enc.path.pop();
    Ok(())
}

fn enc_fail(enc: &Encoder, m: &str) -> EncodeError {
    enc.fail::<()>(m).unwrap_err()
}

fn decode_fail(enc: &Encoder, e: prost::DecodeError) -> Fail {
    Fail::Json(enc_fail(enc, &e.to_string()))
}

/// The bytes of a base64 `"extra"` string (absent means none).
fn b64_text(enc: &Encoder, text: Option<&[u8]>) -> std::result::Result<Vec<u8>, EncodeError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let mut r = JsonReader::new(text);
    r.string()
        .map_err(|e| enc_fail(enc, &format!("\"extra\": {}", e.msg)))?;
    base64_decodebytes(&r.scratch)
        .map_err(|e| enc_fail(enc, &format!("\"extra\": bad base64: {e}")))
}

/// Refuses an `"extra"` of `got` bytes where the message's `field` says `want`.
fn check_len(enc: &Encoder, got: usize, want: u64, field: &str) -> std::result::Result<(), Fail> {
    if got as u64 != want {
        return Err(Fail::Json(enc_fail(
            enc,
            &format!("\"extra\" holds {got} bytes but {field} says {want}"),
        )));
    }
    Ok(())
}

/// The contents after ghost file entry `i`: the file's bytes after an
/// unchunked head, each chunk's after it.
fn ghost_payload(
    enc: &Encoder,
    i: usize,
    body: &[u8],
    extra: Option<&[u8]>,
    out: &mut impl Write,
) -> std::result::Result<(), Fail> {
    if i == 0 {
        let g = pb::GhostFileEntry::decode(body).map_err(|e| decode_fail(enc, e))?;
        if g.chunks.unwrap_or(false) {
            if extra.is_some() {
                let m = "a chunked ghost file carries its data in the chunk entries";
                return Err(enc_fail(enc, m).into());
            }
            return Ok(());
        }
    }
    let data = b64_text(enc, extra)?;
    if i > 0 {
        let c = pb::GhostChunkEntry::decode(body).map_err(|e| decode_fail(enc, e))?;
        if c.len != data.len() as u64 {
            let m = format!(
                "\"extra\" holds {} bytes but len says {}",
                data.len(),
                c.len
            );
            return Err(enc_fail(enc, &m).into());
        }
    }
    entry::write_payload(out, &EntryPayload::Bytes(&data)).map_err(write_err)
}

/// The payload after an entry whose message is `body`, from its `"extra"`.
fn write_payload(
    enc: &mut Encoder,
    payload: Payload,
    body: &[u8],
    extra: Option<&[u8]>,
    out: &mut impl Write,
) -> std::result::Result<(), Fail> {
    let p = match payload {
        Payload::None => return Ok(()),
        Payload::PipeData => {
            let want = pb::PipeDataEntry::decode(body).map(|e| u64::from(e.bytes));
            return write_bytes(out, &plain_extra(enc, extra, want, "bytes")?);
        }
        Payload::SkQueue => {
            let want = pb::SkPacketEntry::decode(body).map(|e| u64::from(e.length));
            return write_bytes(out, &plain_extra(enc, extra, want, "length")?);
        }
        Payload::BpfMap => {
            let want = pb::BpfmapDataEntry::decode(body)
                .map(|b| u64::from(b.keys_bytes) + u64::from(b.values_bytes));
            let d = plain_extra(enc, extra, want, "keys_bytes + values_bytes")?;
            return write_bytes(out, &d);
        }
        Payload::IpcShm => {
            let shm = pb::IpcShmEntry::decode(body).ok();
            if extra.is_none() && shm.as_ref().and_then(|e| e.in_pagemaps) == Some(true) {
                return Ok(());
            }
            let want = pb::IpcShmEntry::decode(body).map(|e| e.size);
            let d = plain_extra(enc, extra, want, "size")?;
            return entry::write_payload(out, &EntryPayload::Shm(&d)).map_err(write_err);
        }
        Payload::TcpStream => {
            let t = pb::TcpStreamEntry::decode(body).map_err(|e| decode_fail(enc, e))?;
            let (inq, outq) = tcp_extra(enc, extra)?;
            check_len(enc, inq.len(), u64::from(t.inq_len), "inq_len")?;
            check_len(enc, outq.len(), u64::from(t.outq_len), "outq_len")?;
            (inq, outq)
        }
        Payload::IpcSem => {
            let n = pb::IpcSemEntry::decode(body)
                .map_err(|e| decode_fail(enc, e))?
                .nsems;
            let vals = sem_extra(enc, u64::from(n), extra)?;
            return entry::write_payload(out, &EntryPayload::Sem(&vals)).map_err(write_err);
        }
        Payload::IpcMsg => {
            let qnum = pb::IpcMsgEntry::decode(body)
                .map_err(|e| decode_fail(enc, e))?
                .qnum;
            return write_msgs(enc, qnum, extra, out);
        }
    };
    let tcp = EntryPayload::Tcp {
        inq: &p.0,
        outq: &p.1,
    };
    entry::write_payload(out, &tcp).map_err(write_err)
}

/// Plain payload bytes from a base64 `"extra"`, which must be as long as
/// the message's `field` (`want`) says.
fn plain_extra(
    enc: &Encoder,
    extra: Option<&[u8]>,
    want: std::result::Result<u64, prost::DecodeError>,
    field: &str,
) -> std::result::Result<Vec<u8>, Fail> {
    let d = b64_text(enc, extra)?;
    let want = want.map_err(|e| decode_fail(enc, e))?;
    check_len(enc, d.len(), want, field)?;
    Ok(d)
}

fn write_bytes(out: &mut impl Write, d: &[u8]) -> std::result::Result<(), Fail> {
    entry::write_payload(out, &EntryPayload::Bytes(d)).map_err(write_err)
}

/// A TCP stream's `"extra"`: `{"inq": BASE64, "outq": BASE64}`.
fn tcp_extra(
    enc: &mut Encoder,
    extra: Option<&[u8]>,
) -> std::result::Result<(Vec<u8>, Vec<u8>), Fail> {
    let mut inq = Vec::new();
    let mut outq = Vec::new();
    let Some(text) = extra else {
        return Ok((inq, outq));
    };
    let mut r = JsonReader::new(text);
    let mut e2 = Encoder::new(&mut r);
    e2.path = std::mem::take(&mut enc.path);
    e2.path.key("extra");
    let st = e2.r.expect(b'{', "an object with inq and outq");
    let res = e2.lift(st).and_then(|_| {
        let mut first = true;
        loop {
            let k = e2.r.next_key(&mut first);
            if !e2.lift(k)? {
                break Ok(());
            }
            let key = e2.r.scratch.clone();
            let c = e2.r.capture();
            let text = e2.lift(c)?;
            let d = b64_text(&e2, Some(&text))?;
            match key.as_slice() {
                b"inq" => inq = d,
                b"outq" => outq = d,
                _ => return Err(enc_fail(&e2, "tcp extra has only \"inq\" and \"outq\"")),
            }
        }
    });
    e2.path.pop();
    enc.path = std::mem::take(&mut e2.path);
    res?;
    Ok((inq, outq))
}

/// Semaphore values from `"extra"`, a list of `nsems` numbers, as u16s.
fn sem_extra(
    enc: &Encoder,
    nsems: u64,
    extra: Option<&[u8]>,
) -> std::result::Result<Vec<u8>, Fail> {
    let mut vals: Vec<u8> = Vec::new();
    if let Some(text) = extra {
        let mut r = JsonReader::new(text);
        let st = r.expect(b'[', "a list of semaphore values");
        st.map_err(|e| enc_fail(enc, &e.msg))?;
        let mut first = true;
        while r
            .next_element(&mut first)
            .map_err(|e| enc_fail(enc, &e.msg))?
        {
            match r.number().map_err(|e| enc_fail(enc, &e.msg))? {
                super::reader::Number::Int(v) if (0..=0xffff).contains(&v) => {
                    vals.extend_from_slice(&(v as u16).to_le_bytes())
                }
                _ => return Err(enc_fail(enc, "semaphore values are 0..65535").into()),
            }
        }
    }
    if vals.len() as u64 != nsems * 2 {
        let got = vals.len() / 2;
        let m = format!("\"extra\" holds {got} values but nsems says {nsems}");
        return Err(enc_fail(enc, &m).into());
    }
    Ok(vals)
}

/// A System V queue's messages from `"extra"`, a list alternating
/// `ipc_msg` objects and their base64 text, written as they are read.
fn write_msgs(
    enc: &mut Encoder,
    qnum: u32,
    extra: Option<&[u8]>,
    out: &mut impl Write,
) -> std::result::Result<(), Fail> {
    let mut count = 0u32;
    if let Some(text) = extra {
        let mut r = JsonReader::new(text);
        let mut e2 = Encoder::new(&mut r);
        e2.path = std::mem::take(&mut enc.path);
        e2.path.key("extra");
        let res = msgs_list(&mut e2, &mut count, out);
        e2.path.pop();
        enc.path = std::mem::take(&mut e2.path);
        res?;
    }
    if count != qnum {
        let m = format!("\"extra\" holds {count} messages but qnum says {qnum}");
        return Err(enc_fail(enc, &m).into());
    }
    Ok(())
}

fn msgs_list(
    e2: &mut Encoder,
    count: &mut u32,
    out: &mut impl Write,
) -> std::result::Result<(), Fail> {
    let st = e2.r.expect(b'[', "a list of messages and their data");
    e2.lift(st)?;
    let mut first = true;
    let mut k = 0;
    e2.path.index(0);
    loop {
        let more = e2.r.next_element(&mut first);
        if !e2.lift(more)? {
            break;
        }
        e2.path.set_index(k);
        let mut hdr = Vec::new();
        e2.message(msg::IPC_MSG, &mut hdr, &[])?;
        let m = pb::IpcMsg::decode(&hdr[..]).map_err(|e| decode_fail(e2, e))?;
        let more = e2.r.next_element(&mut first);
        if !e2.lift(more)? {
            return Err(enc_fail(e2, "a message header without its data").into());
        }
        e2.path.set_index(k + 1);
        let c = e2.r.capture();
        let text = e2.lift(c)?;
        let d = b64_text(e2, Some(&text))?;
        let Some(body) = d.get(..m.msize as usize) else {
            return Err(enc_fail(e2, "message data is shorter than msize").into());
        };
        entry::write_ipc_msg(out, &hdr, body).map_err(write_err)?;
        *count += 1;
        k += 2;
    }
    e2.path.pop();
    Ok(())
}
