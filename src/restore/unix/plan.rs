//! Decides how every unix socket of the images comes back, without a
//! single syscall: [`plan`] turns the socket model, the process tree and
//! the options into steps for crit ([`Step`]), work for the tasks
//! ([`TaskPair`], [`TaskConn`], [`ExtConnect`]) and the way each queue is
//! refilled ([`Sender`]). [`super::exec`] carries it out.
//!
//! The rules, in the order they are applied:
//! 1. A held socket whose peer is outside the images needs consent
//!    (`--ext-unix-sk`, bare or for its inode or the peer's); it is then
//!    connected by its task to the recorded address or to the one given.
//!    Without consent the restore is refused, naming every such socket.
//!    An outside end without an address can only be handed in
//!    (`--inherit-fd`).
//! 2. Listeners (bound when named) and named dgram sockets are made first.
//! 3. Connected in-tree pairs: an unnamed pair is made by the nearest
//!    common ancestor of its holders (so SO_PEERCRED names a task); an
//!    accepted connection goes through its listener (it keeps the name),
//!    made by the tasks themselves when one task holds every accepted end
//!    of that listener and the client's holder is alive, else by crit; any
//!    other pair is a socketpair (names, if any, are lost, with a warning).
//! 4. The rest: the unaccepted end of a pending connection is left to its
//!    client's connect; a connection whose peer now leads elsewhere (an
//!    edit) comes back with its queue and a closed other end; anything
//!    else is one socket, bound if named and not connected, connected to
//!    its peer's name when it has a peer.
//! 5. Queues are refilled from the socket that delivers to each one; what
//!    cannot be (an outside peer's data, a handed-in socket) is reported.

use super::super::ExtUnix;
use crate::model::unix::{display_name, type_name, Model, Sock, ST_ESTABLISHED};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One task of the tree, as the planner needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    pub pid: u32,
    pub ppid: u32,
    pub zombie: bool,
}

/// An address to connect to: a name as the images hold it, and the
/// directory a relative path is resolved from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: Vec<u8>,
    pub dir: Option<String>,
}

/// What crit does, in order, before the tree is forked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A listener: socket, bound when named, listen.
    Listen { ino: u32 },
    /// A named dgram socket: socket, bind.
    Bind { ino: u32 },
    /// Two in-tree ends joined by socketpair().
    Pair { a: u32, b: u32 },
    /// The unconnected, non-blocking client of a [`TaskConn`].
    Client { ino: u32 },
    /// crit connects `cli` to its listener's name and accepts `acc`.
    ConnectAccept { cli: u32, acc: u32, listener: u32 },
    /// A socketpair whose other end sends `ino`'s queue and then goes: a
    /// connection whose peer is gone or leads elsewhere.
    Orphan { ino: u32 },
    /// A named dgram socket made by a [`Step::Bind`], connected to its
    /// peer's name once every named socket is bound.
    Connect { ino: u32, to: Target },
    /// One socket, bound to its name if `bind`, connected to `connect`.
    Single {
        ino: u32,
        bind: bool,
        connect: Option<Target>,
    },
}

impl Step {
    /// The sockets this step makes (in crit).
    pub fn made(&self) -> Vec<u32> {
        match *self {
            Step::Listen { ino }
            | Step::Bind { ino }
            | Step::Client { ino }
            | Step::Orphan { ino }
            | Step::Single { ino, .. } => vec![ino],
            Step::Pair { a, b } => vec![a, b],
            Step::ConnectAccept { cli, acc, .. } => vec![cli, acc],
            Step::Connect { .. } => vec![],
        }
    }
}

/// An unnamed connected pair made by task `pid` (which holds one or both
/// ends, or is the nearest common ancestor of the tasks that do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskPair {
    pub pid: u32,
    pub a_id: u32,
    pub b_id: u32,
}

