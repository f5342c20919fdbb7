//! JSON Schemas (draft 2020-12) for crit's JSON form of every image type,
//! generated from the descriptor tables alone: [`MESSAGES`] and [`ENUMS`]
//! for the entries, [`MAGICS`] for how entries are laid out, and the pretty
//! forms' tables in [`forms`].
//!
//! A schema accepts what `crit encode` accepts, in both the compact and the
//! pretty forms: integers as JSON integers or as strings in the forms the
//! field's options allow, enums by name or number, bytes as base64 (unix
//! socket names as quoted-printable), unknown fields under
//! [`UNKNOWN_KEY`], and each payload-carrying entry's `"extra"`. Some checks
//! stay with the encoder: the range of integers written as strings (for
//! unsigned fields only their sign is checked), and that an `"extra"` holds
//! as many bytes as its entry says. Base64 must come in whole 4-character
//! groups, which is stricter than the encoder's lenient (Python) decoder.
//!
//! Each message reached from the image's entries gets one definition in
//! `$defs`, named by its short name (`criu.` dropped); so does each enum.

use super::decode::UNKNOWN_KEY;
use super::forms;
use crate::image::magic::{Layout, Magic, Payload, MAGICS};
use crate::image::schema::{msg, FieldDesc, Kind, Label, ENUMS, MESSAGES};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The draft every generated schema declares.
pub const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

/// Python's `int(text, 0)` as [`forms::parse_int`] takes it, without anchors.
const INT_LITERAL: &str = r"\s*[+-]?(?:0[xX]_?[0-9a-fA-F]+(?:_[0-9a-fA-F]+)*|0[oO]_?[0-7]+(?:_[0-7]+)*|0[bB]_?[01]+(?:_[01]+)*|[1-9][0-9]*(?:_[0-9]+)*|0+(?:_0+)*)\s*";

/// A non-negative integer literal, as a part of a flags string may be.
const UINT_LITERAL: &str = r"\+?(?:0[xX]_?[0-9a-fA-F]+(?:_[0-9a-fA-F]+)*|0[oO]_?[0-7]+(?:_[0-7]+)*|0[bB]_?[01]+(?:_[01]+)*|[1-9][0-9]*(?:_[0-9]+)*|0+(?:_0+)*)";

/// [`INT_LITERAL`] for unsigned fields: no minus sign but on a zero.
const UNSIGNED_LITERAL: &str = r"\s*(?:\+?(?:0[xX]_?[0-9a-fA-F]+(?:_[0-9a-fA-F]+)*|0[oO]_?[0-7]+(?:_[0-7]+)*|0[bB]_?[01]+(?:_[01]+)*|[1-9][0-9]*(?:_[0-9]+)*|0+(?:_0+)*)|-(?:0[xX]_?0+(?:_0+)*|0[oO]_?0+(?:_0+)*|0[bB]_?0+(?:_0+)*|0+(?:_0+)*))\s*";

/// `"major:minor"`, as [`forms::parse_dev`] takes it.
const DEV_PATTERN: &str = r"^\s*\+?[0-9]+\s*:\s*\+?[0-9]+\s*$";

/// Base64 in whole 4-character groups, padded at the end, with whitespace
/// between groups (Python's `base64.encodebytes` puts a newline after every
/// 19 groups). Stricter than the encoder's lenient decoder, which skips
/// stray characters.
pub const BASE64_PATTERN: &str =
    r"^(?:[A-Za-z0-9+/]{4}|\s)*(?:(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)\s*)?$";

const IPV4: &str = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}";

/// The file name of `magic`'s schema, e.g. `pipes-data.schema.json`.
pub fn file_name(magic: &Magic) -> String {
    format!(
        "{}.schema.json",
        magic.name.to_ascii_lowercase().replace('_', "-")
    )
}

/// Every image type's schema: `(file name, content)`, in [`MAGICS`] order.
/// The file names are bare; the project keeps them in `schemas/`.
pub fn all() -> Vec<(String, String)> {
    MAGICS.iter().map(|m| (file_name(m), generate(m))).collect()
}

/// The JSON Schema of `magic`'s JSON form, pretty printed, ending in a
/// newline. The same tables always give the same text.
pub fn generate(magic: &Magic) -> String {
    let mut s = serde_json::to_string_pretty(&document(magic)).unwrap_or_default();
    s.push('\n');
    s
}

