//! crit's JSON to protobuf message bytes, driven by the schema tables: the
//! inverse of [`super::decode`]. Accepts both the compact and the pretty
//! value forms, as crit 4.2's `dict2pb` does, and writes fields in field
//! number order as protobuf-c does, whatever order the keys come in.

use super::bytes_forms::{base64_decodebytes, qp_decode};
use super::decode::{wire_type, UNKNOWN_KEY};
use super::forms;
use super::reader::{JsonReader, Number, PResult, ParseError};
use crate::image::schema::{FieldDesc, Kind, Label, ENUMS, MESSAGES};
use crate::image::wire::{self, put_tag, put_varint};

/// Where in the document the parser is, for error messages.
#[derive(Default)]
pub struct Path {
    segs: Vec<Seg>,
    /// The scalar field being read, kept apart from `segs` so that the
    /// common case costs a store rather than a push and a pop.
    leaf: Option<&'static str>,
}

enum Seg {
    Key(&'static str),
    Index(usize),
}

impl Path {
    pub fn key(&mut self, k: &'static str) {
        self.segs.push(Seg::Key(k));
    }
    pub fn index(&mut self, i: usize) {
        self.segs.push(Seg::Index(i));
    }
    pub fn set_index(&mut self, i: usize) {
        if let Some(Seg::Index(x)) = self.segs.last_mut() {
            *x = i;
        }
    }
    pub fn pop(&mut self) {
        self.segs.pop();
    }
    pub fn render(&self) -> String {
        let mut s = String::from("$");
        for seg in &self.segs {
            match seg {
                Seg::Key(k) => {
                    s.push('.');
                    s.push_str(k);
                }
                Seg::Index(i) => s.push_str(&format!("[{i}]")),
            }
        }
        if let Some(k) = self.leaf {
            s.push('.');
            s.push_str(k);
        }
        s
    }
}

/// An encoding error: where (byte offset and JSON path) and what.
#[derive(Debug)]
pub struct EncodeError {
    pub offset: u64,
    pub path: String,
    pub msg: String,
}

pub type EResult<T> = Result<T, EncodeError>;

pub struct Encoder<'r, 'a> {
    pub r: &'r mut JsonReader<'a>,
    pub path: Path,
    depth: usize,
    /// Fields written, a frame per message being encoded; kept here so
    /// that no message allocates its own.
    segs: Vec<Written>,
}

/// Keys a caller handles itself (the entry's `"extra"`), captured as JSON
/// text.
pub type Extras = Vec<(String, Vec<u8>)>;

impl<'r, 'a> Encoder<'r, 'a> {
    pub fn new(r: &'r mut JsonReader<'a>) -> Self {
        Encoder {
            r,
            path: Path::default(),
            depth: 0,
            segs: Vec::with_capacity(64),
        }
    }

    pub fn fail<T>(&self, msg: impl Into<String>) -> EResult<T> {
        Err(EncodeError {
            offset: self.r.offset(),
            path: self.path.render(),
            msg: msg.into(),
        })
    }

    pub fn lift<T>(&self, r: PResult<T>) -> EResult<T> {
        r.map_err(|ParseError { offset, msg }| EncodeError {
            offset,
            path: self.path.render(),
            msg,
        })
    }

