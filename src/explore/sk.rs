//! `crit x DIR sk`: the unix sockets of a dump (no crit 4.2 equivalent).
//!
//! Sockets come from the `usk` entries of `files.img` and, for old image
//! layouts, the entries of `unixsk.img`; one line each, sorted by inode
//! (ties keep file order). Text: a header, then aligned columns separated
//! by two spaces — INODE (right-aligned, 10), TYPE (9), STATE (11), PEER
//! (right-aligned, 10), QUEUED (right-aligned, 8), HOLDERS (14), NAME —
//! and, for some sockets, a trailing note after two more spaces:
//!
//! ```text
//!      INODE  TYPE       STATE              PEER    QUEUED  HOLDERS         NAME
//!     306394  STREAM     LISTEN                -         0  26727:3         /tmp/scen/sock/srv.sock
//!     306398  SEQPACKET  LISTEN                -         0  26727:7         @scen-abstract
//!     306782  DGRAM      ESTABLISHED      307648         0  26841:3         -  ext->/tmp/scen/sock/extdg.sock
//!     307648  DGRAM      LISTEN                -         0  -               /tmp/scen/sock/extdg.sock  external
//! ```
//!
//! * INODE: the socket's inode (`ino`).
//! * TYPE: `STREAM`, `DGRAM`, `SEQPACKET`, … (crit's `sk` names), or the
//!   number when it has no name.
//! * STATE: `ESTABLISHED`, `LISTEN`, `CLOSE`, … likewise.
//! * PEER: the peer's inode, `-` for none (0).
//! * QUEUED: bytes queued on the socket in `sk-queues.img` (sum of the
//!   `length` of the packets whose `id_for` is the socket's file id).
//! * HOLDERS: `PID:FD` for every descriptor of a process that holds the
//!   socket (from `fdinfo-ID.img` via `ids-PID.img`, as `fds` does),
//!   comma-separated, or `-` when no process does (e.g. external sockets).
//! * NAME: `-` for none; an abstract name (first byte NUL) as `@` and the
//!   rest; a path name as is, without its trailing NUL terminator(s).
//!   Backslashes, control characters and invalid UTF-8 are escaped
//!   (`\\`, `\xNN`, `\u{N}`), so a line stays a line.
//! * Note: `ext->ADDRESS` when the peer is external, i.e. its entry has
//!   uflags bit 0 (USK_EXTERN) set and stands for a socket outside the
//!   dump; ADDRESS is that entry's name (as NAME), the address a restore
//!   reconnects to. `external` on such external entries themselves.
//!
//! JSON: an array in the same order, one object per socket:
//! `{"inode": N, "id": N (file id), "type": "STREAM" | N, "state":
//! "LISTEN" | N, "name": "…" | null, "peer": N | null, "external": BOOL,
//! "peer_external": BOOL, "peer_address": "…" | null (only when
//! peer_external), "queued": N, "holders": [{"pid": N, "fd": N}, …]}`,
//! with strings as in the text view.

use super::files::exists;
use super::tasks::{fdinfo, files_id, pstree};
use super::Out;
use crate::error::Result;
use crate::image::entry::EntryReader;
use crate::image::flags::USK_EXTERN;
use crate::image::pb;
use crate::image::typed::{for_each, Mapped};
use crate::json::forms::dict_name;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// uflags bit: the entry stands for a socket outside the dump.

#[derive(Serialize)]
struct SockJson {
    inode: u32,
    id: u32,
    #[serde(rename = "type")]
    stype: Value,
    state: Value,
    name: Option<String>,
    peer: Option<u32>,
    external: bool,
    peer_external: bool,
    /// Present only when `peer_external`; null when the peer has no name.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_address: Option<Option<String>>,
    queued: u64,
    holders: Vec<Holder>,
}

#[derive(Serialize)]
struct Holder {
    pid: u32,
    fd: u32,
}

struct Sock {
    /// File id: what `fdinfo` and `sk-queues` refer to.
    id: u32,
    usk: pb::UnixSkEntry,
}

