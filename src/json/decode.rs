//! Protobuf message bytes to crit's JSON, driven by the schema tables.
//!
//! Mirrors crit 4.2's `pb2dict`: fields in field-number order, only those
//! present, enums by name, bytes as base64 (or quoted-printable for unix
//! socket names), and in pretty mode CRIU's hex, flags, dict, dev and IP
//! forms. Beyond crit 4.2: an enum number the schema does not know is
//! printed as that number; string bytes that are not UTF-8 are printed as
//! `\udcXX` escapes; fields the schema does not know are kept, as hex of
//! their exact wire bytes, under [`UNKNOWN_KEY`].

use super::bytes_forms::{base64_encodebytes, qp_encode};
use super::forms;
use super::writer::JsonWriter;
use crate::image::schema::{FieldDesc, Kind, Label, MESSAGES};
use crate::image::wire::{self, Fields, RawField, WireError};
use std::io::Write;

/// JSON key holding fields unknown to our schema, each as the hex of its
/// tag and value exactly as they were on the wire.
pub const UNKNOWN_KEY: &str = "__unknown_fields__";

/// Rendering options.
#[derive(Clone, Copy)]
pub struct Style {
    /// CRIU's pretty value forms (hex, flags, dict, dev, IP).
    pub pretty: bool,
}

/// Deepest message nesting decoded. Some messages contain themselves
/// (cgroup directories), so a crafted image could nest without end.
pub const MAX_DEPTH: usize = 100;

/// Writes message `msg` (index into `MESSAGES`), encoded in `bytes`, as a
/// JSON object. Errors carry offsets relative to `bytes`.
pub fn message<W: Write>(
    w: &mut JsonWriter<W>,
    msg: usize,
    bytes: &[u8],
    style: Style,
    hex: bool,
) -> Result<(), WireError> {
    message_at(w, msg, bytes, style, hex, 0)
}

fn message_at<W: Write>(
    w: &mut JsonWriter<W>,
    msg: usize,
    bytes: &[u8],
    style: Style,
    hex: bool,
    depth: usize,
) -> Result<(), WireError> {
    message_open_at(w, msg, bytes, style, hex, depth)?;
    w.end_object();
    Ok(())
}

/// Like [`message`], but leaves the object open so that the caller can add
/// members (crit's `"extra"`).
pub fn message_open<W: Write>(
    w: &mut JsonWriter<W>,
    msg: usize,
    bytes: &[u8],
    style: Style,
    hex: bool,
) -> Result<(), WireError> {
    message_open_at(w, msg, bytes, style, hex, 0)
}

fn message_open_at<W: Write>(
    w: &mut JsonWriter<W>,
    msg: usize,
    bytes: &[u8],
    style: Style,
    hex: bool,
    depth: usize,
) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError {
            offset: 0,
            reason: format!("messages nested deeper than {MAX_DEPTH} levels"),
        });
    }
    let desc = &MESSAGES[msg];
    // (field index or UNKNOWN, raw field). Small messages, the common case,
    // stay on the stack.
    let mut inline: [(usize, RawField); 20] = [(UNKNOWN, RawField::EMPTY); 20];
    let mut heap: Vec<(usize, RawField)> = Vec::new();
    let mut n = 0;
    let mut hint = 0;
    for rf in Fields::new(bytes) {
        let rf = rf?;
        let idx = match desc.field_by_number_from(rf.number, hint) {
            Some(i) if wire_fits(&desc.fields[i], rf.wire) => {
                hint = i + 1;
                i
            }
            _ => UNKNOWN,
        };
        if n < inline.len() {
            inline[n] = (idx, rf);
        } else {
            if heap.is_empty() {
                heap.extend_from_slice(&inline);
            }
            heap.push((idx, rf));
        }
        n += 1;
    }
    let found: &mut [(usize, RawField)] = if heap.is_empty() {
        &mut inline[..n]
    } else {
        &mut heap
    };
    // A non-repeated field seen twice keeps its last value; the earlier
    // ones are kept verbatim as unknown bytes so that nothing is lost.
    let mut last_inline = [usize::MAX; 64];
    let mut last_heap = Vec::new();
    let last: &mut [usize] = if desc.fields.len() <= 64 {
        &mut last_inline[..desc.fields.len()]
    } else {
        last_heap.resize(desc.fields.len(), usize::MAX);
        &mut last_heap
    };
    for (pos, (idx, _)) in found.iter().enumerate() {
        if *idx != UNKNOWN {
            last[*idx] = pos;
        }
    }
    for (pos, entry) in found.iter_mut().enumerate() {
        let idx = entry.0;
        if idx != UNKNOWN && desc.fields[idx].label != Label::Repeated && last[idx] != pos {
            entry.0 = UNKNOWN;
        }
    }
    for (i, f) in desc.fields.iter().enumerate() {
        if f.label == Label::Required && last[i] == usize::MAX {
            return Err(WireError {
                offset: 0,
                reason: format!("{} lacks required field {}", short(desc.name), f.name),
            });
        }
    }
    if !found.windows(2).all(|p| order(&p[0]) <= order(&p[1])) {
        found.sort_by_key(order);
    }

    w.begin_object();
    let mut i = 0;
    while i < found.len() && found[i].0 != UNKNOWN {
        let idx = found[i].0;
        let f = &desc.fields[idx];
        let mut j = i;
        while j < found.len() && found[j].0 == idx {
            j += 1;
        }
        w.key(f.name);
        if f.label == Label::Repeated {
            repeated(w, f, &found[i..j], bytes, style, hex, depth)?;
        } else {
            value(w, f, &found[i].1, bytes, style, hex, depth)?;
        }
        i = j;
    }
    if i < found.len() {
        w.key(UNKNOWN_KEY);
        w.begin_array();
        for (_, rf) in &found[i..] {
            w.element();
            let mut s = String::with_capacity(rf.raw.len() * 2);
            for b in rf.raw {
                s.push_str(&format!("{b:02x}"));
            }
            w.str(s.as_bytes());
        }
        w.end_array();
    }
    Ok(())
}

