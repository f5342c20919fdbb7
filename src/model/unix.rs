//! Unix sockets as the images describe them: one vocabulary (types,
//! states, shutdown, names) and one graph of sockets by inode with their
//! peers, holders and queues. `crit dump` writes entries through
//! [`external_entry`], `crit edit` changes the graph, `crit x sk` renders
//! it and `crit restore` plans from it.
//!
//! How CRIU 4.2 writes what the graph rests on:
//! - every socket is a `unix_sk_entry` in `files.img` under a file id,
//!   which fds (`fdinfo-N.img`) and queues (`sk-queues.img`) refer to;
//! - `peer` is the inode of the other end, 0 for none; a connection still
//!   pending in a listener has the listener as its peer;
//! - an end outside the dump is an entry of its own with `uflags` bit 0
//!   ([`USK_EXTERN`]), `peer` 0, state LISTEN and the outside end's
//!   address as its name; no fd holds it;
//! - a name is raw bytes: empty (unnamed), a NUL then the abstract name,
//!   or a path with its trailing NUL, relative ones resolved from
//!   `name_dir`.

use crate::image::pb;
use std::collections::HashMap;
use std::fmt::Write as _;

pub use crate::image::flags::USK_EXTERN;

pub const SOCK_STREAM: u32 = 1;
pub const SOCK_DGRAM: u32 = 2;
pub const SOCK_SEQPACKET: u32 = 5;
pub const ST_ESTABLISHED: u32 = 1;
pub const ST_CLOSE: u32 = 7;
pub const ST_LISTEN: u32 = 10;
pub const SHUT_BOTH: i32 = pb::SkShutdown::Both as i32;
/// `sizeof(sun_path)`: no name is longer.
pub const UNIX_PATH_MAX: usize = 108;

/// A socket type as crit names it (`STREAM`...), or its number.
pub fn type_name(t: u32) -> String {
    dict("type", t)
}

/// A socket state as crit names it (`LISTEN`...), or its number.
pub fn state_name(s: u32) -> String {
    dict("state", s)
}

