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
//!   `peer-not-in-images` when PEER names an inode no entry has: a peer
//!   outside the dump, which a restore takes only when told what to do
//!   with it (`--ext-unix-sk`, or `crit edit`).
//!
//! JSON: an array in the same order, one object per socket:
//! `{"inode": N, "id": N (file id), "type": "STREAM" | N, "state":
//! "LISTEN" | N, "name": "…" | null, "peer": N | null, "external": BOOL,
//! "peer_external": BOOL, "peer_address": "…" | null (only when
//! peer_external), "peer_missing": BOOL (PEER names an inode no entry
//! has), "queued": N, "holders": [{"pid": N, "fd": N}, …]}`,
//! with strings as in the text view.

use super::dot::Dot;
use super::tasks::{fdinfo, files_id, pstree};
use super::Out;
use crate::error::Result;
use crate::image::entry::EntryReader;
use crate::image::pb;

use crate::image::store::Images;
use crate::json::forms::dict_name;
use crate::model::unix::{display_name, state_name, type_name, Model, Sock};
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;

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
    peer_missing: bool,
    queued: u64,
    holders: Vec<Holder>,
}

#[derive(Serialize)]
struct Holder {
    pid: u32,
    fd: u32,
}

/// The unix sockets of `dir`: `files.img` (and the old `unixsk.img`), who
/// holds each and what is queued for it. Two entries with one inode are
/// both shown; a peer is the first of them.
fn model(dir: &Images) -> Result<Model> {
    let mut entries = Vec::new();
    if dir.exists("files.img") {
        dir.for_each::<pb::FileEntry>("files.img", "FILES", |e| {
            if let Some(usk) = e.usk {
                entries.push((e.id, usk));
            }
            Ok(())
        })?;
    }
    if dir.exists("unixsk.img") {
        dir.for_each::<pb::UnixSkEntry>("unixsk.img", "UNIXSK", |usk| {
            entries.push((usk.id, usk));
            Ok(())
        })?;
    }
    let mut m = Model::lenient(entries);
    for p in pstree(dir)? {
        holders(dir, p.pid, &mut m)?;
    }
    queues(dir, &mut m)?;
    Ok(m)
}

/// A name for views: None when there is none.
fn name_of(name: &[u8]) -> Option<String> {
    (!name.is_empty()).then(|| display_name(name))
}