/// A connection through an in-tree listener that the tree makes itself,
/// so that SO_PEERCRED of the accepted end names the task that connected:
/// crit made the client socket (unconnected, non-blocking), `connector`
/// (its first holder) connects it, and `acceptor` (the accepted end's only
/// holder) accepts it, then fills both queues and sets both ends' shutdown
/// state, options and flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskConn {
    pub listener_id: u32,
    /// The listener's name (the accepted end carries it too).
    pub listener: Vec<u8>,
    pub listener_dir: Option<String>,
    pub cli_id: u32,
    pub acc_id: u32,
    pub connector: u32,
    pub acceptor: u32,
}

/// A socket (file id, inode) that its first holder connects to an outside
/// address, with its own credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtConnect {
    pub id: u32,
    pub ino: u32,
    pub target: Target,
}

/// Which socket crit sends a socket's queued messages from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// A socket crit made (the peer, or a dgram socket connected to it).
    Made(u32),
    /// The other end of the socket's [`Step::Orphan`] pair.
    Orphan,
    /// A temporary dgram socket connected to the socket's own name.
    Temp,
}

/// Something the user should hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// Two named ends rejoined as a socketpair lose their names.
    PairNamesLost { a: u32, b: u32 },
    /// A named connection whose peer leads elsewhere loses its name.
    OrphanNameLost { ino: u32 },
    /// Bytes queued for the socket that a restore cannot deliver.
    NotRedelivered { ino: u32, bytes: u64 },
    /// The socket is connected to an outside peer by its task.
    Reconnects { ino: u32, to: Target },
}

impl Note {
    pub fn is_warning(&self) -> bool {
        !matches!(self, Note::Reconnects { .. })
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::PairNamesLost { a, b } => write!(
                f,
                "unix sockets {a} and {b}: rejoined as a pair; their names are not restored"
            ),
            Note::OrphanNameLost { ino } => write!(
                f,
                "unix socket {ino}: its peer now leads elsewhere; its name is not restored"
            ),
            Note::NotRedelivered { ino, bytes } => write!(
                f,
                "unix socket {ino}: {bytes} bytes the outside peer had sent are not redelivered (they stay in the images)"
            ),
            Note::Reconnects { ino, to } => write!(
                f,
                "unix socket {ino}: will reconnect to outside peer {}",
                display_name(&to.name)
            ),
        }
    }
}

/// Why the sockets cannot be restored as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Sockets with an outside peer and no consent: (inode, type, peer name).
    #[error(
        "unix sockets with a peer outside the images: {}; allow with --ext-unix-sk (or --ext-unix-sk=INO[=PATH])",
        no_consent(.0)
    )]
    NoConsent(Vec<(u32, u32, Vec<u8>)>),
    /// The outside peer has no address and no new one was given.
    #[error(
        "unix socket {ino}: its outside peer has no address; hand the socket in with --inherit-fd fd[N]:socket:[{ino}]"
    )]
    NoAddress { ino: u32 },
    /// A peer in the images without a name to connect to.
    #[error("unix socket {ino}: its peer {peer} has no name to connect to")]
    PeerUnnamed { ino: u32, peer: u32 },
    /// A name no socket can have.
    #[error("unix socket {ino}: bad name {}: {why}", display_name(.name))]
    BadName {
        ino: u32,
        name: Vec<u8>,
        why: &'static str,
    },
    /// `--inherit-fd fd[N]:socket:[INO]` for a socket not in the images.
    #[error("--inherit-fd fd[{fd}]:socket:[{ino}]: no unix socket {ino} in the images")]
    InheritUnknown { fd: i32, ino: u32 },
    /// A type crit cannot make.
    #[error("unix socket {ino}: unsupported type {sk_type}")]
    BadType { ino: u32, sk_type: u32 },
    /// A socket whose peer is itself and cannot be.
    #[error("unix socket {ino}: is its own peer, which only a named datagram socket can be")]
    OwnPeer { ino: u32 },
    /// Ends of two types.
    #[error("unix socket {ino} ({}): its peer {peer} is a {} socket", type_name(*.sk_type), type_name(*.peer_type))]
    PeerType {
        ino: u32,
        sk_type: u32,
        peer: u32,
        peer_type: u32,
    },
}

