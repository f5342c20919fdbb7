//! Whole images to and from crit's JSON document
//! `{"magic": NAME, "entries": [...]}`, one entry at a time, with the raw
//! bytes some entries carry after them as crit 4.2's `"extra"`.

use super::bytes_forms::{base64_decodebytes, base64_encodebytes};
use super::decode::{self, Style};
use super::encode::{EncodeError, Encoder};
use super::reader::JsonReader;
use super::writer::JsonWriter;
use crate::error::{Error, Result};
use crate::image::magic::{self, Header, Layout, Magic, Payload, IMG_COMMON, IMG_SERVICE};
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

/// Reads the leading magic(s) and finds the image type.
pub fn read_magic(src: &mut Source) -> Result<&'static Magic> {
    let Some(mut v) = src.u32_or_eof("magic")? else {
        return Err(src.err(0, "empty file: no magic"));
    };
    if v == IMG_COMMON || v == IMG_SERVICE {
        v = src
            .u32_or_eof("magic")?
            .ok_or_else(|| src.err(4, "truncated magic: the file ends after the common magic"))?;
    }
    magic::by_value(v).ok_or_else(|| {
        let at = src.pos() - 4;
        src.err(
            at,
            format!("unknown magic {v:#x}: not a CRIU image (raw data such as pages-*.img has no magic)"),
        )
    })
}