    /// Reads one JSON object as message `msg`, appending its encoding to
    /// `out`. Keys named in `extra_keys` are captured and returned.
    pub fn message(
        &mut self,
        msg: usize,
        out: &mut Vec<u8>,
        extra_keys: &[&'static str],
    ) -> EResult<Extras> {
        let desc = &MESSAGES[msg];
        let r = self.r.expect(b'{', "an object");
        self.lift(r)?;
        let base = out.len();
        let frame = self.segs.len();
        // While keys come in field order (the usual case) nothing needs
        // recording; the first key out of order (or kept unknown fields)
        // switches to recording each field's bytes for a final sort.
        let mut recording = false;
        let mut last_number = 0;
        let mut seen = Seen::new(desc.fields.len());
        let mut extras = Extras::new();
        let mut first = true;
        let mut hint = 0;
        loop {
            let fast = match desc.fields.get(hint) {
                Some(f) => self.r.try_key(&mut first, f.name),
                None => false,
            };
            let found = if fast {
                Some(hint)
            } else {
                let more = self.r.next_key(&mut first);
                if !self.lift(more)? {
                    break;
                }
                desc.field_by_name(&self.r.scratch, hint)
            };
            let Some(idx) = found else {
                if let Some(k) = extra_keys.iter().find(|k| k.as_bytes() == self.r.scratch) {
                    let c = self.r.capture();
                    extras.push((k.to_string(), self.lift(c)?));
                    continue;
                }
                if self.r.scratch == UNKNOWN_KEY.as_bytes() {
                    if !recording {
                        self.record_written(out, base);
                        recording = true;
                    }
                    self.path.key(UNKNOWN_KEY);
                    self.unknown_fields(out)?;
                    self.path.pop();
                    continue;
                }
                let key = String::from_utf8_lossy(&self.r.scratch).into_owned();
                let names: Vec<&str> = desc.fields.iter().map(|f| f.name).collect();
                return self.fail(format!(
                    "{} has no field {key:?} (fields: {})",
                    desc.name.trim_start_matches("criu."),
                    names.join(", ")
                ));
            };
            hint = idx + 1;
            let f = &desc.fields[idx];
            let nested = f.label == Label::Repeated || matches!(f.kind, Kind::Message(_));
            if nested {
                self.path.key(f.name);
            } else {
                self.path.leaf = Some(f.name);
            }
            if seen.test_and_set(idx) {
                return self.fail("field given twice");
            }
            let start = out.len();
            if f.label == Label::Repeated {
                self.repeated(f, out)?;
            } else {
                self.single(f, out)?;
            }
            if nested {
                self.path.pop();
            } else {
                self.path.leaf = None;
            }
            if !recording && f.number < last_number {
                self.record_written(&out[..start], base);
                recording = true;
            }
            last_number = f.number;
            if recording {
                self.segs.push(Written {
                    number: f.number,
                    known: true,
                    start,
                    end: out.len(),
                });
            }
        }
        for (i, f) in desc.fields.iter().enumerate() {
            if f.label == Label::Required && !seen.get(i) {
                return self.fail(format!(
                    "{} lacks required field {:?}",
                    desc.name.trim_start_matches("criu."),
                    f.name
                ));
            }
        }
        let segs = &mut self.segs[frame..];
        if !segs.windows(2).all(|p| p[0].order() <= p[1].order()) {
            // Keys came out of field order: put the fields in order.
            segs.sort_by_key(Written::order);
            let body = out[base..].to_vec();
            out.truncate(base);
            for sg in segs.iter() {
                out.extend_from_slice(&body[sg.start - base..sg.end - base]);
            }
        }
        self.segs.truncate(frame);
        Ok(extras)
    }

    /// Records the fields written so far for this message (from `base` to
    /// the end of `out`), all known and in order, as if each had been
    /// recorded when written.
    fn record_written(&mut self, out: &[u8], base: usize) {
        for f in wire::Fields::new(&out[base..]).flatten() {
            let start = base + f.offset;
            self.segs.push(Written {
                number: f.number,
                known: true,
                start,
                end: start + f.raw.len(),
            });
        }
    }

    /// The `__unknown_fields__` list: hex of raw fields, kept verbatim.
    fn unknown_fields(&mut self, out: &mut Vec<u8>) -> EResult<()> {
        let r = self.r.expect(b'[', "a list of hex strings");
        self.lift(r)?;
        let mut first = true;
        let mut i = 0;
        self.path.index(0);
        loop {
            let more = self.r.next_element(&mut first);
            if !self.lift(more)? {
                break;
            }
            self.path.set_index(i);
            i += 1;
            let s = self.r.string();
            self.lift(s)?;
            let bytes = match hex_decode(&self.r.scratch) {
                Some(b) => b,
                None => return self.fail("not a hex string"),
            };
            let mut pos = 0;
            let tag = wire::read_varint(&bytes, &mut pos).unwrap_or(0);
            let mut fields = wire::Fields::new(&bytes);
            let whole = matches!(fields.next(), Some(Ok(f)) if f.raw.len() == bytes.len());
            if !whole {
                return self.fail("not exactly one protobuf field");
            }
            let start = out.len();
            out.extend_from_slice(&bytes);
            self.segs.push(Written {
                number: (tag >> 3) as u32,
                known: false,
                start,
                end: out.len(),
            });
        }
        self.path.pop();
        Ok(())
    }

    fn repeated(&mut self, f: &FieldDesc, out: &mut Vec<u8>) -> EResult<()> {
        let r = self.r.expect(b'[', "a list");
        self.lift(r)?;
        let mut first = true;
        let mut i = 0;
        let mut packed = Vec::new();
        self.path.index(0);
        loop {
            let more = self.r.next_element(&mut first);
            if !self.lift(more)? {
                break;
            }
            self.path.set_index(i);
            i += 1;
            if f.opts.ipadd && self.r.peek().ok().flatten() == Some(b'"') {
                let s = self.r.string();
                self.lift(s)?;
                let text = String::from_utf8_lossy(&self.r.scratch).into_owned();
                let words = match forms::parse_ip(&text) {
                    Ok(w) => w,
                    Err(e) => return self.fail(e),
                };
                for wv in words {
                    self.put_scalar(f, i128::from(wv), out, &mut packed);
                }
                continue;
            }
            if f.packed {
                let v = self.int(f)?;
                self.put_scalar(f, v, out, &mut packed);
            } else {
                self.single(f, out)?;
            }
        }
        self.path.pop();
        if f.packed && !packed.is_empty() {
            put_tag(out, f.number, wire::LEN);
            put_varint(out, packed.len() as u64);
            out.extend_from_slice(&packed);
        }
        Ok(())
    }

    fn put_scalar(&self, f: &FieldDesc, v: i128, out: &mut Vec<u8>, packed: &mut Vec<u8>) {
        if f.packed {
            put_value(f.kind, v, packed);
        } else {
            put_tag(out, f.number, wire_type(f.kind));
            put_value(f.kind, v, out);
        }
    }

    /// One value of field `f`, with its tag.
    fn single(&mut self, f: &FieldDesc, out: &mut Vec<u8>) -> EResult<()> {
        // Fast path: a plain non-negative integer for a varint field, the
        // bulk of image JSON. Such values encode the same for all four kinds.
        let max = match f.kind {
            Kind::Uint32 => u64::from(u32::MAX),
            Kind::Int32 => i32::MAX as u64,
            Kind::Uint64 => u64::MAX,
            Kind::Int64 => i64::MAX as u64,
            _ => 0,
        };
        if max != 0 {
            if let Some(v) = self.r.try_u64() {
                // Out of range: the same refusal as the general path.
                let v = self.in_range(f, i128::from(v))? as u64;
                put_tag(out, f.number, wire::VARINT);
                put_varint(out, v);
                return Ok(());
            }
        }
        match f.kind {
            Kind::Message(m) => {
                if self.depth >= super::decode::MAX_DEPTH {
                    return self.fail("messages nested too deep");
                }
                put_tag(out, f.number, wire::LEN);
                let at = out.len();
                out.push(0);
                self.depth += 1;
                let r = self.message(m, out, &[]);
                self.depth -= 1;
                r?;
                patch_len(out, at);
            }
            Kind::String => {
                let s = self.r.string();
                self.lift(s)?;
                put_tag(out, f.number, wire::LEN);
                put_varint(out, self.r.scratch.len() as u64);
                out.extend_from_slice(&self.r.scratch);
            }
            Kind::Bytes => {
                let s = self.r.string();
                self.lift(s)?;
                let data = if f.opts.unix_name {
                    qp_decode(&self.r.scratch)
                } else {
                    match base64_decodebytes(&self.r.scratch) {
                        Ok(d) => d,
                        Err(e) => return self.fail(format!("bad base64: {e}")),
                    }
                };
                put_tag(out, f.number, wire::LEN);
                put_varint(out, data.len() as u64);
                out.extend_from_slice(&data);
            }
            Kind::Enum(e) => {
                let en = &ENUMS[e];
                let v = match self.peek()? {
                    b'"' => {
                        let s = self.r.string();
                        self.lift(s)?;
                        match en.number_of(&self.r.scratch) {
                            Some(n) => n,
                            None => {
                                let names: Vec<&str> = en.values.iter().map(|v| v.1).collect();
                                return self.fail(format!(
                                    "{:?} is not a value of {} ({})",
                                    String::from_utf8_lossy(&self.r.scratch),
                                    en.name.trim_start_matches("criu."),
                                    names.join(", ")
                                ));
                            }
                        }
                    }
                    _ => match self.num()? {
                        Number::Int(n) if i32::try_from(n).is_ok() => n as i32,
                        _ => return self.fail("enum number out of range"),
                    },
                };
                put_tag(out, f.number, wire::VARINT);
                put_varint(out, i64::from(v) as u64);
            }
            Kind::Bool => {
                let l = self.r.literal();
                let v = match self.lift(l) {
                    Ok(Some(b)) => b,
                    _ => return self.fail("expected true or false"),
                };
                put_tag(out, f.number, wire::VARINT);
                out.push(u8::from(v));
            }
            _ => {
                let v = self.int(f)?;
                put_tag(out, f.number, wire_type(f.kind));
                put_value(f.kind, v, out);
            }
        }
        Ok(())
    }

    fn peek(&mut self) -> EResult<u8> {
        let p = self.r.peek();
        match self.lift(p)? {
            Some(b) => Ok(b),
            None => self.fail("input ends where a value was expected"),
        }
    }

    fn num(&mut self) -> EResult<Number> {
        let n = self.r.number();
        self.lift(n)
    }

    /// An integer in any of crit's forms, checked against the field's range.
    fn int(&mut self, f: &FieldDesc) -> EResult<i128> {
        let float = matches!(f.kind, Kind::Double | Kind::Float);
        if !float {
            if let Some(v) = self.r.try_u64() {
                return self.in_range(f, i128::from(v));
            }
        }
        let v = match self.peek()? {
            b'"' => {
                let s = self.r.string();
                self.lift(s)?;
                let text = String::from_utf8_lossy(&self.r.scratch).into_owned();
                let parsed = if f.opts.dev {
                    forms::parse_dev(&text, f.opts.odev).map(i128::from)
                } else if let Some(t) = f.opts.flags.and_then(forms::flags_table) {
                    forms::parse_flags(&text, t).map(i128::from)
                } else if let Some(v) = f
                    .opts
                    .dict
                    .and_then(|d| forms::dict_value(d, f.name, &text))
                {
                    Ok(i128::from(v))
                } else {
                    forms::parse_int(&text)
                };
                match parsed {
                    Ok(v) => v,
                    Err(e) => return self.fail(e),
                }
            }
            b'-' | b'0'..=b'9' => match self.num()? {
                // A float field written as an integer.
                Number::Int(v) if float => match f.kind {
                    Kind::Double => return Ok(i128::from((v as f64).to_bits())),
                    _ => return Ok(i128::from((v as f32).to_bits())),
                },
                Number::Int(v) => v,
                Number::Float(x) => match f.kind {
                    Kind::Double => return Ok(i128::from(x.to_bits())),
                    Kind::Float => return Ok(i128::from((x as f32).to_bits())),
                    _ => return self.fail(format!("expected an integer, found {x}")),
                },
            },
            other => {
                return self.fail(format!(
                    "expected an integer, found {}",
                    match other {
                        b'{' => "an object",
                        b'[' => "a list",
                        b't' | b'f' => "a boolean",
                        b'n' => "null",
                        _ => "something else",
                    }
                ))
            }
        };
        self.in_range(f, v)
    }

    /// `v`, if it fits the field's integer kind.
    #[inline]
    fn in_range(&self, f: &FieldDesc, v: i128) -> EResult<i128> {
        let (lo, hi): (i128, i128) = match f.kind {
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => (i32::MIN.into(), i32::MAX.into()),
            Kind::Uint32 | Kind::Fixed32 => (0, u32::MAX.into()),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => (i64::MIN.into(), i64::MAX.into()),
            _ => (0, u64::MAX.into()),
        };
        if v < lo || v > hi {
            return self.fail(format!(
                "{v} is out of range for {:?} field {}",
                f.kind, f.name
            ));
        }
        Ok(v)
    }
}

/// One field's bytes in the output of the message being encoded.
struct Written {
    number: u32,
    /// False for a field kept from `__unknown_fields__`.
    known: bool,
    start: usize,
    end: usize,
}

impl Written {
    /// Fields go by number; a kept unknown field goes before a known field
    /// of the same number, which is where decode found it.
    fn order(&self) -> (u32, bool) {
        (self.number, self.known)
    }
}

/// Which fields of a message were given: a bit set that needs no
/// allocation for messages of up to 64 fields.
enum Seen {
    Bits(u64),
    Many(Vec<bool>),
}

impl Seen {
    fn new(n: usize) -> Self {
        if n <= 64 {
            Seen::Bits(0)
        } else {
            Seen::Many(vec![false; n])
        }
    }