fn dict(field: &str, v: u32) -> String {
    crate::json::forms::dict_name("sk", field, u64::from(v))
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// A shutdown state: NONE, READ, WRITE, BOTH.
pub fn shutdown_name(s: Option<i32>) -> String {
    match s.unwrap_or(0) {
        0 => "NONE".into(),
        n => pb::SkShutdown::try_from(n)
            .map(|x| x.as_str_name().to_string())
            .unwrap_or_else(|_| n.to_string()),
    }
}

/// A socket name for people: `-` for none, `@name` for an abstract one, a
/// path without its trailing NULs. Backslashes, control characters and
/// invalid UTF-8 are escaped (`\\`, `\xNN`, `\u{N}`), so it stays one
/// line. Every message and view of crit prints names this way.
pub fn display_name(name: &[u8]) -> String {
    match name.split_first() {
        None => "-".into(),
        Some((0, rest)) => format!("@{}", escape(rest)),
        Some(_) => {
            let end = name.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            escape(&name[..end])
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

/// The entry that stands for a socket outside the dump, as CRIU writes
/// it: the outside end's inode and address, `uflags` [`USK_EXTERN`],
/// peer 0, state LISTEN, no owner or options.
pub fn external_entry(
    id: u32,
    ino: u32,
    sk_type: u32,
    name: Vec<u8>,
    name_dir: Option<String>,
    mnt_id: Option<i32>,
) -> pb::UnixSkEntry {
    pb::UnixSkEntry {
        id,
        ino,
        r#type: sk_type,
        state: ST_LISTEN,
        flags: 0,
        uflags: USK_EXTERN,
        backlog: 0,
        peer: 0,
        fown: pb::FownEntry::default(),
        opts: pb::SkOptsEntry::default(),
        name,
        name_dir,
        mnt_id,
        ..Default::default()
    }
}

/// A descriptor of a task that holds a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub fd: u32,
}

/// What is queued for a socket to read (sk-queues.img).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Queued {
    pub packets: u64,
    pub bytes: u64,
}

/// One socket of the images.
#[derive(Clone, Debug)]
pub struct Sock {
    /// File id.
    pub id: u32,
    pub e: pb::UnixSkEntry,
    /// Every fd that holds it, in tree order.
    pub holders: Vec<Holder>,
    pub queued: Queued,
}

impl Sock {
    pub fn ino(&self) -> u32 {
        self.e.ino
    }
    pub fn is_external(&self) -> bool {
        self.e.uflags & USK_EXTERN != 0
    }
    pub fn is_listener(&self) -> bool {
        self.e.state == ST_LISTEN && !self.is_external()
    }
    pub fn is_dgram(&self) -> bool {
        self.e.r#type == SOCK_DGRAM
    }
    /// A stream or seqpacket connection (not a listener).
    pub fn is_connection(&self) -> bool {
        self.e.state == ST_ESTABLISHED && !self.is_dgram()
    }
    pub fn is_named(&self) -> bool {
        !self.e.name.is_empty()
    }
    pub fn is_deleted(&self) -> bool {
        self.e.deleted == Some(true)
    }
    /// Held by some task's fd.
    pub fn is_held(&self) -> bool {
        !self.holders.is_empty()
    }
    /// "unix socket 5 (file id 6, STREAM ESTABLISHED, name -)"; external
    /// entries are called so.
    pub fn describe(&self) -> String {
        format!(
            "{} {} (file id {}, {} {}, name {})",
            if self.is_external() {
                "external entry"
            } else {
                "unix socket"
            },
            self.e.ino,
            self.id,
            type_name(self.e.r#type),
            state_name(self.e.state),
            display_name(&self.e.name)
        )
    }
}

/// Two entries with one inode: the images are inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("two unix sockets have inode {ino} (file ids {} and {})", .ids.0, .ids.1)]
pub struct DuplicateInode {
    pub ino: u32,
    pub ids: (u32, u32),
}

/// Every unix socket of an image set, by inode.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub socks: Vec<Sock>,
    by_ino: HashMap<u32, usize>,
    by_id: HashMap<u32, usize>,
}

impl Model {
    /// The sockets of `entries` (file id, entry), in that order.
    pub fn new(
        entries: impl IntoIterator<Item = (u32, pb::UnixSkEntry)>,
    ) -> Result<Model, DuplicateInode> {
        let mut m = Model::default();
        for (id, e) in entries {
            m.add_unique(id, e)?;
        }
        Ok(m)
    }

    /// Adds a socket whose inode no socket has yet; returns its index.
    pub fn add_unique(&mut self, id: u32, e: pb::UnixSkEntry) -> Result<usize, DuplicateInode> {
        if let Some(&other) = self.by_ino.get(&e.ino) {
            return Err(DuplicateInode {
                ino: e.ino,
                ids: (self.socks[other].id, id),
            });
        }
        Ok(self.add(id, e))
    }

    /// The sockets of `entries`, for viewing: two entries with one inode
    /// are both kept, and the inode names the first.
    pub fn lenient(entries: impl IntoIterator<Item = (u32, pb::UnixSkEntry)>) -> Model {
        let mut m = Model::default();
        for (id, e) in entries {
            let ino = e.ino;
            let first = m.by_ino.get(&ino).copied();
            m.add(id, e);
            if let Some(keep) = first {
                // add() pointed the inode at the newest: keep the first
                // (remembered, not searched for: many duplicates would
                // make that quadratic).
                m.by_ino.insert(ino, keep);
            }
        }
        m
    }

    /// Adds a socket; returns its index.
    pub fn add(&mut self, id: u32, e: pb::UnixSkEntry) -> usize {
        let i = self.socks.len();
        self.by_ino.insert(e.ino, i);
        self.by_id.entry(id).or_insert(i);
        self.socks.push(Sock {
            id,
            e,
            holders: Vec::new(),
            queued: Queued::default(),
        });
        i
    }

    /// Records that task `pid` holds file `id` at `fd` (other files are
    /// ignored).
    pub fn add_holder(&mut self, id: u32, pid: u32, fd: u32) {
        if let Some(&i) = self.by_id.get(&id) {
            self.socks[i].holders.push(Holder { pid, fd });
        }
    }

    /// Records a queued packet of `bytes` for file `id`.
    pub fn add_queued(&mut self, id: u32, bytes: u64) {
        if let Some(&i) = self.by_id.get(&id) {
            let q = &mut self.socks[i].queued;
            q.packets += 1;
            q.bytes += bytes;
        }
    }

    pub fn index(&self, ino: u32) -> Option<usize> {
        self.by_ino.get(&ino).copied()
    }

    pub fn get(&self, ino: u32) -> Option<&Sock> {
        self.index(ino).map(|i| &self.socks[i])
    }

    pub fn by_id(&self, id: u32) -> Option<&Sock> {
        self.by_id.get(&id).map(|&i| &self.socks[i])
    }

    /// The socket `s` is connected to, when it is in the images.
    pub fn peer(&self, s: &Sock) -> Option<&Sock> {
        (s.e.peer != 0).then(|| self.get(s.e.peer)).flatten()
    }

    /// Whether `s`'s peer is outside the images: an external entry, or an
    /// inode no entry has.
    pub fn peer_is_outside(&self, s: &Sock) -> bool {
        s.e.peer != 0 && self.peer(s).is_none_or(Sock::is_external)
    }

    /// In-tree sockets whose peer is `ino`, by index.
    pub fn users(&self, ino: u32) -> Vec<usize> {
        (0..self.socks.len())
            .filter(|&i| !self.socks[i].is_external() && self.socks[i].e.peer == ino)
            .collect()
    }

    /// The listener a connection was accepted from: the in-tree listener
    /// with `s`'s name and type.
    pub fn listener_of(&self, s: &Sock) -> Option<&Sock> {
        if !s.is_named() || !s.is_connection() {
            return None;
        }
        self.socks
            .iter()
            .find(|l| l.is_listener() && l.e.name == s.e.name && l.e.r#type == s.e.r#type)
    }

    /// Every socket in inode order (ties keep image order).
    pub fn by_inode(&self) -> Vec<&Sock> {
        let mut v: Vec<&Sock> = self.socks.iter().collect();
        v.sort_by_key(|s| s.e.ino);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sk(ino: u32, t: u32, state: u32, peer: u32, name: &[u8]) -> pb::UnixSkEntry {
        pb::UnixSkEntry {
            ino,
            r#type: t,
            state,
            peer,
            name: name.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn names_print_one_way() {
        assert_eq!(display_name(b""), "-");
        assert_eq!(display_name(b"/tmp/a.sock\0"), "/tmp/a.sock");
        assert_eq!(display_name(b"\0abs\n=x"), "@abs\\x0a=x");
        assert_eq!(display_name(b"rel\\x\xff"), "rel\\\\x\\xff");
        assert_eq!(type_name(SOCK_SEQPACKET), "SEQPACKET");
        assert_eq!(type_name(42), "42");
        assert_eq!(state_name(ST_LISTEN), "LISTEN");
        assert_eq!(shutdown_name(None), "NONE");
        assert_eq!(shutdown_name(Some(SHUT_BOTH)), "BOTH");
    }

    #[test]
    fn graph_queries() {
        let mut m = Model::new([
            (1, sk(10, SOCK_STREAM, ST_LISTEN, 0, b"/s\0")),
            (2, sk(11, SOCK_STREAM, ST_ESTABLISHED, 12, b"/s\0")),
            (3, sk(12, SOCK_STREAM, ST_ESTABLISHED, 11, b"")),
            (4, sk(13, SOCK_DGRAM, ST_ESTABLISHED, 99, b"")),
            (
                5,
                external_entry(5, 14, SOCK_DGRAM, b"/x\0".to_vec(), None, None),
            ),
            (6, sk(15, SOCK_DGRAM, ST_ESTABLISHED, 14, b"")),
        ])
        .unwrap();
        m.add_holder(2, 100, 4);
        m.add_holder(2, 101, 4);
        m.add_queued(3, 7);
        m.add_queued(3, 5);
        m.add_holder(77, 1, 1); // not a socket: ignored
        let acc = m.get(11).unwrap();
        assert_eq!(acc.holders.len(), 2);
        assert_eq!(m.listener_of(acc).map(Sock::ino), Some(10));
        assert_eq!(m.peer(acc).map(Sock::ino), Some(12));
        assert_eq!(
            m.get(12).unwrap().queued,
            Queued {
                packets: 2,
                bytes: 12
            }
        );
        assert!(m.peer_is_outside(m.get(13).unwrap()));
        assert!(m.peer_is_outside(m.get(15).unwrap()));
        assert!(!m.peer_is_outside(acc));
        assert_eq!(m.users(14), vec![5]);
        assert!(m.get(14).unwrap().is_external() && !m.get(14).unwrap().is_listener());
        assert_eq!(
            m.get(11).unwrap().describe(),
            "unix socket 11 (file id 2, STREAM ESTABLISHED, name /s)"
        );
        assert_eq!(
            m.by_inode().iter().map(|s| s.ino()).collect::<Vec<_>>(),
            vec![10, 11, 12, 13, 14, 15]
        );
        let dup = Model::new([(1, sk(10, 1, 1, 0, b"")), (2, sk(10, 1, 1, 0, b""))]);
        assert_eq!(
            dup.unwrap_err().to_string(),
            "two unix sockets have inode 10 (file ids 1 and 2)"
        );
    }

    #[test]
    fn lenient_keeps_every_entry_and_the_inode_names_the_first() {
        let m = Model::lenient([
            (1, sk(10, SOCK_STREAM, ST_ESTABLISHED, 0, b"")),
            (2, sk(10, SOCK_STREAM, ST_ESTABLISHED, 0, b"")),
            (3, sk(11, SOCK_STREAM, ST_ESTABLISHED, 0, b"")),
            (4, sk(10, SOCK_STREAM, ST_ESTABLISHED, 0, b"")),
        ]);
        assert_eq!(m.socks.len(), 4);
        assert_eq!(m.get(10).map(|s| s.id), Some(1));
        assert_eq!(m.get(11).map(|s| s.id), Some(3));
        for id in 1..=4 {
            assert_eq!(m.by_id(id).map(|s| s.id), Some(id));
        }
    }
}