/// Reads one entry's length prefix and message; `None` at a clean end.
fn read_entry<'s>(src: &'s mut Source, what: &str) -> Result<Option<(u64, &'s [u8])>> {
    let at = src.pos();
    let Some(size) = src.u32_or_eof("length prefix")? else {
        return Ok(None);
    };
    if size > i32::MAX as u32 {
        return Err(src.err(
            at,
            format!("{what} has a negative length ({})", size as i32),
        ));
    }
    let name = src.name.clone();
    let data = src.take_short(size as usize)?.map_err(|got| Error::Image {
        file: name,
        offset: at,
        msg: format!("{what} claims {size} bytes but only {got} are left"),
    })?;
    Ok(Some((at + 4, data)))
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

fn typed<T: Message + Default>(name: &str, start: u64, data: &[u8]) -> Result<T> {
    T::decode(data).map_err(|e| Error::Image {
        file: name.to_string(),
        offset: start,
        msg: format!("bad entry: {e}"),
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

fn b64<W: Write>(w: &mut JsonWriter<W>, data: &[u8]) {
    let mut s = Vec::with_capacity(data.len() * 4 / 3 + data.len() / 57 + 4);
    base64_encodebytes(data, &mut s);
    w.str(&s);
}

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

/// Decodes a whole image into `w`; returns how many entries it printed.
pub fn decode<W: Write>(src: &mut Source, w: &mut JsonWriter<W>, opts: DecodeOpts) -> Result<u64> {
    let mg = read_magic(src)?;
    decode_after_magic(src, mg, w, opts)
}

fn decode_after_magic<W: Write>(
    src: &mut Source,
    mg: &'static Magic,
    w: &mut JsonWriter<W>,
    opts: DecodeOpts,
) -> Result<u64> {
    w.begin_object();
    w.key("magic");
    w.str(mg.name.as_bytes());
    w.key("entries");
    w.begin_array();
    let io = |e| Error::io("write", e);
    let mut n = 0u64;
    match mg.layout {
        Layout::Pagemap => {
            let mut m = msg::PAGEMAP_HEAD;
            let name = src.name.clone();
            while let Some((at, data)) = read_entry(src, "entry")? {
                n += 1;
                w.element();
                message_json(w, &name, m, at, data, opts.pretty)?;
                m = msg::PAGEMAP_ENTRY;
                w.maybe_flush().map_err(io)?;
            }
        }
        Layout::GhostFile => n = ghost_file(src, w, opts)?,
        Layout::Entries(m, payload) => loop {
            let name = src.name.clone();
            let Some((at, data)) = read_entry(src, "entry")? else {
                break;
            };
            n += 1;
            w.element();
            if payload == Payload::None {
                message_json(w, &name, m, at, data, opts.pretty)?;
                w.maybe_flush().map_err(io)?;
                continue;
            }
            // The entry object is closed after its "extra" member.
            let data = data.to_vec();
            message_json_open(w, &name, m, at, &data, opts.pretty)?;
            payload_json(src, w, payload, at, &data, opts)?;
            w.end_object();
            w.maybe_flush().map_err(io)?;
        },
    }
    w.end_array();
    w.end_object();
    Ok(n)
}

fn payload_json<W: Write>(
    src: &mut Source,
    w: &mut JsonWriter<W>,
    payload: Payload,
    at: u64,
    data: &[u8],
    opts: DecodeOpts,
) -> Result<()> {
    let name = src.name.clone();
    // How many bytes follow, and how many of those are padding.
    let (len, pad): (u64, u64) = match payload {
        Payload::None => return Ok(()),
        Payload::PipeData => (
            u64::from(typed::<pb::PipeDataEntry>(&name, at, data)?.bytes),
            0,
        ),
        Payload::SkQueue => (
            u64::from(typed::<pb::SkPacketEntry>(&name, at, data)?.length),
            0,
        ),
        Payload::TcpStream => {
            let t = typed::<pb::TcpStreamEntry>(&name, at, data)?;
            let (inq, outq) = (u64::from(t.inq_len), u64::from(t.outq_len));
            w.key("extra");
            if opts.nopl {
                src.take((inq + outq) as usize, "tcp queues")?;
                w.str(format!("... <{}>", human_size(inq + outq)).as_bytes());
                return Ok(());
            }
            w.begin_object();
            w.key("inq");
            let d = src.take(inq as usize, "tcp input queue")?.to_vec();
            b64(w, &d);
            w.key("outq");
            let d = src.take(outq as usize, "tcp output queue")?;
            b64(w, d);
            w.end_object();
            return Ok(());
        }
        Payload::BpfMap => {
            let b = typed::<pb::BpfmapDataEntry>(&name, at, data)?;
            (u64::from(b.keys_bytes) + u64::from(b.values_bytes), 0)
        }
        Payload::IpcShm => {
            let size = typed::<pb::IpcShmEntry>(&name, at, data)?.size;
            (size, round_up(size, 4) - size)
        }
        Payload::IpcSem => {
            let n = u64::from(typed::<pb::IpcSemEntry>(&name, at, data)?.nsems);
            let size = n * 2;
            w.key("extra");
            let d = src.take(size as usize, "semaphore values")?.to_vec();
            src.take((round_up(size, 8) - size) as usize, "semaphore padding")?;
            if opts.nopl {
                w.str(format!("... <{}>", human_size(size)).as_bytes());
                return Ok(());
            }
            w.begin_array();
            for p in d.chunks(2) {
                w.element();
                w.u64(u64::from(u16::from_le_bytes([p[0], p[1]])));
            }
            w.end_array();
            return Ok(());
        }
        Payload::IpcMsg => {
            let qnum = typed::<pb::IpcMsgEntry>(&name, at, data)?.qnum;
            w.key("extra");
            if !opts.nopl {
                w.begin_array();
            }
            let mut total = 0u64;
            for _ in 0..qnum {
                let Some((mat, mdata)) = read_entry(src, "message header")? else {
                    break;
                };
                let mdata = mdata.to_vec();
                let m = typed::<pb::IpcMsg>(&name, mat, &mdata)?;
                let msize = u64::from(m.msize);
                total += mdata.len() as u64 + msize;
                let body = src.take(msize as usize, "message body")?.to_vec();
                src.take((round_up(msize, 8) - msize) as usize, "message padding")?;
                if !opts.nopl {
                    w.element();
                    // crit 4.2 prints these without the pretty value forms.
                    message_json(w, &name, msg::IPC_MSG, mat, &mdata, false)?;
                    w.element();
                    b64(w, &body);
                }
            }
            if opts.nopl {
                w.str(format!("... <{}>", human_size(total)).as_bytes());
            } else {
                w.end_array();
            }
            return Ok(());
        }
    };
    w.key("extra");
    let d = src.take(len as usize, "payload")?;
    if opts.nopl {
        w.str(format!("... <{}>", human_size(len)).as_bytes());
    } else {
        let d = d.to_vec();
        b64(w, &d);
    }
    src.take(pad as usize, "payload padding")?;
    Ok(())
}

fn ghost_file<W: Write>(src: &mut Source, w: &mut JsonWriter<W>, opts: DecodeOpts) -> Result<u64> {
    let name = src.name.clone();
    let Some((at, data)) = read_entry(src, "ghost file entry")? else {
        return Err(src.err(src.pos(), "ghost file image has no entry"));
    };
    let data = data.to_vec();
    let head = typed::<pb::GhostFileEntry>(&name, at, &data)?;
    let mut n = 1;
    w.element();
    message_json_open(w, &name, msg::GHOST_FILE_ENTRY, at, &data, opts.pretty)?;
    if head.chunks.unwrap_or(false) {
        w.end_object();
        while let Some((cat, cdata)) = read_entry(src, "ghost chunk")? {
            n += 1;
            let cdata = cdata.to_vec();
            let c = typed::<pb::GhostChunkEntry>(&name, cat, &cdata)?;
            w.element();
            message_json_open(w, &name, msg::GHOST_CHUNK_ENTRY, cat, &cdata, opts.pretty)?;
            let body = src.take(
                usize::try_from(c.len).unwrap_or(usize::MAX),
                "ghost chunk data",
            )?;
            if !opts.nopl {
                let body = body.to_vec();
                w.key("extra");
                b64(w, &body);
            }
            w.end_object();
            w.maybe_flush().map_err(|e| Error::io("write", e))?;
        }
    } else {
        let rest = src.rest()?;
        if !opts.nopl {
            let rest = rest.to_vec();
            w.key("extra");
            b64(w, &rest);
        }
        w.end_object();
    }
    Ok(n)
}

/// Counts entries the way decode sees them (crit 4.2's `info` miscounts
/// images whose entries carry payloads; this does not). For pagemaps the
/// head is not counted, as in crit.
pub fn count(src: &mut Source) -> Result<(&'static Magic, u64)> {
    let mg = read_magic(src)?;
    // Walk the entries exactly as decode does, so that a count is only
    // given for an image that decodes.
    let mut sink = JsonWriter::new(std::io::sink(), false);
    let mut n = decode_after_magic(
        src,
        mg,
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
                    write_header(found, out)?;
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
                write_header(found, out)?;
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

fn write_header(mg: &Magic, out: &mut impl Write) -> Result<()> {
    let io = |e| Error::io("write", e);
    match mg.header {
        Header::Bare => {}
        Header::Common => out.write_all(&IMG_COMMON.to_le_bytes()).map_err(io)?,
        Header::Service => out.write_all(&IMG_SERVICE.to_le_bytes()).map_err(io)?,
    }
    out.write_all(&mg.value.to_le_bytes()).map_err(io)
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

fn write_framed(out: &mut impl Write, body: &[u8]) -> std::result::Result<(), Fail> {
    let io = |e| Fail::Other(Error::io("write", e));
    out.write_all(&(body.len() as u32).to_le_bytes())
        .map_err(io)?;
    out.write_all(body).map_err(io)
}

fn entries(enc: &mut Encoder, mg: &Magic, out: &mut impl Write) -> std::result::Result<(), Fail> {
    let st = enc.r.expect(b'[', "a list of entries");
    enc.lift(st)?;
    let mut first = true;
    let mut i = 0usize;
    let mut buf = Vec::with_capacity(4096);
    let mut ghost_chunks: Option<bool> = None;
    enc.path.index(0);
    loop {
        let more = enc.r.next_element(&mut first);
        if !enc.lift(more)? {
            break;
        }
        enc.path.set_index(i);
        buf.clear();
        let (m, payload) = match mg.layout {
            Layout::Entries(m, p) => (m, p),
            Layout::Pagemap => (
                if i == 0 {
                    msg::PAGEMAP_HEAD
                } else {
                    msg::PAGEMAP_ENTRY
                },
                Payload::None,
            ),
            Layout::GhostFile => (
                if i == 0 {
                    msg::GHOST_FILE_ENTRY
                } else {
                    msg::GHOST_CHUNK_ENTRY
                },
                Payload::None,
            ),
        };
        let extras = enc.message(m, &mut buf, &["extra"])?;
        let extra = extras.into_iter().next().map(|(_, v)| v);
        write_framed(out, &buf)?;
        if mg.layout == Layout::GhostFile {
            if i == 0 {
                let g = pb::GhostFileEntry::decode(&buf[..])
                    .map_err(|e| enc_fail(enc, &e.to_string()))?;
                ghost_chunks = Some(g.chunks.unwrap_or(false));
            }
            let wants = if i == 0 {
                !ghost_chunks.unwrap_or(false)
            } else {
                true
            };
            if !wants {
                if extra.is_some() {
                    return Err(enc_fail(
                        enc,
                        "a chunked ghost file carries its data in the chunk entries",
                    )
                    .into());
                }
            } else {
                let data = b64_text(enc, extra.as_deref())?;
                if i > 0 {
                    let c = pb::GhostChunkEntry::decode(&buf[..])
                        .map_err(|e| enc_fail(enc, &e.to_string()))?;
                    if c.len != data.len() as u64 {
                        return Err(enc_fail(
                            enc,
                            &format!(
                                "\"extra\" holds {} bytes but len says {}",
                                data.len(),
                                c.len
                            ),
                        )
                        .into());
                    }
                }
                out.write_all(&data)
                    .map_err(|e| Fail::Other(Error::io("write", e)))?;
            }
        } else if payload != Payload::None {
            write_payload(enc, payload, &buf, extra.as_deref(), out)?;
        } else if extra.is_some() {
            return Err(enc_fail(enc, &format!("{} entries carry no \"extra\"", mg.name)).into());
        }
        i += 1;
    }
    enc.path.pop();
    Ok(())
}

fn enc_fail(enc: &Encoder, m: &str) -> EncodeError {
    enc.fail::<()>(m).unwrap_err()
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

fn write_payload(
    enc: &mut Encoder,
    payload: Payload,
    body: &[u8],
    extra: Option<&[u8]>,
    out: &mut impl Write,
) -> std::result::Result<(), Fail> {
    let io = |e| Fail::Other(Error::io("write", e));
    let bad = |e: prost::DecodeError| Fail::Json(enc_fail(enc, &e.to_string()));
    let check = |enc: &Encoder, got: usize, want: u64, field: &str| {
        if got as u64 != want {
            Err(Fail::Json(enc_fail(
                enc,
                &format!("\"extra\" holds {got} bytes but {field} says {want}"),
            )))
        } else {
            Ok(())
        }
    };
    match payload {
        Payload::None => {}
        Payload::PipeData => {
            let d = b64_text(enc, extra)?;
            check(
                enc,
                d.len(),
                u64::from(pb::PipeDataEntry::decode(body).map_err(bad)?.bytes),
                "bytes",
            )?;
            out.write_all(&d).map_err(io)?;
        }
        Payload::SkQueue => {
            let d = b64_text(enc, extra)?;
            check(
                enc,
                d.len(),
                u64::from(pb::SkPacketEntry::decode(body).map_err(bad)?.length),
                "length",
            )?;
            out.write_all(&d).map_err(io)?;
        }
        Payload::BpfMap => {
            let d = b64_text(enc, extra)?;
            let b = pb::BpfmapDataEntry::decode(body).map_err(bad)?;
            check(
                enc,
                d.len(),
                u64::from(b.keys_bytes) + u64::from(b.values_bytes),
                "keys_bytes + values_bytes",
            )?;
            out.write_all(&d).map_err(io)?;
        }
        Payload::IpcShm => {
            let d = b64_text(enc, extra)?;
            let size = pb::IpcShmEntry::decode(body).map_err(bad)?.size;
            check(enc, d.len(), size, "size")?;
            out.write_all(&d).map_err(io)?;
            out.write_all(&vec![0; (round_up(size, 4) - size) as usize])
                .map_err(io)?;
        }
        Payload::TcpStream => {
            let t = pb::TcpStreamEntry::decode(body).map_err(bad)?;
            let mut inq = Vec::new();
            let mut outq = Vec::new();
            if let Some(text) = extra {
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
                            _ => {
                                return Err(enc_fail(
                                    &e2,
                                    "tcp extra has only \"inq\" and \"outq\"",
                                ))
                            }
                        }
                    }
                });
                e2.path.pop();
                enc.path = std::mem::take(&mut e2.path);
                res?;
            }
            check(enc, inq.len(), u64::from(t.inq_len), "inq_len")?;
            check(enc, outq.len(), u64::from(t.outq_len), "outq_len")?;
            out.write_all(&inq).map_err(io)?;
            out.write_all(&outq).map_err(io)?;
        }
        Payload::IpcSem => {
            let n = u64::from(pb::IpcSemEntry::decode(body).map_err(bad)?.nsems);
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
            if vals.len() as u64 != n * 2 {
                return Err(enc_fail(
                    enc,
                    &format!(
                        "\"extra\" holds {} values but nsems says {n}",
                        vals.len() / 2
                    ),
                )
                .into());
            }
            out.write_all(&vals).map_err(io)?;
            out.write_all(&vec![0; (round_up(n * 2, 8) - n * 2) as usize])
                .map_err(io)?;
        }
        Payload::IpcMsg => {
            let qnum = pb::IpcMsgEntry::decode(body).map_err(bad)?.qnum;
            let mut count = 0u32;
            if let Some(text) = extra {
                let mut r = JsonReader::new(text);
                let mut e2 = Encoder::new(&mut r);
                e2.path = std::mem::take(&mut enc.path);
                e2.path.key("extra");
                let res = (|| -> std::result::Result<(), Fail> {
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
                        let m = pb::IpcMsg::decode(&hdr[..])
                            .map_err(|e| Fail::Json(enc_fail(&e2, &e.to_string())))?;
                        let more = e2.r.next_element(&mut first);
                        if !e2.lift(more)? {
                            return Err(enc_fail(&e2, "a message header without its data").into());
                        }
                        e2.path.set_index(k + 1);
                        let c = e2.r.capture();
                        let text = e2.lift(c)?;
                        let d = b64_text(&e2, Some(&text))?;
                        if d.len() < m.msize as usize {
                            return Err(enc_fail(&e2, "message data is shorter than msize").into());
                        }
                        write_framed(out, &hdr)?;
                        let ms = u64::from(m.msize);
                        out.write_all(&d[..ms as usize]).map_err(io)?;
                        out.write_all(&vec![0; (round_up(ms, 8) - ms) as usize])
                            .map_err(io)?;
                        count += 1;
                        k += 2;
                    }
                    e2.path.pop();
                    Ok(())
                })();
                e2.path.pop();
                enc.path = std::mem::take(&mut e2.path);
                res?;
            }
            if count != qnum {
                return Err(enc_fail(
                    enc,
                    &format!("\"extra\" holds {count} messages but qnum says {qnum}"),
                )
                .into());
            }
        }
    }
    Ok(())
}