/// "10 (DGRAM, peer /x), 11 (STREAM, peer -)".
fn no_consent(list: &[(u32, u32, Vec<u8>)]) -> String {
    let socks: Vec<String> = list
        .iter()
        .map(|(ino, t, peer)| format!("{ino} ({}, peer {})", type_name(*t), display_name(peer)))
        .collect();
    socks.join(", ")
}

/// Everything the unix sockets need, decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixPlan {
    pub steps: Vec<Step>,
    pub task_pairs: Vec<TaskPair>,
    pub task_conns: Vec<TaskConn>,
    pub ext_connects: Vec<ExtConnect>,
    /// How crit refills each queue, by inode (sockets the tasks make or
    /// that nothing can refill are absent).
    pub senders: HashMap<u32, Sender>,
    /// Sockets crit finishes (shutdown state, options, flags) once their
    /// queues are in, in inode order.
    pub finish: Vec<u32>,
    pub notes: Vec<Note>,
}

impl UnixPlan {
    /// Sockets whose queues and finishing are left to the tasks.
    pub fn in_tasks(&self, m: &Model) -> HashSet<u32> {
        let by_id = |id: u32| m.by_id(id).map(Sock::ino);
        self.task_pairs
            .iter()
            .flat_map(|p| [by_id(p.a_id), by_id(p.b_id)])
            .chain(
                self.task_conns
                    .iter()
                    .flat_map(|c| [by_id(c.cli_id), by_id(c.acc_id)]),
            )
            .flatten()
            .collect()
    }
}

/// The longest name the kernel takes.
const NAME_MAX: usize = crate::model::unix::UNIX_PATH_MAX;

/// An address to connect to, checked: a path must be UTF-8, and no name
/// may be longer than `sun_path`.
pub fn target(name: &[u8], dir: Option<&str>, ino: u32) -> Result<Target, Refusal> {
    let bad = |why| Refusal::BadName {
        ino,
        name: name.to_vec(),
        why,
    };
    if name.len() > NAME_MAX {
        return Err(bad("longer than 108 bytes"));
    }
    if name.first() == Some(&0) {
        return Ok(Target {
            name: name.to_vec(),
            dir: None,
        });
    }
    let end = name.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if std::str::from_utf8(&name[..end]).is_err() {
        return Err(bad("not UTF-8"));
    }
    let relative = name.first() != Some(&b'/');
    Ok(Target {
        name: name.to_vec(),
        dir: if relative {
            dir.map(str::to_string)
        } else {
            None
        },
    })
}

/// A name given on the command line: a path, or `@name` for abstract.
pub fn target_from_arg(s: &str, ino: u32) -> Result<Target, Refusal> {
    let mut v = Vec::new();
    if let Some(a) = s.strip_prefix('@') {
        v.push(0);
        v.extend_from_slice(a.as_bytes());
    } else {
        v.extend_from_slice(s.as_bytes());
    }
    target(&v, None, ino)
}

/// The sockets handed in with `--inherit-fd fd[N]:socket:[INO]`, as (N,
/// inode); other kinds of `--inherit-fd` are not sockets and are skipped.
pub fn inherited(m: &Model, inherit_fds: &[(i32, String)]) -> Result<Vec<(i32, u32)>, Refusal> {
    let mut out = Vec::new();
    for (n, what) in inherit_fds {
        let Some(ino) = what
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if m.get(ino).is_none() {
            return Err(Refusal::InheritUnknown { fd: *n, ino });
        }
        out.push((*n, ino));
    }
    Ok(out)
}

/// What [`plan`] works from.
pub struct Input<'a> {
    pub model: &'a Model,
    pub tree: &'a [TaskInfo],
    pub ext: &'a ExtUnix,
    /// Inodes of the sockets handed in (`--inherit-fd`).
    pub inherited: &'a HashSet<u32>,
}