pub fn run(dir: &Path, json: bool, out: &mut Out) -> Result<()> {
    let mut socks = Vec::new();
    let files_path = dir.join("files.img");
    if exists(&files_path) {
        for_each::<pb::FileEntry>(&files_path, "FILES", |e| {
            if let Some(usk) = e.usk {
                socks.push(Sock { id: e.id, usk });
            }
            Ok(())
        })?;
    }
    let old_path = dir.join("unixsk.img");
    if exists(&old_path) {
        for_each::<pb::UnixSkEntry>(&old_path, "UNIXSK", |usk| {
            socks.push(Sock { id: usk.id, usk });
            Ok(())
        })?;
    }
    socks.sort_by_key(|s| s.usk.ino);

    let queued = queues(dir)?;
    let holders = holders(dir)?;
    let mut by_ino: HashMap<u32, usize> = HashMap::new();
    for (i, s) in socks.iter().enumerate() {
        by_ino.entry(s.usk.ino).or_insert(i);
    }

    let mut list = Vec::new();
    if !json {
        out.put(format_args!(
            "{:>10}  {:<9}  {:<11}  {:>10}  {:>8}  {:<14}  {}\n",
            "INODE", "TYPE", "STATE", "PEER", "QUEUED", "HOLDERS", "NAME"
        ))?;
    }
    for s in &socks {
        let u = &s.usk;
        let name = show_name(&u.name);
        let external = u.uflags & USK_EXTERN != 0;
        let peer_entry = if u.peer != 0 {
            by_ino.get(&u.peer).and_then(|&i| socks.get(i))
        } else {
            None
        };
        let peer_external = peer_entry.is_some_and(|p| p.usk.uflags & USK_EXTERN != 0);
        let peer_address = peer_entry
            .filter(|_| peer_external)
            .and_then(|p| show_name(&p.usk.name));
        let q = queued.get(&s.id).copied().unwrap_or(0);
        let held: &[(u32, u32)] = holders.get(&s.id).map(Vec::as_slice).unwrap_or(&[]);

        if json {
            list.push(SockJson {
                inode: u.ino,
                id: s.id,
                stype: dict_json("type", u.r#type),
                state: dict_json("state", u.state),
                name,
                peer: (u.peer != 0).then_some(u.peer),
                external,
                peer_external,
                peer_address: peer_external.then_some(peer_address),
                queued: q,
                holders: held.iter().map(|&(pid, fd)| Holder { pid, fd }).collect(),
            });
            continue;
        }

        let peer = if u.peer == 0 {
            "-".to_string()
        } else {
            u.peer.to_string()
        };
        let mut hs = String::new();
        for (i, (pid, fd)) in held.iter().enumerate() {
            if i > 0 {
                hs.push(',');
            }
            let _ = write!(hs, "{pid}:{fd}");
        }
        if hs.is_empty() {
            hs.push('-');
        }
        let mut line = format!(
            "{:>10}  {:<9}  {:<11}  {:>10}  {:>8}  {:<14}  {}",
            u.ino,
            dict_text("type", u.r#type),
            dict_text("state", u.state),
            peer,
            q,
            hs,
            name.as_deref().unwrap_or("-")
        );
        if peer_external {
            let _ = write!(line, "  ext->{}", peer_address.as_deref().unwrap_or("-"));
        }
        if external {
            line.push_str("  external");
        }
        line.push('\n');
        out.text(&line)?;
    }
    if json {
        out.json(&list)?;
    }
    Ok(())
}

fn dict_text(field: &str, v: u32) -> String {
    match dict_name("sk", field, u64::from(v)) {
        Some(n) => n.to_string(),
        None => v.to_string(),
    }
}

fn dict_json(field: &str, v: u32) -> Value {
    match dict_name("sk", field, u64::from(v)) {
        Some(n) => n.into(),
        None => v.into(),
    }
}

/// A socket name for display: `None` when empty, `@…` when abstract, a
/// path without its trailing NULs otherwise; escaped as the module says.
fn show_name(name: &[u8]) -> Option<String> {
    match name.split_first() {
        None => None,
        Some((0, rest)) => Some(format!("@{}", escape(rest))),
        Some(_) => {
            let end = name.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            Some(escape(&name[..end]))
        }
    }
}

fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                s.push_str("\\\\");
            } else if c.is_control() {
                if (c as u32) < 0x80 {
                    let _ = write!(s, "\\x{:02x}", c as u32);
                } else {
                    let _ = write!(s, "\\u{{{:x}}}", c as u32);
                }
            } else {
                s.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// Bytes queued per socket file id, from `sk-queues.img` (missing: none).
fn queues(dir: &Path) -> Result<HashMap<u32, u64>> {
    let mut q: HashMap<u32, u64> = HashMap::new();
    let path = dir.join("sk-queues.img");
    if !exists(&path) {
        return Ok(q);
    }
    let file = Mapped::open(&path)?;
    let mut src = file.source();
    let mut rd = EntryReader::expect(&mut src, "SK_QUEUES")?;
    while let Some(e) = rd.next_entry()? {
        let p: pb::SkPacketEntry = e.decode()?;
        *q.entry(p.id_for).or_default() += u64::from(p.length);
    }
    Ok(q)
}

/// `(pid, fd)` of every unix socket descriptor, per file id, in
/// `pstree.img` then `fdinfo` order.
fn holders(dir: &Path) -> Result<HashMap<u32, Vec<(u32, u32)>>> {
    let mut h: HashMap<u32, Vec<(u32, u32)>> = HashMap::new();
    let mut tables: HashMap<u32, Vec<pb::FdinfoEntry>> = HashMap::new();
    for p in pstree(dir)? {
        let fid = files_id(dir, p.pid)?;
        let fds = match tables.entry(fid) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(fdinfo(dir, fid)?),
        };
        for fd in fds.iter() {
            if fd.r#type == pb::FdTypes::Unixsk as i32 {
                h.entry(fd.id).or_default().push((p.pid, fd.fd));
            }
        }
    }
    Ok(h)
}