/// Marks a field the schema does not know (or an earlier duplicate).
const UNKNOWN: usize = usize::MAX;

fn short(name: &str) -> &str {
    name.strip_prefix("criu.").unwrap_or(name)
}

/// Known fields by number, then unknown ones by number (each group stable,
/// so repeated fields keep their order). The encoder puts an unknown field
/// before a known one of the same number, so that decode, encode, decode
/// gives the same JSON and an earlier duplicate stays the earlier one.
fn order(e: &(usize, RawField)) -> (bool, u32) {
    (e.0 == UNKNOWN, e.1.number)
}

/// Whether a wire type is what the schema writes for this field. Anything
/// else (say a packed encoding of an unpacked field) is kept as unknown
/// bytes, so the image still re-encodes exactly.
fn wire_fits(f: &FieldDesc, w: u8) -> bool {
    if f.packed {
        return w == wire::LEN;
    }
    w == wire_type(f.kind)
}

pub fn wire_type(k: Kind) -> u8 {
    match k {
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => wire::FIXED64,
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => wire::FIXED32,
        Kind::String | Kind::Bytes | Kind::Message(_) => wire::LEN,
        _ => wire::VARINT,
    }
}

fn repeated<W: Write>(
    w: &mut JsonWriter<W>,
    f: &FieldDesc,
    items: &[(usize, RawField)],
    whole: &[u8],
    style: Style,
    hex: bool,
    depth: usize,
) -> Result<(), WireError> {
    if f.packed {
        // Expand each packed run into single values first.
        let mut scalars: Vec<u64> = Vec::new();
        for (_, rf) in items {
            let mut pos = 0;
            while pos < rf.data.len() {
                let v = match wire_type(f.kind) {
                    wire::FIXED64 => take_fixed(rf.data, &mut pos, 8),
                    wire::FIXED32 => take_fixed(rf.data, &mut pos, 4),
                    _ => wire::read_varint(rf.data, &mut pos).ok(),
                };
                scalars.push(v.ok_or_else(|| WireError {
                    offset: offset_in(whole, rf.data),
                    reason: format!("bad packed value in field {}", f.name),
                })?);
            }
        }
        return scalar_list(w, f, &scalars, style, hex);
    }
    if matches!(
        f.kind,
        Kind::Message(_) | Kind::String | Kind::Bytes | Kind::Enum(_) | Kind::Bool
    ) {
        w.begin_array();
        for (_, rf) in items {
            w.element();
            value(w, f, rf, whole, style, hex, depth)?;
        }
        w.end_array();
        return Ok(());
    }
    let scalars: Vec<u64> = items.iter().map(|(_, rf)| rf.value).collect();
    scalar_list(w, f, &scalars, style, hex)
}