/// Plans every unix socket; see the module docs for the rules.
pub fn plan(inp: &Input) -> Result<UnixPlan, Refusal> {
    let mut p = Planner {
        inp,
        out: UnixPlan::default(),
        made: HashSet::new(),
        deferred: HashSet::new(),
        in_task: HashSet::new(),
        ext_target: HashMap::new(),
    };
    for s in &inp.model.socks {
        if !s.is_external() && !matches!(s.e.r#type, 1 | 2 | 5) {
            return Err(Refusal::BadType {
                ino: s.ino(),
                sk_type: s.e.r#type,
            });
        }
        peer_possible(inp.model, s)?;
    }
    p.outside_peers()?;
    p.listeners_and_bound()?;
    p.pairs()?;
    p.the_rest()?;
    p.queues();
    let made = &p.made;
    let in_task = &p.in_task;
    let mut finish: Vec<u32> = made
        .iter()
        .copied()
        .filter(|i| !in_task.contains(i))
        .collect();
    finish.sort_unstable();
    p.out.finish = finish;
    Ok(p.out)
}

/// Whether the kernel could have connected `s` to its peer: a socket
/// is its own peer only as a named datagram socket (anything else was
/// planned as a socketpair of itself: one end lost, the other closed),
/// and both ends are of one type (a connect to another type fails with
/// EPROTOTYPE). An outside end's entry is left alone.
fn peer_possible(m: &Model, s: &Sock) -> Result<(), Refusal> {
    let ino = s.ino();
    if s.is_external() || s.e.peer == 0 {
        return Ok(());
    }
    if s.e.peer == ino && !(s.is_dgram() && s.is_named()) {
        return Err(Refusal::OwnPeer { ino });
    }
    match m.peer(s) {
        Some(p) if !p.is_external() && p.e.r#type != s.e.r#type => Err(Refusal::PeerType {
            ino,
            sk_type: s.e.r#type,
            peer: p.ino(),
            peer_type: p.e.r#type,
        }),
        _ => Ok(()),
    }
}

struct Planner<'a> {
    inp: &'a Input<'a>,
    out: UnixPlan,
    /// Sockets crit makes.
    made: HashSet<u32>,
    /// Sockets the tasks make (pairs, accepted ends).
    deferred: HashSet<u32>,
    /// Sockets whose queue and finishing the tasks see to.
    in_task: HashSet<u32>,
    /// Sockets to connect to an outside address, and where.
    ext_target: HashMap<u32, Target>,
}