/// The schema as a JSON value.
pub fn document(magic: &Magic) -> Value {
    let roots = roots(magic);
    let mut g = Gen::default();
    for r in &roots {
        g.walk_fields(r.msg, false);
        if r.extra == Extra::IpcMsg {
            g.reach(msg::IPC_MSG, false);
        }
    }
    // Messages some field (or an ipcns-msg "extra") refers to, as opposed
    // to only being an image's entry.
    let inner = g.msgs.clone();

    let mut defs: BTreeMap<String, Value> = BTreeMap::new();
    let mut items: Vec<Value> = Vec::new();
    for r in &roots {
        let short = short(MESSAGES[r.msg].name);
        let name = if r.extra != Extra::None && inner.contains(&r.msg) {
            format!("{short}+extra")
        } else {
            short.to_string()
        };
        let mut def = g.message_def(r.msg);
        if r.extra != Extra::None {
            add_extra(&mut def, r.extra, &short_ref(msg::IPC_MSG));
            if let Value::Object(o) = &mut def {
                let d =
                    format!(
                    "{} As an entry of a {} image, with the bytes that follow it under \"extra\".",
                    o.get("description").and_then(Value::as_str).unwrap_or_default(),
                    magic.name
                );
                o.insert("description".into(), Value::String(d));
            }
        }
        if magic.layout == Layout::GhostFile && r.msg == msg::GHOST_FILE_ENTRY {
            if let Value::Object(o) = &mut def {
                o.insert(
                    "if".into(),
                    json!({"properties": {"chunks": {"const": true}}, "required": ["chunks"]}),
                );
                o.insert("then".into(), json!({"not": {"required": ["extra"]}}));
            }
        }
        items.push(json!({ "$ref": format!("#/$defs/{name}") }));
        defs.insert(name, def);
    }
    for &m in &g.msgs {
        defs.insert(short(MESSAGES[m].name).to_string(), g.message_def(m));
    }
    for &e in &g.enums {
        defs.insert(short(ENUMS[e].name).to_string(), enum_def(e));
    }

    // Every layout has one or two kinds of entry: the first entry's, and
    // the rest's.
    let first = items.first().cloned().unwrap_or(Value::Bool(true));
    let rest = items.get(1).cloned().unwrap_or(Value::Bool(true));
    let entries = match magic.layout {
        Layout::Entries(m, _) => json!({
            "description": format!("The image's entries, each a {} message.", MESSAGES[m].name),
            "type": "array",
            "items": first,
        }),
        Layout::Pagemap => json!({
            "description": "A pagemap_head, then one pagemap_entry per run of pages.",
            "type": "array",
            "prefixItems": [first],
            "items": rest,
        }),
        Layout::GhostFile => json!({
            "description": "A ghost_file_entry (with the file's bytes in \"extra\" unless it sets chunks), then, if it sets chunks, one ghost_chunk_entry per chunk with that chunk's bytes in \"extra\".",
            "type": "array",
            "minItems": 1,
            "prefixItems": [first],
            "items": rest,
        }),
    };

    let mut doc = Map::new();
    doc.insert("$schema".into(), DRAFT.into());
    doc.insert(
        "title".into(),
        format!("crit JSON: {} image", magic.name).into(),
    );
    doc.insert(
        "description".into(),
        format!(
            "CRIU {} images (magic {:#010x}) in crit's JSON form, compact or pretty, as crit prints them and crit encode reads them. Generated from crit's descriptor tables by src/json/schema.rs: do not edit.",
            magic.name, magic.value
        )
        .into(),
    );
    doc.insert("type".into(), "object".into());
    doc.insert(
        "properties".into(),
        json!({
            "magic": {"description": "The image type.", "const": magic.name},
            "entries": entries,
        }),
    );
    doc.insert("required".into(), json!(["magic", "entries"]));
    doc.insert("additionalProperties".into(), false.into());
    doc.insert("$defs".into(), Value::Object(defs.into_iter().collect()));
    Value::Object(doc)
}

/// What follows an entry's message, as `"extra"`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Extra {
    None,
    /// One base64 string.
    Base64,
    TcpStream,
    IpcSem,
    IpcMsg,
}