    /// Marks field `i`; true if it was already marked.
    fn test_and_set(&mut self, i: usize) -> bool {
        match self {
            Seen::Bits(b) => {
                let was = *b & (1 << i) != 0;
                *b |= 1 << i;
                was
            }
            Seen::Many(v) => std::mem::replace(&mut v[i], true),
        }
    }

    fn get(&self, i: usize) -> bool {
        match self {
            Seen::Bits(b) => *b & (1 << i) != 0,
            Seen::Many(v) => v[i],
        }
    }
}

/// Writes the value of a scalar of `kind` (no tag).
fn put_value(kind: Kind, v: i128, out: &mut Vec<u8>) {
    match kind {
        Kind::Fixed32 | Kind::Sfixed32 | Kind::Float => {
            out.extend_from_slice(&(v as u32).to_le_bytes())
        }
        Kind::Fixed64 | Kind::Sfixed64 | Kind::Double => {
            out.extend_from_slice(&(v as u64).to_le_bytes())
        }
        Kind::Sint32 => {
            let x = v as i32;
            put_varint(out, u64::from(((x << 1) ^ (x >> 31)) as u32));
        }
        Kind::Sint64 => {
            let x = v as i64;
            put_varint(out, ((x << 1) ^ (x >> 63)) as u64);
        }
        // int32, int64, enums: negative values are sign-extended to 64 bits.
        _ => put_varint(out, v as i64 as u64),
    }
}

/// Fills in a length byte reserved at `at`, widening it when the nested
/// message turned out to be 128 bytes or longer.
pub fn patch_len(out: &mut Vec<u8>, at: usize) {
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
        return;
    }
    let mut lb = Vec::with_capacity(10);
    put_varint(&mut lb, len as u64);
    let extra = lb.len() - 1;
    out.resize(out.len() + extra, 0);
    out.copy_within(at + 1..at + 1 + len, at + 1 + extra);
    out[at..at + lb.len()].copy_from_slice(&lb);
}

fn hex_decode(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks(2)
        .map(|p| {
            let t = std::str::from_utf8(p).ok()?;
            u8::from_str_radix(t, 16).ok()
        })
        .collect()
}
