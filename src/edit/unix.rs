//! The unix sockets of `files.img` as a graph (inode → entry, `peer` →
//! inode) and the two edits, `--reconnect` and `--external`, applied to it
//! in memory. Nothing here writes; [`super`] turns the result into bytes.
//!
//! Facts from CRIU 4.2's `criu/sk-unix.c` that the edits rest on:
//!
//! - An outside end is an entry with `uflags` bit 0 (`USK_EXTERN`), `peer`
//!   0 and state `TCP_LISTEN`, under the outside socket's inode, with its
//!   own file id and no fd (`fix_external_unix_sockets`). Restore never
//!   opens it; a socket whose `peer` is its inode is `connect()`ed to its
//!   `name` (`post_open_standalone`), in the peer entry's `name_dir` and
//!   mount namespace (`prep_unix_sk_cwd(peer, ...)`), and only when
//!   `criu restore --ext-unix-sk` is given (`open_unixsk_standalone`).
//!   Restore refuses a name longer than 108 bytes (`init_unix_sk_info`).
//! - An in-tree socket whose outside end has no name can only come back
//!   through `--inherit-fd fd[N]:socket:[INO]` (`open_unix_sk` →
//!   `inherited_fd`); connecting to an empty address fails.
//! - An ESTABLISHED stream/seqpacket socket with `peer` 0 gets a fake
//!   queuer (`add_fake_unix_queuers`): restore makes a socketpair, refills
//!   the socket's queue through the other end, and closes that end. It
//!   insists on `shutdown` BOTH ("Wrong shutdown/peer state",
//!   `open_unixsk_standalone`), which is also how dump records a connection
//!   whose other end has closed (the kernel sets `SHUTDOWN_MASK` on it).
//!   So the socket reads its queued data, then EOF.
//! - A dgram socket with no peer in the images pointing at it gets a fake
//!   queuer too, and comes back unconnected with its queue refilled.
//! - A stream socket whose peer is external gets no queuer: restore does
//!   not refill its receive queue (only a peer in the images does that).

use super::error::{EditError, Inconsistency, Refusal};
use super::files_img::{At, FilesImg};
use crate::error::{Error, Result};
use crate::image::pb;
use crate::model::unix::{
    display_name, external_entry, shutdown_name, type_name, DuplicateInode, Model, Sock, SHUT_BOTH,
    SOCK_DGRAM, ST_ESTABLISHED, UNIX_PATH_MAX, USK_EXTERN,
};
use std::collections::{BTreeSet, HashMap};

/// A new address for a socket, as given on the command line.
#[derive(Clone, Debug)]
pub struct Addr {
    /// The bytes for `name`: a path with one NUL at the end (as the kernel
    /// reports and CRIU records bound paths), or a NUL then the abstract name.
    pub bytes: Vec<u8>,
}

/// What the edit knows of one socket beyond the model.
pub struct Edited {
    /// Where it is in `files.img`; `None` for an entry the edit adds.
    pub entry: Option<At>,
    /// The entry as read, kept from its first change on (before that,
    /// the model holds it as read).
    pub before: Option<Box<pb::UnixSkEntry>>,
    /// The action that changed or added it.
    pub owner: Option<usize>,
}

/// What an action did, in the order it did it.
pub enum Item {
    /// Entry `sock` was changed or added; `summary` says how.
    Entry {
        sock: usize,
        summary: String,
    },
    Note(String),
}

/// Bytes and packets queued for reading, by the file id of the socket.
pub type Queues = HashMap<u32, (u64, u64)>;

/// Where a unix socket's entry is and what the edit needs to choose the
/// sockets it loads: every unix socket of `files.img` has one (some 50
/// bytes, where its decoded entry takes 360).
pub struct Brief {
    pub at: At,
    id: u32,
    /// Its peer as read.
    peer: u32,
    /// Its index in the model, once loaded.
    loaded: Option<usize>,
}

impl Brief {
    /// Where the entry is and its peer now.
    pub fn peer_now(&self, model: &Model) -> (u64, u32) {
        let peer = self.loaded.map_or(self.peer, |i| model.socks[i].e.peer);
        (self.at.offset, peer)
    }
}