struct Root {
    msg: usize,
    extra: Extra,
}

fn roots(magic: &Magic) -> Vec<Root> {
    match magic.layout {
        Layout::Entries(m, p) => vec![Root {
            msg: m,
            extra: match p {
                Payload::None => Extra::None,
                Payload::PipeData | Payload::SkQueue | Payload::BpfMap | Payload::IpcShm => {
                    Extra::Base64
                }
                Payload::TcpStream => Extra::TcpStream,
                Payload::IpcSem => Extra::IpcSem,
                Payload::IpcMsg => Extra::IpcMsg,
            },
        }],
        Layout::Pagemap => vec![
            Root {
                msg: msg::PAGEMAP_HEAD,
                extra: Extra::None,
            },
            Root {
                msg: msg::PAGEMAP_ENTRY,
                extra: Extra::None,
            },
        ],
        Layout::GhostFile => vec![
            Root {
                msg: msg::GHOST_FILE_ENTRY,
                extra: Extra::Base64,
            },
            Root {
                msg: msg::GHOST_CHUNK_ENTRY,
                extra: Extra::Base64,
            },
        ],
    }
}

fn short(name: &str) -> &str {
    name.strip_prefix("criu.").unwrap_or(name)
}

fn short_ref(m: usize) -> String {
    format!("#/$defs/{}", short(MESSAGES[m].name))
}

fn base64_schema(what: &str) -> Value {
    json!({
        "description": format!("{what}, in base64 as Python's base64.encodebytes writes it (a newline after every 76 characters and at the end)."),
        "type": "string",
        "pattern": BASE64_PATTERN,
    })
}

fn add_extra(def: &mut Value, extra: Extra, ipc_msg_ref: &str) {
    let schema = match extra {
        Extra::None => return,
        Extra::Base64 => base64_schema("The bytes that follow the entry in the image"),
        Extra::TcpStream => json!({
            "description": "The socket's queued data.",
            "type": "object",
            "properties": {
                "inq": base64_schema("The input queue (inq_len bytes)"),
                "outq": base64_schema("The output queue (outq_len bytes)"),
            },
            "additionalProperties": false,
        }),
        Extra::IpcSem => json!({
            "description": "The nsems semaphore values.",
            "type": "array",
            "items": {"type": "integer", "minimum": 0, "maximum": 65535},
        }),
        Extra::IpcMsg => json!({
            "description": "The qnum queued messages, alternating: an ipc_msg header (in the compact form), then its data in base64.",
            "type": "array",
            "items": {
                "oneOf": [
                    {"$ref": ipc_msg_ref},
                    base64_schema("A message's data (msize bytes)"),
                ]
            },
        }),
    };
    if let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("extra".into(), schema);
    }
}

#[derive(Default)]
struct Gen {
    /// Messages reached through fields.
    msgs: BTreeSet<usize>,
    enums: BTreeSet<usize>,
    /// Messages reached through a hex-marked field, whose integers the
    /// pretty form prints in hex.
    hex: BTreeSet<usize>,
}

impl Gen {
    fn reach(&mut self, m: usize, hex: bool) {
        let new = self.msgs.insert(m);
        let new_hex = hex && self.hex.insert(m);
        if new || new_hex {
            self.walk_fields(m, hex);
        }
    }

    fn walk_fields(&mut self, m: usize, hex: bool) {
        for f in MESSAGES[m].fields {
            match f.kind {
                Kind::Message(n) => self.reach(n, hex || f.opts.hex),
                Kind::Enum(e) => {
                    self.enums.insert(e);
                }
                _ => {}
            }
        }
    }