fn take_fixed(d: &[u8], pos: &mut usize, n: usize) -> Option<u64> {
    let b = d.get(*pos..*pos + n)?;
    *pos += n;
    let mut a = [0u8; 8];
    a[..n].copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

fn scalar_list<W: Write>(
    w: &mut JsonWriter<W>,
    f: &FieldDesc,
    vals: &[u64],
    style: Style,
    hex: bool,
) -> Result<(), WireError> {
    w.begin_array();
    if style.pretty && f.opts.ipadd {
        let words: Vec<u32> = vals.iter().map(|v| *v as u32).collect();
        if let Some(ip) = forms::format_ip(&words) {
            w.element();
            w.str(ip.as_bytes());
            w.end_array();
            return Ok(());
        }
    }
    for v in vals {
        w.element();
        int(w, f, *v, style, hex);
    }
    w.end_array();
    Ok(())
}

fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}

fn value<W: Write>(
    w: &mut JsonWriter<W>,
    f: &FieldDesc,
    rf: &RawField,
    whole: &[u8],
    style: Style,
    hex: bool,
    depth: usize,
) -> Result<(), WireError> {
    match f.kind {
        Kind::Message(m) => {
            message_at(w, m, rf.data, style, hex || f.opts.hex, depth + 1).map_err(|e| WireError {
                offset: e.offset + offset_in(whole, rf.data),
                reason: format!("in {}: {}", f.name, e.reason),
            })
        }
        Kind::Bytes => {
            let mut s = Vec::with_capacity(rf.data.len() * 4 / 3 + 4);
            if f.opts.unix_name {
                qp_encode(rf.data, &mut s);
            } else {
                base64_encodebytes(rf.data, &mut s);
            }
            w.str(&s);
            Ok(())
        }
        Kind::String => {
            w.str(rf.data);
            Ok(())
        }
        Kind::Enum(e) => {
            let n = rf.value as i32;
            match crate::image::schema::ENUMS[e].name_of(n) {
                Some(name) => w.str(name.as_bytes()),
                None => w.i64(i64::from(n)),
            }
            Ok(())
        }
        Kind::Bool => {
            w.bool(rf.value != 0);
            Ok(())
        }
        _ => {
            int(w, f, rf.value, style, hex);
            Ok(())
        }
    }
}

/// The integer a scalar field holds, from its raw wire value.
pub fn int_value(kind: Kind, raw: u64) -> i128 {
    match kind {
        Kind::Int32 | Kind::Sfixed32 => i128::from(raw as u32 as i32),
        Kind::Int64 | Kind::Sfixed64 => i128::from(raw as i64),
        Kind::Uint32 | Kind::Fixed32 => i128::from(raw as u32),
        Kind::Sint32 => {
            let u = raw as u32;
            i128::from(((u >> 1) as i32) ^ -((u & 1) as i32))
        }
        Kind::Sint64 => i128::from(((raw >> 1) as i64) ^ -((raw & 1) as i64)),
        _ => i128::from(raw),
    }
}

fn int<W: Write>(w: &mut JsonWriter<W>, f: &FieldDesc, raw: u64, style: Style, hex: bool) {
    match f.kind {
        Kind::Double => return float(w, f64::from_bits(raw)),
        Kind::Float => return float(w, f64::from(f32::from_bits(raw as u32))),
        _ => {}
    }
    let v = int_value(f.kind, raw);
    if style.pretty {
        if hex || f.opts.hex {
            return w.str(forms::format_hex(v).as_bytes());
        }
        if f.opts.dev {
            return w.str(forms::format_dev(v as u64, f.opts.odev).as_bytes());
        }
        if let Some(flags) = f.opts.flags {
            let s = match forms::flags_table(flags) {
                Some(t) => {
                    let mut s = String::new();
                    forms::format_flags(v as u64, t, &mut s);
                    s
                }
                None => forms::format_hex(v),
            };
            return w.str(s.as_bytes());
        }
        if let Some(d) = f.opts.dict {
            if let Some(name) = forms::dict_name(d, f.name, v as u64) {
                return w.str(name.as_bytes());
            }
        }
    }
    if v < 0 {
        w.i64(v as i64);
    } else {
        w.u64(v as u64);
    }
}

/// Python's float repr for the values a schema might carry (CRIU's have
/// no floating-point fields today).
fn float<W: Write>(w: &mut JsonWriter<W>, v: f64) {
    let s = if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        format!("{v}")
    };
    w.raw(s.as_bytes());
}