pub fn run(dir: &Images, json: bool, dot: bool, out: &mut Out) -> Result<()> {
    // The tree first: an empty directory is named by its pstree.img.
    let m = model(dir)?;
    super::files_image(dir, &["unixsk.img"])?;
    if dot {
        return out.text(&to_dot(&m));
    }
    let mut list = Vec::new();
    if !json {
        out.put(format_args!(
            "{:>10}  {:<9}  {:<11}  {:>10}  {:>8}  {:<14}  {}\n",
            "INODE", "TYPE", "STATE", "PEER", "QUEUED", "HOLDERS", "NAME"
        ))?;
    }
    for s in m.by_inode() {
        let u = &s.e;
        let peer_entry = m.peer(s);
        let peer_external = peer_entry.is_some_and(Sock::is_external);
        let peer_missing = u.peer != 0 && peer_entry.is_none();
        let peer_address = peer_entry
            .filter(|_| peer_external)
            .and_then(|p| name_of(&p.e.name));
        if json {
            list.push(SockJson {
                inode: u.ino,
                id: s.id,
                stype: dict_json("type", u.r#type),
                state: dict_json("state", u.state),
                name: name_of(&u.name),
                peer: (u.peer != 0).then_some(u.peer),
                external: s.is_external(),
                peer_external,
                peer_address: peer_external.then_some(peer_address),
                peer_missing,
                queued: s.queued.bytes,
                holders: s
                    .holders
                    .iter()
                    .map(|h| Holder {
                        pid: h.pid,
                        fd: h.fd,
                    })
                    .collect(),
            });
            continue;
        }
        let peer = if u.peer == 0 {
            "-".to_string()
        } else {
            u.peer.to_string()
        };
        let mut hs = String::new();
        for (i, h) in s.holders.iter().enumerate() {
            if i > 0 {
                hs.push(',');
            }
            let _ = write!(hs, "{}:{}", h.pid, h.fd);
        }
        if hs.is_empty() {
            hs.push('-');
        }
        let mut line = format!(
            "{:>10}  {:<9}  {:<11}  {:>10}  {:>8}  {:<14}  {}",
            u.ino,
            type_name(u.r#type),
            state_name(u.state),
            peer,
            s.queued.bytes,
            hs,
            display_name(&u.name)
        );
        if peer_external {
            let _ = write!(line, "  ext->{}", peer_address.as_deref().unwrap_or("-"));
        }
        if s.is_external() {
            line.push_str("  external");
        }
        if peer_missing {
            line.push_str("  peer-not-in-images");
        }
        line.push('\n');
        out.text(&line)?;
    }
    if json {
        out.json(&list)?;
    }
    Ok(())
}

fn dict_json(field: &str, v: u32) -> Value {
    match dict_name("sk", field, u64::from(v)) {
        Some(n) => n.into(),
        None => v.into(),
    }
}

/// What is queued per socket, from `sk-queues.img` (missing: nothing).
fn queues(dir: &Images, m: &mut Model) -> Result<()> {
    if !dir.exists("sk-queues.img") {
        return Ok(());
    }
    let file = dir.bytes("sk-queues.img")?;
    let mut src = file.source();
    let mut rd = EntryReader::expect(&mut src, "SK_QUEUES")?;
    while let Some(e) = rd.next_entry()? {
        let p: pb::SkPacketEntry = e.decode()?;
        m.add_queued(p.id_for, u64::from(p.length));
    }
    Ok(())
}

/// Records every unix socket descriptor of task `pid` (through its
/// `ids` and `fdinfo` images, as `fds` reads them).
fn holders(dir: &Images, pid: u32, m: &mut Model) -> Result<()> {
    let fid = files_id(dir, pid)?;
    for fd in fdinfo(dir, fid)? {
        if fd.r#type == pb::FdTypes::Unixsk as i32 {
            m.add_holder(fd.id, pid, fd.fd);
        }
    }
    Ok(())
}

/// The sockets as a Graphviz digraph: a box per process that holds any,
/// an ellipse per socket (inode, type, state, name; dashed for entries
/// that stand for a socket outside the dump), an arrow `fd N` from a
/// holder to its socket, and one from a socket to its peer (both ways,
/// once, when the two are each other's peers).
fn to_dot(m: &Model) -> String {
    let mut d = Dot::digraph("sk", "fontname=monospace");
    let mut pids: Vec<u32> = m
        .socks
        .iter()
        .flat_map(|s| s.holders.iter().map(|h| h.pid))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    for pid in &pids {
        d.node(&format!("pid {pid}"), &format!("pid {pid}"), "shape=box");
    }
    let id = |ino: u32| format!("sk {ino}");
    for s in m.by_inode() {
        let u = &s.e;
        let mut label = format!("{} {} {}", u.ino, type_name(u.r#type), state_name(u.state));
        if let Some(n) = name_of(&u.name) {
            label.push('\n');
            label.push_str(&n);
        }
        if s.is_external() {
            label.push_str("\noutside the dump");
            d.node(&id(u.ino), &label, "style=dashed");
        } else {
            d.node(&id(u.ino), &label, "");
        }
    }
    for s in m.by_inode() {
        for h in &s.holders {
            d.edge(
                &format!("pid {}", h.pid),
                &id(s.ino()),
                Some(&format!("fd {}", h.fd)),
                "",
            );
        }
        let Some(p) = m.peer(s) else { continue };
        let mutual = p.e.peer == s.ino();
        if mutual && p.ino() < s.ino() {
            continue;
        }
        let attrs = if mutual {
            "dir=both, color=blue"
        } else {
            "color=blue"
        };
        d.edge(&id(s.ino()), &id(p.ino()), None, attrs);
    }
    d.finish()
}