    fn message_def(&self, m: usize) -> Value {
        let desc = &MESSAGES[m];
        let mut props = Map::new();
        let mut required = Vec::new();
        for f in desc.fields {
            props.insert(f.name.into(), field_schema(f));
            if f.label == Label::Required {
                required.push(Value::String(f.name.into()));
            }
        }
        props.insert(
            UNKNOWN_KEY.into(),
            json!({
                "description": "Fields crit's schema does not know, each the hex of one protobuf field (tag and value) exactly as on the wire; written back verbatim.",
                "type": "array",
                "items": {"type": "string", "pattern": "^(?:[0-9a-fA-F]{2})+$"},
            }),
        );
        let mut about = format!("message {}.", desc.name);
        if self.hex.contains(&m) {
            about.push_str(
                " Reached through a hex-marked field: the pretty form prints all its integers, and those of the messages in it, as hex strings (\"0x1f\").",
            );
        }
        let mut def = Map::new();
        def.insert("description".into(), about.into());
        def.insert("type".into(), "object".into());
        def.insert("properties".into(), Value::Object(props));
        if !required.is_empty() {
            def.insert("required".into(), Value::Array(required));
        }
        def.insert("additionalProperties".into(), false.into());
        Value::Object(def)
    }
}

fn enum_def(e: usize) -> Value {
    let en = &ENUMS[e];
    let names: Vec<Value> = en
        .values
        .iter()
        .map(|v| Value::String(v.1.into()))
        .collect();
    let listed: Vec<String> = en
        .values
        .iter()
        .map(|(n, s)| format!("{s} = {n}"))
        .collect();
    json!({
        "description": format!("enum {}: {}. By name, or by number (numbers without a name are kept).", en.name, listed.join(", ")),
        "oneOf": [
            {"enum": names},
            {"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX},
        ],
    })
}

fn kind_name(k: Kind) -> String {
    match k {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Enum(e) => short(ENUMS[e].name).into(),
        Kind::Message(m) => short(MESSAGES[m].name).into(),
    }
}

/// The field as a proto declaration: `optional uint32 dev = 4 [(criu).dev = true]`.
fn declaration(f: &FieldDesc) -> String {
    let label = match f.label {
        Label::Optional => "optional",
        Label::Required => "required",
        Label::Repeated => "repeated",
    };
    let mut opts = Vec::new();
    if f.packed {
        opts.push("packed = true".to_string());
    }
    let o = &f.opts;
    for (on, name) in [
        (o.hex, "hex"),
        (o.ipadd, "ipadd"),
        (o.dev, "dev"),
        (o.odev, "odev"),
        (o.unix_name, "unix_name"),
    ] {
        if on {
            opts.push(format!("(criu).{name} = true"));
        }
    }
    if let Some(t) = o.flags {
        opts.push(format!("(criu).flags = \"{t}\""));
    }
    if let Some(t) = o.dict {
        opts.push(format!("(criu).dict = \"{t}\""));
    }
    let mut s = format!("{label} {} {} = {}", kind_name(f.kind), f.name, f.number);
    if !opts.is_empty() {
        s.push_str(&format!(" [{}]", opts.join(", ")));
    }
    s
}

fn field_schema(f: &FieldDesc) -> Value {
    let (mut value, mut forms) = value_schema(f);
    let ipadd = f.opts.ipadd && f.label == Label::Repeated;
    if ipadd {
        // A string element is always read as an address, never as an
        // integer literal.
        let (lo, hi) = bounds(f.kind);
        value = json!({"type": "integer", "minimum": lo, "maximum": hi});
        forms = format!(
            "A list of {}s (one word for IPv4, four for IPv6, in network byte order), or in the pretty form a list holding one IPv4 or IPv6 address.",
            kind_name(f.kind)
        );
    }
    let mut about = format!("{}.", declaration(f));
    if !forms.is_empty() {
        about.push(' ');
        about.push_str(&forms);
    }
    let mut s = Map::new();
    s.insert("description".into(), about.into());
    if f.label == Label::Repeated {
        let items = if ipadd {
            json!({"oneOf": [value, ip_schema()]})
        } else {
            value
        };
        s.insert("type".into(), "array".into());
        s.insert("items".into(), items);
    } else if let Value::Object(o) = value {
        s.extend(o);
    }
    Value::Object(s)
}

fn ip_schema() -> Value {
    json!({
        "description": "An IPv4 or IPv6 address, standing for the one or four words of the address.",
        "type": "string",
        "anyOf": [
            {"pattern": format!("^{IPV4}$")},
            {"pattern": format!("^(?:[0-9A-Fa-f]{{0,4}}:){{2,7}}(?:[0-9A-Fa-f]{{0,4}}|{IPV4})$")},
        ],
    })
}

/// The schema of one value of `f`, and a sentence on its forms.
fn value_schema(f: &FieldDesc) -> (Value, String) {
    match f.kind {
        Kind::Message(m) => (json!({ "$ref": short_ref(m) }), String::new()),
        Kind::Enum(e) => (
            json!({ "$ref": format!("#/$defs/{}", short(ENUMS[e].name)) }),
            "By name or by number.".into(),
        ),
        Kind::Bool => (json!({"type": "boolean"}), String::new()),
        Kind::String => (json!({"type": "string"}), String::new()),
        Kind::Bytes if f.opts.unix_name => (
            json!({"type": "string"}),
            "Quoted-printable, as Python's quopri.encodestring writes it.".into(),
        ),
        Kind::Bytes => (
            json!({"type": "string", "pattern": BASE64_PATTERN}),
            "Base64, as Python's base64.encodebytes writes it (a newline after every 76 characters and at the end).".into(),
        ),
        Kind::Double | Kind::Float => (json!({"type": "number"}), String::new()),
        _ => int_schema(f),
    }
}

/// Bounds of the integer kinds, as the encoder checks them.
fn bounds(k: Kind) -> (Value, Value) {
    match k {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => (i32::MIN.into(), i32::MAX.into()),
        Kind::Uint32 | Kind::Fixed32 => (0.into(), u32::MAX.into()),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => (i64::MIN.into(), i64::MAX.into()),
        _ => (0.into(), u64::MAX.into()),
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\^$.|?*+()[]{}/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn alternation(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| regex_escape(n))
        .collect::<Vec<_>>()
        .join("|")
}

/// The names of `f`'s dict table, in value order.
fn dict_names(dict: &str, field: &str) -> Vec<&'static str> {
    (0..=u64::from(u16::MAX))
        .filter_map(|v| forms::dict_name(dict, field, v))
        .collect()
}

/// An integer field: a JSON integer within the kind's bounds, or a string in
/// the form the encoder takes for this field (tried in its order: device,
/// flags, dict name, Python integer literal).
fn int_schema(f: &FieldDesc) -> (Value, String) {
    let o = &f.opts;
    let signed = matches!(
        f.kind,
        Kind::Int32 | Kind::Int64 | Kind::Sint32 | Kind::Sint64 | Kind::Sfixed32 | Kind::Sfixed64
    );
    let literal = if signed {
        INT_LITERAL
    } else {
        UNSIGNED_LITERAL
    };
    let kind = kind_name(f.kind);
    let (pattern, forms) = if o.dev {
        let enc = if o.odev {
            "glibc's old makedev encoding"
        } else {
            "the kernel's major << 20 | minor"
        };
        (
            DEV_PATTERN.to_string(),
            format!("A {kind}, or in the pretty form a device number \"major:minor\" ({enc})."),
        )
    } else if let Some(table) = o.flags.and_then(forms::flags_table) {
        let names: Vec<&str> = table.iter().map(|t| t.0).collect();
        let part = format!(r"\s*(?:{}|{UINT_LITERAL})\s*", alternation(&names));
        (
            format!(r"^(?:{part}(?:\|{part})*)?$"),
            format!(
                "A {kind}, or in the pretty form flag names ({}) and leftover bits in hex joined by \" | \"; \"\" is 0.",
                names.join(", ")
            ),
        )
    } else if let Some(names) = o
        .dict
        .map(|d| dict_names(d, f.name))
        .filter(|n| !n.is_empty())
    {
        (
            format!(r"^(?:{}|{literal})$", alternation(&names)),
            format!(
                "A {kind}, or in the pretty form its name ({}); a number without a name stays a number.",
                names.join(", ")
            ),
        )
    } else if o.hex {
        (
            format!("^{literal}$"),
            format!("A {kind}; the pretty form prints it as a hex string (\"0x1f\"). Any Python integer literal string is taken."),
        )
    } else {
        (
            format!("^{literal}$"),
            format!("A {kind}, or a string holding a Python integer literal (\"17\", \"0x11\")."),
        )
    };
    let (lo, hi) = bounds(f.kind);
    (
        json!({
            "oneOf": [
                {"type": "integer", "minimum": lo, "maximum": hi},
                {"type": "string", "pattern": pattern},
            ]
        }),
        forms,
    )
}