impl Planner<'_> {
    fn m(&self) -> &Model {
        self.inp.model
    }

    /// Inodes in ascending order.
    fn inos(&self) -> Vec<u32> {
        self.m().by_inode().iter().map(|s| s.ino()).collect()
    }

    fn sock(&self, ino: u32) -> &Sock {
        &self.m().socks[self.m().index(ino).unwrap_or(0)]
    }

    fn is_inherited(&self, ino: u32) -> bool {
        self.inp.inherited.contains(&ino)
    }

    fn make(&mut self, step: Step) {
        self.made.extend(step.made());
        self.out.steps.push(step);
    }

    /// Distinct holder pids of a socket, in tree order.
    fn holder_pids(&self, s: &Sock) -> Vec<u32> {
        let mut v: Vec<u32> = Vec::new();
        for h in &s.holders {
            if !v.contains(&h.pid) {
                v.push(h.pid);
            }
        }
        v
    }

    fn live(&self, pid: u32) -> bool {
        self.inp.tree.iter().any(|t| t.pid == pid && !t.zombie)
    }

    /// Rule 1.
    fn outside_peers(&mut self) -> Result<(), Refusal> {
        let ext = self.inp.ext;
        let mut refused = Vec::new();
        for ino in self.inos() {
            let s = self.sock(ino);
            if s.is_external() || s.e.peer == 0 || !s.is_held() || self.is_inherited(ino) {
                continue;
            }
            if !self.m().peer_is_outside(s) {
                continue;
            }
            let pname = self
                .m()
                .peer(s)
                .map(|p| p.e.name.clone())
                .unwrap_or_default();
            let peer = s.e.peer;
            if !(ext.all || ext.per.contains_key(&ino) || ext.per.contains_key(&peer)) {
                refused.push((ino, s.e.r#type, pname));
                continue;
            }
            let path = ext
                .per
                .get(&ino)
                .or_else(|| ext.per.get(&peer))
                .cloned()
                .flatten();
            let t = match path {
                Some(p) => target_from_arg(&p, ino)?,
                None if !pname.is_empty() => target(&pname, None, ino)?,
                None => return Err(Refusal::NoAddress { ino }),
            };
            self.ext_target.insert(ino, t);
        }
        if !refused.is_empty() {
            return Err(Refusal::NoConsent(refused));
        }
        Ok(())
    }

    /// Rule 2. A named dgram socket connected to an in-tree named socket
    /// (a client bound to its own path, as it must be for replies) is
    /// connected after every bind.
    fn listeners_and_bound(&mut self) -> Result<(), Refusal> {
        let mut connects = Vec::new();
        for ino in self.inos() {
            let s = self.sock(ino);
            if s.is_external() || self.is_inherited(ino) {
                continue;
            }
            let step = if s.is_listener() {
                Step::Listen { ino }
            } else if s.is_dgram() && s.is_named() {
                Step::Bind { ino }
            } else {
                continue;
            };
            if s.is_named() {
                target(&s.e.name, s.e.name_dir.as_deref(), ino)?;
            }
            let bound = matches!(step, Step::Bind { .. });
            let peer = self
                .m()
                .peer(s)
                .filter(|p| p.is_named() && !p.is_external());
            if let Some(p) = peer.filter(|_| bound && !self.ext_target.contains_key(&ino)) {
                let to = target(&p.e.name, p.e.name_dir.as_deref(), p.ino())?;
                connects.push(Step::Connect { ino, to });
            }
            self.make(step);
        }
        self.out.steps.extend(connects);
        Ok(())
    }

    /// The one task that holds every accepted end of listener `l`, if any.
    fn sole_acceptor(&self, l: &Sock) -> Option<u32> {
        let mut acceptor: Option<Option<u32>> = None;
        for s in &self.m().socks {
            if !(s.is_connection() && self.m().listener_of(s).is_some_and(|x| x.ino() == l.ino())) {
                continue;
            }
            let pids = self.holder_pids(s);
            let only = match pids.as_slice() {
                [one] => Some(*one),
                _ => None,
            };
            match acceptor {
                None => acceptor = Some(only),
                Some(a) if a != only => return None,
                _ => {}
            }
        }
        acceptor.flatten()
    }

    /// Whether a listener has connections still pending in its backlog
    /// (their client ends have the listener as peer).
    fn has_pending(&self, l: &Sock) -> bool {
        self.m().socks.iter().any(|s| s.e.peer == l.ino())
    }

    /// Rule 3.
    fn pairs(&mut self) -> Result<(), Refusal> {
        for ino in self.inos() {
            if self.deferred.contains(&ino) || self.made.contains(&ino) || self.is_inherited(ino) {
                continue;
            }
            let s = self.sock(ino);
            if s.is_external() || s.e.peer == 0 {
                continue;
            }
            let Some(p) = self.m().peer(s) else { continue };
            let pi = p.ino();
            if p.e.peer != ino
                || p.is_external()
                || self.made.contains(&pi)
                || self.is_inherited(pi)
            {
                continue;
            }
            let (s, p) = (s.clone(), p.clone());
            if self.task_pair(&s, &p) || self.through_listener(&s, &p)? {
                continue;
            }
            if s.e.state == ST_ESTABLISHED || s.is_dgram() {
                if s.is_named() || p.is_named() {
                    self.out.notes.push(Note::PairNamesLost { a: ino, b: pi });
                }
                self.make(Step::Pair { a: ino, b: pi });
            }
        }
        Ok(())
    }

    /// An unnamed pair made inside the tree by the nearest common ancestor
    /// of the tasks holding its ends.
    fn task_pair(&mut self, s: &Sock, p: &Sock) -> bool {
        let mut holders = self.holder_pids(s);
        for pid in self.holder_pids(p) {
            if !holders.contains(&pid) {
                holders.push(pid);
            }
        }
        let Some(maker) = common_ancestor(self.inp.tree, &holders) else {
            return false;
        };
        // An end only in flight is crit's to send: crit makes the pair.
        let eligible = s.is_held()
            && p.is_held()
            && !s.is_named()
            && !p.is_named()
            && (s.e.state == ST_ESTABLISHED || s.is_dgram())
            && !self.ext_target.contains_key(&s.ino())
            && !self.ext_target.contains_key(&p.ino());
        if !eligible {
            return false;
        }
        self.out.task_pairs.push(TaskPair {
            pid: maker,
            a_id: s.id,
            b_id: p.id,
        });
        self.deferred.insert(s.ino());
        self.deferred.insert(p.ino());
        true
    }

    /// A stream connection one of whose ends was accepted from an in-tree
    /// listener: made through it (by the tasks or by crit).
    fn through_listener(&mut self, s: &Sock, p: &Sock) -> Result<bool, Refusal> {
        if s.is_dgram() || s.e.state != ST_ESTABLISHED {
            return Ok(false);
        }
        // The named end is the accepted one.
        let (acc, cli) = if !s.is_named() && p.is_named() {
            (p, s)
        } else {
            (s, p)
        };
        let Some(l) = self
            .m()
            .listener_of(acc)
            .filter(|l| self.made.contains(&l.ino()))
            .cloned()
        else {
            return Ok(false);
        };
        let acc_holders = self.holder_pids(acc);
        let cli_holders = self.holder_pids(cli);
        let by_tasks = acc_holders.len() == 1
            && self.sole_acceptor(&l) == Some(acc_holders[0])
            && acc_holders.iter().all(|&h| self.live(h))
            && cli_holders.first().is_some_and(|&h| self.live(h))
            && l.is_held()
            && !l.is_deleted()
            && !self.has_pending(&l)
            && !self.ext_target.contains_key(&cli.ino())
            && !self.ext_target.contains_key(&acc.ino());
        if by_tasks {
            self.make(Step::Client { ino: cli.ino() });
            self.out.task_conns.push(TaskConn {
                listener_id: l.id,
                listener: acc.e.name.clone(),
                listener_dir: acc.e.name_dir.clone(),
                cli_id: cli.id,
                acc_id: acc.id,
                connector: cli_holders[0],
                acceptor: acc_holders[0],
            });
            self.in_task.insert(cli.ino());
            self.in_task.insert(acc.ino());
            self.deferred.insert(acc.ino());
        } else {
            target(&acc.e.name, acc.e.name_dir.as_deref(), acc.ino())?;
            self.make(Step::ConnectAccept {
                cli: cli.ino(),
                acc: acc.ino(),
                listener: l.ino(),
            });
        }
        Ok(true)
    }

    /// The unaccepted end of a pending connection, written by crit dump
    /// when the client had sent data: its client's connect makes it.
    fn is_unaccepted(&self, s: &Sock) -> bool {
        s.is_connection()
            && !s.is_held()
            && self.m().peer(s).is_some_and(|c| {
                self.m()
                    .peer(c)
                    .is_some_and(|l| l.is_listener() && l.e.name == s.e.name)
            })
    }

    /// A connection whose other end now leads elsewhere (`crit edit
    /// --external` on its peer), or is gone: it comes back with its queue
    /// and a closed other end.
    fn is_orphan(&self, s: &Sock) -> bool {
        if self.ext_target.contains_key(&s.ino()) {
            return false;
        }
        match self.m().peer(s) {
            Some(p) if p.e.peer != s.ino() && !p.is_external() => {
                if s.is_dgram() {
                    !p.is_named()
                } else {
                    !p.is_listener()
                }
            }
            Some(_) => false,
            None if s.e.peer == 0 => {
                (!s.is_dgram() && s.e.state == ST_ESTABLISHED)
                    || (s.is_dgram() && !s.is_named() && s.queued.packets > 0)
            }
            None => false,
        }
    }

    /// Rule 4.
    fn the_rest(&mut self) -> Result<(), Refusal> {
        for ino in self.inos() {
            if self.deferred.contains(&ino) || self.made.contains(&ino) || self.is_inherited(ino) {
                continue;
            }
            let s = self.sock(ino).clone();
            if s.is_external() || self.is_unaccepted(&s) {
                continue;
            }
            if self.is_orphan(&s) {
                if s.is_named() {
                    self.out.notes.push(Note::OrphanNameLost { ino });
                }
                self.make(Step::Orphan { ino });
                continue;
            }
            let bind = s.is_named() && s.e.state != ST_ESTABLISHED;
            if bind {
                target(&s.e.name, s.e.name_dir.as_deref(), ino)?;
            }
            let mut connect = None;
            if let Some(t) = self.ext_target.get(&ino).cloned() {
                self.out.ext_connects.push(ExtConnect {
                    id: s.id,
                    ino,
                    target: t.clone(),
                });
                self.out.notes.push(Note::Reconnects { ino, to: t });
            } else if let Some(p) = self.m().peer(&s) {
                if !p.is_named() {
                    return Err(Refusal::PeerUnnamed { ino, peer: p.ino() });
                }
                connect = Some(target(&p.e.name, p.e.name_dir.as_deref(), p.ino())?);
            }
            self.make(Step::Single { ino, bind, connect });
        }
        Ok(())
    }

    /// Rule 5.
    fn queues(&mut self) {
        let mut lost: BTreeMap<u32, u64> = BTreeMap::new();
        let orphans: HashSet<u32> = self
            .out
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Orphan { ino } => Some(*ino),
                _ => None,
            })
            .collect();
        for ino in self.inos() {
            let s = self.sock(ino);
            if s.queued.packets == 0 || self.deferred.contains(&ino) || self.in_task.contains(&ino)
            {
                continue;
            }
            let bytes = s.queued.bytes;
            if self.is_inherited(ino) || (self.m().peer_is_outside(s) && !s.is_dgram()) {
                *lost.entry(ino).or_default() += bytes;
                continue;
            }
            let sender = if orphans.contains(&ino) {
                Some(Sender::Orphan)
            } else if !s.is_dgram() {
                Some(s.e.peer)
                    .filter(|p| self.made.contains(p))
                    .map(Sender::Made)
            } else {
                self.dgram_sender(s)
            };
            let sender = match sender {
                Some(x) => x,
                None if s.is_dgram() && s.is_named() && !s.is_deleted() => Sender::Temp,
                None => {
                    *lost.entry(ino).or_default() += bytes;
                    continue;
                }
            };
            self.out.senders.insert(ino, sender);
        }
        for (ino, bytes) in lost {
            self.out.notes.push(Note::NotRedelivered { ino, bytes });
        }
    }

    /// A made dgram socket that sends to `s`: its peer when they point at
    /// each other, else the first one connected to it.
    fn dgram_sender(&self, s: &Sock) -> Option<Sender> {
        let ino = s.ino();
        if let Some(p) = self
            .m()
            .peer(s)
            .filter(|p| p.e.peer == ino && self.made.contains(&p.ino()))
        {
            return Some(Sender::Made(p.ino()));
        }
        self.m()
            .by_inode()
            .iter()
            .find(|x| x.e.peer == ino && self.made.contains(&x.ino()))
            .map(|x| Sender::Made(x.ino()))
    }
}

/// The nearest task that is one of `pids` or an ancestor of all of them
/// (None if `pids` is empty or a holder is missing or a zombie).
pub fn common_ancestor(tree: &[TaskInfo], pids: &[u32]) -> Option<u32> {
    let task = |p: u32| tree.iter().find(|t| t.pid == p);
    let chain = |mut p: u32| -> Vec<u32> {
        let mut v = vec![p];
        while let Some(t) = task(p) {
            if t.ppid == 0 || task(t.ppid).is_none() {
                break;
            }
            p = t.ppid;
            v.push(p);
        }
        v
    };
    let first = *pids.first()?;
    if pids.iter().any(|&p| task(p).is_none_or(|t| t.zombie)) {
        return None;
    }
    let chains: Vec<Vec<u32>> = pids.iter().map(|&p| chain(p)).collect();
    chain(first)
        .into_iter()
        .find(|a| chains.iter().all(|c| c.contains(a)))
}