pub struct Graph<'f> {
    img: &'f FilesImg,
    files: String,
    labels: Vec<String>,
    /// The sockets the actions can reach; `edits[i]` goes with
    /// `model.socks[i]`.
    pub model: Model,
    pub edits: Vec<Edited>,
    /// Every unix socket of `files.img`, in file order.
    pub briefs: Vec<Brief>,
    used_inos: BTreeSet<u32>,
    ino_floor: u32,
    used_ids: BTreeSet<u32>,
    id_floor: u32,
    /// Whether sk-queues.img could be read.
    queues_known: bool,
    /// Entries of another type that carry a `unix_sk_entry` all the same
    /// (where, and its nonzero peer): the writer places an added entry
    /// before them too.
    pub other_peers: Vec<(u64, u32)>,
}

impl<'f> Graph<'f> {
    /// `labels[i]` names action `i` in messages, `inos` the sockets the
    /// actions name. Reads `files` once, keeping of each entry only its
    /// file id and inodes, and of a unix socket a [`Brief`]; then loads
    /// into the model, in file order, the sockets the actions can reach
    /// or check: those named, their peers and their peers' peers, and
    /// every socket whose peer is one named or one of their peers.
    pub fn load(
        files: &'f FilesImg,
        labels: Vec<String>,
        inos: &[u32],
        queues: Option<Queues>,
    ) -> Result<Graph<'f>> {
        let mut g = Graph {
            img: files,
            files: files.name.clone(),
            labels,
            model: Model::default(),
            edits: Vec::new(),
            briefs: Vec::new(),
            used_inos: BTreeSet::new(),
            ino_floor: 0,
            used_ids: BTreeSet::new(),
            id_floor: 0,
            queues_known: queues.is_some(),
            other_peers: Vec::new(),
        };
        // Unix sockets by inode, as indexes into `briefs`.
        let mut by_ino: HashMap<u32, usize> = HashMap::new();
        // A bad entry anywhere is reported before these; a unix entry
        // without its unix_sk_entry before a duplicate inode.
        let mut no_unix: Option<Error> = None;
        let mut duplicate: Option<Error> = None;
        files.for_each(|at, fe| {
            g.used_ids.insert(fe.id);
            g.id_floor = g.id_floor.max(fe.id);
            // Socket and pipe inodes come from one kernel counter; new
            // inodes go above them. A FIFO's inode is a filesystem's, so it
            // is only avoided.
            let mut sock_like = [0u32; 5];
            if let Some(k) = &fe.isk {
                sock_like[0] = k.ino;
            }
            if let Some(k) = &fe.nlsk {
                sock_like[1] = k.ino;
            }
            if let Some(p) = &fe.pipe {
                sock_like[2] = p.pipe_id;
            }
            if let Some(f) = &fe.fifo {
                g.used_inos.insert(f.pipe_id);
            }
            if fe.r#type == pb::FdTypes::Unixsk as i32 {
                match &fe.usk {
                    None => {
                        no_unix.get_or_insert_with(|| {
                            EditError::NoUnixEntry {
                                file: g.files.clone(),
                                offset: at.offset,
                                id: fe.id,
                            }
                            .into()
                        });
                    }
                    Some(usk) => {
                        sock_like[3] = usk.ino;
                        sock_like[4] = usk.peer;
                        if no_unix.is_none() && duplicate.is_none() {
                            match by_ino.get(&usk.ino) {
                                Some(&other) => {
                                    let source = DuplicateInode {
                                        ino: usk.ino,
                                        ids: (g.briefs[other].id, fe.id),
                                    };
                                    duplicate = Some(
                                        EditError::Model {
                                            file: g.files.clone(),
                                            source,
                                        }
                                        .into(),
                                    );
                                }
                                None => {
                                    by_ino.insert(usk.ino, g.briefs.len());
                                    g.briefs.push(Brief {
                                        at,
                                        id: fe.id,
                                        peer: usk.peer,
                                        loaded: None,
                                    });
                                }
                            }
                        }
                    }
                }
            } else if let Some(peer) = fe.usk.as_ref().map(|u| u.peer).filter(|&p| p != 0) {
                g.other_peers.push((at.offset, peer));
            }
            for ino in sock_like {
                g.used_inos.insert(ino);
                g.ino_floor = g.ino_floor.max(ino);
            }
            Ok(())
        })?;
        if let Some(e) = no_unix.or(duplicate) {
            return Err(e);
        }
        g.used_inos.remove(&0);

        // The sockets to load.
        let peer_of = |ino: u32| {
            by_ino
                .get(&ino)
                .map(|&b| g.briefs[b].peer)
                .filter(|&p| p != 0)
        };
        let named: BTreeSet<u32> = inos.iter().copied().collect();
        let peers: BTreeSet<u32> = named.iter().filter_map(|&i| peer_of(i)).collect();
        let peers2: BTreeSet<u32> = peers.iter().filter_map(|&i| peer_of(i)).collect();
        let mut load: Vec<usize> = named
            .iter()
            .chain(&peers)
            .chain(&peers2)
            .filter_map(|i| by_ino.get(i).copied())
            .collect();
        drop(by_ino);
        load.extend(
            g.briefs
                .iter()
                .enumerate()
                .filter(|(_, b)| named.contains(&b.peer) || peers.contains(&b.peer))
                .map(|(i, _)| i),
        );
        load.sort_unstable();
        load.dedup();
        for b in load {
            let at = g.briefs[b].at.clone();
            let usk = files.entry(&at)?.usk.unwrap_or_default();
            g.briefs[b].loaded = Some(g.model.add(g.briefs[b].id, usk));
            g.edits.push(Edited {
                entry: Some(at),
                before: None,
                owner: None,
            });
        }

        // Queued data belongs to the first socket with the file id.
        if let Some(queues) = queues {
            // File id -> the model index of the first socket with it,
            // when that one is loaded.
            let mut first: HashMap<u32, Option<usize>> = HashMap::new();
            for b in g.briefs.iter().filter(|b| queues.contains_key(&b.id)) {
                first.entry(b.id).or_insert(b.loaded);
            }
            for (id, (packets, bytes)) in queues {
                if let Some(&Some(i)) = first.get(&id) {
                    g.model.socks[i].queued = crate::model::unix::Queued { packets, bytes };
                }
            }
        }
        Ok(g)
    }

    fn sock(&self, i: usize) -> &Sock {
        &self.model.socks[i]
    }

    /// Socket `i`'s entry, to change: the entry as read is kept first.
    fn usk(&mut self, i: usize) -> &mut pb::UnixSkEntry {
        let x = &mut self.edits[i];
        let e = &mut self.model.socks[i].e;
        if x.entry.is_some() && x.before.is_none() {
            x.before = Some(Box::new(e.clone()));
        }
        e
    }

    fn label(&self, act: usize) -> &str {
        self.labels.get(act).map(String::as_str).unwrap_or("edit")
    }

    fn err(&self, act: usize, why: Refusal) -> Error {
        EditError::Refused {
            file: self.files.clone(),
            label: self.label(act).to_string(),
            why,
        }
        .into()
    }

    /// The socket with inode `ino`, or an error listing the unix sockets.
    fn find(&self, act: usize, ino: u32) -> Result<usize> {
        if let Some(s) = self.model.index(ino) {
            return Ok(s);
        }
        // Every unix socket of the file, as it is now.
        let mut known = Vec::with_capacity(self.briefs.len());
        for b in &self.briefs {
            let read;
            let e = match b.loaded {
                Some(i) => &self.model.socks[i].e,
                None => {
                    read = self.img.entry(&b.at)?.usk.unwrap_or_default();
                    &read
                }
            };
            let ext = if e.uflags & USK_EXTERN != 0 {
                " (external)"
            } else {
                ""
            };
            known.push(format!("{} {}{ext}", e.ino, display_name(&e.name)));
        }
        Err(self.err(act, Refusal::NoSuchInode { ino, known }))
    }

    /// "unix socket 5 (file id 6, STREAM ESTABLISHED, name -)", as read:
    /// names may change, type and state do not.
    fn describe(&self, s: usize) -> String {
        let mut shown = self.sock(s).clone();
        if let Some(b) = &self.edits[s].before {
            shown.e = (**b).clone();
        }
        shown.describe()
    }

    /// Marks `s` as changed by `act`; an entry may be changed by one action only.
    fn claim(&mut self, act: usize, s: usize) -> Result<()> {
        match self.edits[s].owner {
            Some(o) if o != act => Err(self.err(
                act,
                Refusal::AlsoChanged {
                    sock: self.describe(s),
                    by: self.label(o).to_string(),
                },
            )),
            _ => {
                self.edits[s].owner = Some(act);
                Ok(())
            }
        }
    }

    /// The action that already changed `s`, if one did.
    fn other_action(&self, s: usize) -> Option<String> {
        self.edits[s].owner.map(|o| self.label(o).to_string())
    }

    fn fresh_ino(&mut self) -> Result<u32> {
        fresh(&mut self.used_inos, self.ino_floor).ok_or_else(|| {
            EditError::Exhausted {
                file: self.files.clone(),
                what: "inode number",
            }
            .into()
        })
    }

    fn fresh_id(&mut self) -> Result<u32> {
        fresh(&mut self.used_ids, self.id_floor).ok_or_else(|| {
            EditError::Exhausted {
                file: self.files.clone(),
                what: "file id",
            }
            .into()
        })
    }

    fn add(&mut self, act: usize, usk: pb::UnixSkEntry) -> usize {
        self.edits.push(Edited {
            entry: None,
            before: None,
            owner: Some(act),
        });
        self.model.add(usk.id, usk)
    }

    fn queued(&self, s: usize) -> String {
        let q = self.sock(s).queued;
        if !self.queues_known {
            "queue unknown".to_string()
        } else if q.packets > 0 {
            format!("{} packet(s), {} bytes", q.packets, q.bytes)
        } else {
            "empty".to_string()
        }
    }

    fn has_queue(&self, s: usize) -> bool {
        self.queues_known && self.sock(s).queued.packets > 0
    }

    /// The note on what a restore needs to connect `users` to `addr`.
    fn connect_note(&self, users: &[usize], name: &[u8]) -> String {
        let inos: Vec<String> = users
            .iter()
            .map(|&u| self.sock(u).ino().to_string())
            .collect();
        let dgram = users.iter().any(|&u| self.sock(u).is_dgram());
        let stream = users.iter().any(|&u| !self.sock(u).is_dgram());
        let need = match (dgram, stream) {
            (true, true) => "a socket must be bound (dgram) or listening (stream) there",
            (true, false) => "a dgram socket must be bound there",
            _ => "a socket must be listening there",
        };
        format!(
            "note: a restore connects {} to {}: {need}, and criu restore needs --ext-unix-sk",
            inos.join(", "),
            display_name(name)
        )
    }

    /// `--reconnect INO=PATH`.
    pub fn reconnect(&mut self, act: usize, ino: u32, addr: &Addr) -> Result<Vec<Item>> {
        let s = self.find(act, ino)?;
        if self.sock(s).is_external() {
            return self.reconnect_entry(act, s, addr);
        }
        let mut items = Vec::new();
        let peer = self.sock(s).e.peer;
        if peer == 0 {
            return Err(self.err(
                act,
                Refusal::NotConnected {
                    sock: self.describe(s),
                    after: self.other_action(s),
                },
            ));
        }
        let Some(&p) = self.model.index(peer).as_ref() else {
            return Err(self.err(
                act,
                Refusal::PeerMissing {
                    sock: self.describe(s),
                    peer,
                },
            ));
        };
        if !self.sock(p).is_external() {
            return Err(self.err(
                act,
                Refusal::PeerInImages {
                    sock: self.describe(s),
                    peer,
                    ino,
                },
            ));
        }
        let sharers: Vec<usize> = self
            .model
            .users(peer)
            .into_iter()
            .filter(|&u| u != s)
            .collect();
        if sharers.is_empty() {
            self.claim(act, p)?;
            let old = display_name(&self.sock(p).e.name);
            set_addr(self.usk(p), addr);
            items.push(Item::Entry {
                sock: p,
                summary: format!(
                    "changed external entry {peer} (file id {}), the peer of {ino}: name {old} -> {}",
                    self.sock(p).e.id,
                    display_name(&addr.bytes)
                ),
            });
        } else {
            self.claim(act, s)?;
            let mut ext = self.sock(p).e.clone();
            ext.id = self.fresh_id()?;
            ext.ino = self.fresh_ino()?;
            ext.file_perms = None;
            set_addr(&mut ext, addr);
            let (new_ino, new_id) = (ext.ino, ext.id);
            let n = self.add(act, ext);
            self.usk(s).peer = new_ino;
            let others: Vec<String> = sharers
                .iter()
                .map(|&u| self.sock(u).e.ino.to_string())
                .collect();
            items.push(Item::Entry {
                sock: n,
                summary: format!(
                    "added external entry {new_ino} (file id {new_id}) for {ino} alone \
                     ({peer} stays the peer of {}): name {}",
                    others.join(", "),
                    display_name(&addr.bytes)
                ),
            });
            items.push(Item::Entry {
                sock: s,
                summary: format!(
                    "changed unix socket {ino} (file id {}): peer {peer} -> {new_ino}",
                    self.sock(s).e.id
                ),
            });
        }
        items.push(Item::Note(self.connect_note(&[s], &addr.bytes)));
        Ok(items)
    }

    /// `--reconnect` of an external entry: every socket connected to it
    /// goes to the new address.
    fn reconnect_entry(&mut self, act: usize, s: usize, addr: &Addr) -> Result<Vec<Item>> {
        let ino = self.sock(s).ino();
        let mut items = Vec::new();
        let users = self.model.users(ino);
        if users.is_empty() {
            return Err(self.err(
                act,
                Refusal::NoUsers {
                    sock: self.describe(s),
                },
            ));
        }
        self.claim(act, s)?;
        let old = display_name(&self.sock(s).e.name);
        set_addr(self.usk(s), addr);
        let inos: Vec<String> = users
            .iter()
            .map(|&u| self.sock(u).e.ino.to_string())
            .collect();
        items.push(Item::Entry {
            sock: s,
            summary: format!(
                "changed external entry {ino} (file id {}), the peer of {}: name {old} -> {}",
                self.sock(s).e.id,
                inos.join(", "),
                display_name(&addr.bytes)
            ),
        });
        items.push(Item::Note(self.connect_note(&users, &addr.bytes)));
        Ok(items)
    }

    /// `--external INO[=PATH]`.
    pub fn external(&mut self, act: usize, ino: u32, addr: Option<&Addr>) -> Result<Vec<Item>> {
        let (s, p) = self.external_pair(act, ino)?;
        let peer = self.sock(p).ino();
        let mutual = self.sock(p).e.peer == ino;
        self.claim(act, s)?;
        if mutual {
            self.claim(act, p)?;
        }
        let pu = &self.sock(p).e;
        let (name, name_dir, mnt_id) = match addr {
            Some(a) => (a.bytes.clone(), None, None),
            None => {
                let path = pu.name.first().is_some_and(|&b| b != 0);
                let relative = path && pu.name.first() != Some(&b'/');
                (
                    pu.name.clone(),
                    if relative { pu.name_dir.clone() } else { None },
                    if path { pu.mnt_id } else { None },
                )
            }
        };
        let peer_deleted = addr.is_none() && pu.deleted == Some(true);
        let (id, new) = (self.fresh_id()?, self.fresh_ino()?);
        let ext = external_entry(id, new, self.sock(s).e.r#type, name, name_dir, mnt_id);
        let nameless = ext.name.is_empty();
        let shown = display_name(&ext.name);
        let n = self.add(act, ext);
        self.usk(s).peer = new;
        let mut items = vec![
            Item::Entry {
                sock: n,
                summary: format!(
                    "added external entry {new} (file id {id}), the outside end for {ino}: {}, name {shown}{}",
                    type_name(self.sock(s).e.r#type),
                    if addr.is_none() && !nameless { format!(" (from {peer})") } else { String::new() }
                ),
            },
            Item::Entry {
                sock: s,
                summary: format!(
                    "changed unix socket {ino} (file id {}): peer {peer} -> {new}",
                    self.sock(s).e.id
                ),
            },
        ];
        if mutual {
            items.push(self.orphan_old_peer(p, ino));
        }
        if nameless {
            items.push(Item::Note(format!(
                "note: the new external end has no address: a restore needs --inherit-fd fd[N]:socket:[{ino}]"
            )));
        } else {
            let name = self.sock(n).e.name.clone();
            items.push(Item::Note(self.connect_note(&[s], &name)));
        }
        if peer_deleted {
            items.push(Item::Note(format!(
                "note: {peer}'s address was already unlinked when the images were made"
            )));
        }
        items.extend(self.external_notes(s, p, mutual));
        Ok(items)
    }

    /// The socket `ino` and its in-tree peer, or why `--external` cannot
    /// apply to it.
    fn external_pair(&self, act: usize, ino: u32) -> Result<(usize, usize)> {
        let s = self.find(act, ino)?;
        let refuse = |why| Err(self.err(act, why));
        let sock = self.describe(s);
        if self.sock(s).is_external() {
            return refuse(Refusal::AlreadyOutside { sock, ino });
        }
        let peer = self.sock(s).e.peer;
        if peer == 0 {
            return refuse(Refusal::NotConnected {
                sock,
                after: self.other_action(s),
            });
        }
        let Some(p) = self.model.index(peer) else {
            return refuse(Refusal::PeerMissing { sock, peer });
        };
        if p == s {
            return refuse(Refusal::SelfConnected { sock });
        }
        if self.sock(p).is_external() {
            return refuse(Refusal::AlreadyExternal {
                sock,
                peer: self.describe(p),
                ino,
            });
        }
        Ok((s, p))
    }

    /// The old peer `p` of `ino` loses its peer; a stream one is shut down
    /// both ways, as CRIU records a connection whose other end closed.
    fn orphan_old_peer(&mut self, p: usize, ino: u32) -> Item {
        let pu = self.usk(p);
        let peer = pu.ino;
        pu.peer = 0;
        let stream = pu.r#type != SOCK_DGRAM;
        let old_shut = shutdown_name(pu.shutdown);
        if stream {
            pu.shutdown = Some(SHUT_BOTH);
        }
        let id = pu.id;
        Item::Entry {
            sock: p,
            summary: if stream {
                format!("changed unix socket {peer} (file id {id}), the old peer: peer {ino} -> 0, shutdown {old_shut} -> BOTH")
            } else {
                format!("changed unix socket {peer} (file id {id}), the old peer: peer {ino} -> 0")
            },
        }
    }

    /// What becomes of the old peer `p` and of `s`'s own queue.
    fn external_notes(&self, s: usize, p: usize, mutual: bool) -> Vec<Item> {
        let (ino, peer) = (self.sock(s).ino(), self.sock(p).ino());
        let mut notes = Vec::new();
        if !mutual {
            notes.push(format!(
                "note: {} does not have {ino} as peer and stays as it is",
                self.describe(p)
            ));
        } else if self.sock(p).e.r#type != SOCK_DGRAM {
            notes.push(format!(
                "note: {peer} comes back as a connection whose other end has closed: \
                 it reads its queue ({}), then EOF",
                self.queued(p)
            ));
        } else {
            notes.push(format!(
                "note: {peer} comes back unconnected, with its queue ({})",
                self.queued(p)
            ));
        }
        if self.sock(s).e.r#type != SOCK_DGRAM && self.has_queue(s) {
            notes.push(format!(
                "note: {ino}'s own queue ({}) is not refilled by a restore: \
                 CRIU refills a stream socket's queue only through a peer in the images",
                self.queued(s)
            ));
        }
        notes.into_iter().map(Item::Note).collect()
    }

    /// Checks every changed or added entry the way restore will see it.
    pub fn check(&self) -> Result<()> {
        for (i, s) in self.model.socks.iter().enumerate() {
            if self.edits[i].owner.is_none() {
                continue;
            }
            let u = &s.e;
            let bad = |why| -> Error {
                EditError::Inconsistent {
                    file: self.files.clone(),
                    sock: self.describe(i),
                    why,
                }
                .into()
            };
            if u.name.len() > UNIX_PATH_MAX {
                return Err(bad(Inconsistency::NameTooLong {
                    len: u.name.len(),
                    max: UNIX_PATH_MAX,
                }));
            }
            if u.peer != 0 && self.model.index(u.peer).is_none() {
                return Err(bad(Inconsistency::PeerMissing(u.peer)));
            }
            if s.is_external() {
                if u.peer != 0 {
                    return Err(bad(Inconsistency::ExternalWithPeer(u.peer)));
                }
                if self.model.users(u.ino).is_empty() {
                    return Err(bad(Inconsistency::Unused));
                }
            } else if u.r#type != SOCK_DGRAM
                && u.state == ST_ESTABLISHED
                && u.peer == 0
                && u.shutdown != Some(SHUT_BOTH)
            {
                return Err(bad(Inconsistency::EstablishedWithoutPeer));
            }
        }
        Ok(())
    }
}

/// A number above `floor` (or, when there is none, any) not in `used`.
fn fresh(used: &mut BTreeSet<u32>, floor: u32) -> Option<u32> {
    let pick = (floor.saturating_add(1)..=u32::MAX)
        .chain(1..=u32::MAX)
        .find(|c| *c != 0 && !used.contains(c))?;
    used.insert(pick);
    Some(pick)
}

fn set_addr(u: &mut pb::UnixSkEntry, addr: &Addr) {
    u.name = addr.bytes.clone();
    // A new absolute or abstract address: the old directory, mount and
    // unlinked marks no longer apply.
    u.name_dir = None;
    u.mnt_id = None;
    u.deleted = None;
}
