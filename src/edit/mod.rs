//! `crit edit DIR ACTION... [--dry-run]`: change where the unix sockets of
//! a checkpoint connect on restore, by rewriting `DIR/files.img`.
//!
//! # Actions
//!
//! - `--reconnect INO=PATH`: INO is an in-tree socket whose peer is an
//!   external entry (the outside end CRIU records for `--ext-unix-sk`), or
//!   such an external entry itself. After the edit a restore connects INO
//!   (or every socket connected to the external entry INO) to PATH. When
//!   other sockets share INO's external entry, only INO moves: it gets an
//!   external entry of its own (a copy of the shared one under a fresh
//!   inode and file id), and the shared entry stays with the others.
//! - `--external INO[=PATH]`: INO is an in-tree socket connected to another
//!   in-tree socket (its old peer). After the edit its peer is a new
//!   external entry: `uflags` USK_EXTERN, `peer` 0, INO's socket type,
//!   state LISTEN (as CRIU writes them), a fresh inode and file id, and as
//!   name PATH or else the old peer's recorded name (for an accepted stream
//!   connection that is the listener's address; a relative name keeps the
//!   old peer's `name_dir` and mount). Without any name a restore needs
//!   `--inherit-fd fd[N]:socket:[INO]`; the printout says so. When the old
//!   peer had INO as its peer, it loses it (`peer` 0): a stream or
//!   seqpacket one also gets `shutdown` BOTH, which is how CRIU records,
//!   and the only way it restores, a connection whose other end has
//!   closed (queued data can be read, then EOF); a dgram one comes back
//!   unconnected with its queue. An old peer that does not point back (a
//!   listener for a pending connection, a bound dgram socket) is left alone.
//!   See [`unix`] for the `criu/sk-unix.c` facts behind this.
//!
//! PATH is an absolute path or `@name` for an abstract address (stored as a
//! NUL byte, then the name). It must not be empty, hold a NUL byte, or be
//! longer than 107 bytes after the `@` conversion. A path is stored with
//! one NUL at the end, as the kernel reports bound paths and CRIU records
//! them. Relative paths are refused: restore would resolve them in CRIU's
//! own working directory.
//!
//! # Several actions
//!
//! All actions are checked and applied in memory before anything is
//! written; any refusal writes nothing. `--external` actions run first,
//! then `--reconnect` ones, each kind in the order given. An inode may be
//! named by one action only, and an entry may be changed by one action
//! only, so the result does not depend on the order (ask for
//! `--external INO=PATH` rather than `--external INO --reconnect INO=PATH`).
//!
//! # Output
//!
//! For each action, its command-line form, then for every entry it
//! changed or added a summary line and two lines with the whole
//! `file_entry` as crit's compact JSON with pretty value forms (what
//! `crit decode --pretty` shows, on one line):
//!
//! ```text
//! --reconnect 306782=/tmp/new.sock
//!   changed external entry 307648 (file id 11), the peer of 306782: name /tmp/scen/sock/extdg.sock -> /tmp/new.sock
//!     before: {"type": "UNIXSK", "id": 11, "usk": {...}}
//!     after:  {"type": "UNIXSK", "id": 11, "usk": {...}}
//!   note: a restore connects 306782 to /tmp/new.sock: ...
//! files.img: 1 entry changed, 0 added; written
//! ```
//!
//! An added entry shows `before: none`. Names in summaries are shown as
//! `-` (none), `@name` (abstract) or the path without its final NUL, bytes
//! outside printable ASCII as `\xNN`. The last line says what was written,
//! or `dry run, nothing written`. Errors are one line on stderr, exit 1.
//!
//! # Rewriting files.img
//!
//! Only `files.img` changes. Entries that did not change are copied
//! byte for byte, framing included. An added external entry goes right
//! before the first socket that has it as peer (CRIU's restore resolves a
//! peer only among earlier entries); one nothing points to goes at the end.
//! A changed
//! entry is re-encoded by prost. protobuf-c (CRIU) writes the fields it
//! knows in field-number order, which is what prost writes too, so for an
//! entry prost decodes completely, re-encoding gives back the same bytes
//! (checked for every entry of every CRIU 4.2 fixture in `tests/edit.rs`).
//! Before re-encoding, the edit checks exactly that for the entry at hand,
//! and refuses the edit when it does not hold (fields unknown to crit's
//! schema, which prost would drop). The file is replaced atomically
//! (temporary file, fsync, rename) and keeps its mode.
//!
//! # Memory
//!
//! `files.img` is read entry by entry from its mapping and never held
//! decoded: the edit keeps some 50 bytes per unix socket (where its entry
//! is, its file id and peer) plus the file ids and inodes in use, decodes
//! only the sockets the actions can reach, and writes the new file by
//! copying the unchanged byte ranges from the mapping a few MiB at a
//! time. Its peak RSS is about 1.5 times `files.img` plus a few MiB
//! (28 MiB for 20 MB of 200,000 unix sockets; checked in
//! `tests/edit_memory.rs`).

pub mod error;
pub mod files_img;
pub mod unix;

use crate::error::{Error, Result};
use crate::image::entry::EntryReader;
use crate::image::pb;
use crate::image::schema::msg;
use crate::image::typed::{expect_magic, AtomicFile, Mapped};
use crate::json::decode::{self, Style};
use crate::json::writer::JsonWriter;
use error::{DirFault, EditError, PathFault};
use files_img::{encode, At, FilesImg, Splice};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use unix::{Addr, Graph, Item, Queues};

/// Longest PATH accepted, in bytes after the `@` conversion.
pub const PATH_MAX_BYTES: usize = 107;

#[derive(Clone, Debug)]
pub enum Kind {
    Reconnect(Addr),
    External(Option<Addr>),
}

#[derive(Clone, Debug)]
pub struct Action {
    /// As given, e.g. `--reconnect 5=/x`.
    pub label: String,
    pub ino: u32,
    pub kind: Kind,
}

/// Parses the command line's actions, `--external` ones first.
pub fn parse_actions(reconnect: &[OsString], external: &[OsString]) -> Result<Vec<Action>> {
    let mut v = Vec::new();
    for a in external {
        v.push(parse_one("--external", a.as_bytes(), false)?);
    }
    for a in reconnect {
        v.push(parse_one("--reconnect", a.as_bytes(), true)?);
    }
    if v.is_empty() {
        return Err(EditError::NoAction.into());
    }
    for (i, a) in v.iter().enumerate() {
        if let Some(b) = v[..i].iter().find(|b| b.ino == a.ino) {
            return Err(EditError::SameInode {
                label: a.label.clone(),
                ino: a.ino,
                other: b.label.clone(),
            }
            .into());
        }
    }
    Ok(v)
}

fn parse_one(flag: &str, arg: &[u8], path_required: bool) -> Result<Action> {
    let label = format!("{flag} {}", String::from_utf8_lossy(arg));
    let (ino_s, path) = match arg.iter().position(|&b| b == b'=') {
        Some(i) => (&arg[..i], Some(&arg[i + 1..])),
        None => (arg, None),
    };
    let ino = std::str::from_utf8(ino_s)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|&n| n != 0)
        .ok_or_else(|| EditError::BadInode {
            label: label.clone(),
        })?;
    let kind = match (path, path_required) {
        (Some(p), true) => Kind::Reconnect(parse_path(&label, p)?),
        (None, true) => return Err(EditError::NeedPath { label }.into()),
        (Some(p), false) => Kind::External(Some(parse_path(&label, p)?)),
        (None, false) => Kind::External(None),
    };
    Ok(Action { label, ino, kind })
}

/// PATH as stored in `unix_sk_entry.name`.
pub fn parse_path(label: &str, p: &[u8]) -> Result<Addr> {
    let bad = |why| -> Error {
        EditError::Path {
            label: label.to_string(),
            why,
        }
        .into()
    };
    if p.is_empty() {
        return Err(bad(PathFault::Empty));
    }
    if p.contains(&0) {
        return Err(bad(PathFault::Nul));
    }
    let mut bytes = Vec::with_capacity(p.len() + 1);
    if let Some(name) = p.strip_prefix(b"@") {
        if name.is_empty() {
            return Err(bad(PathFault::EmptyAbstract));
        }
        bytes.push(0);
        bytes.extend_from_slice(name);
    } else if p.starts_with(b"/") {
        bytes.extend_from_slice(p);
    } else {
        return Err(bad(PathFault::Relative));
    }
    if bytes.len() > PATH_MAX_BYTES {
        return Err(bad(PathFault::TooLong {
            len: bytes.len(),
            max: PATH_MAX_BYTES,
        }));
    }
    if bytes.first() != Some(&0) {
        bytes.push(0);
    }
    Ok(Addr { bytes })
}

/// The edit, computed: what changes in `files.img`, and the printout.
pub struct Prepared {
    pub path: PathBuf,
    files: FilesImg,
    /// Changed entries: where each is and its new message.
    replaced: Vec<(At, Vec<u8>)>,
    /// Added entries: the offset of the entry each goes before (`None`:
    /// at the end) and its message.
    added: Vec<(Option<u64>, Vec<u8>)>,
    pub report: String,
    pub changed: usize,
}

impl Prepared {
    pub fn added(&self) -> usize {
        self.added.len()
    }

    /// The new `files.img`, written to `out`.
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut splices: Vec<Splice> = self
            .replaced
            .iter()
            .map(|(at, m)| Splice {
                at: at.offset,
                skip_to: at.end,
                message: m,
            })
            .chain(self.added.iter().filter_map(|(before, m)| {
                before.map(|at| Splice {
                    at,
                    skip_to: at,
                    message: m,
                })
            }))
            .collect();
        // An insertion before the replacement of the same entry.
        splices.sort_by_key(|s| (s.at, s.skip_to));
        let tail: Vec<&[u8]> = self
            .added
            .iter()
            .filter(|(before, _)| before.is_none())
            .map(|(_, m)| m.as_slice())
            .collect();
        self.files.write(out, &splices, &tail)
    }

    /// Replaces `files.img` with the new one, atomically.
    pub fn commit(&self) -> Result<()> {
        let mut f = AtomicFile::create(&self.path)?;
        self.write_to(&mut f)
            .and_then(|()| f.flush())
            .map_err(|e| Error::io(self.path.display().to_string(), e))?;
        f.commit()
    }
}

/// Refuses a directory that lacks the images every restore needs.
fn check_dir(dir: &Path) -> Result<()> {
    let bad = |why| -> Error {
        EditError::Dir {
            dir: dir.to_path_buf(),
            why,
        }
        .into()
    };
    if !dir.exists() {
        return Err(bad(DirFault::Missing));
    }
    if !dir.is_dir() {
        return Err(bad(DirFault::NotDir));
    }
    let missing: Vec<&'static str> = ["inventory.img", "pstree.img", "files.img"]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(bad(DirFault::Incomplete(missing)));
    }
    for (f, magic) in [("inventory.img", "INVENTORY"), ("pstree.img", "PSTREE")] {
        let m = Mapped::open(&dir.join(f))?;
        expect_magic(&mut m.source(), magic)?;
    }
    if dir.join("unixsk.img").exists() {
        return Err(bad(DirFault::OldLayout));
    }
    Ok(())
}

/// Packets and bytes queued per socket file id, from `sk-queues.img`.
/// No file means nothing is queued.
fn read_queues(path: &Path) -> Result<Queues> {
    let mut q = Queues::new();
    if !path.exists() {
        return Ok(q);
    }
    let m = Mapped::open(path)?;
    let mut src = m.source();
    let mut rd = EntryReader::expect(&mut src, "SK_QUEUES")?;
    while let Some(e) = rd.next_entry()? {
        let p: pb::SkPacketEntry = e.decode()?;
        let slot = q.entry(p.id_for).or_insert((0, 0));
        slot.0 += 1;
        slot.1 += u64::from(p.length);
    }
    Ok(q)
}

/// A `file_entry` as crit's compact JSON with pretty value forms.
fn entry_json(bytes: &[u8]) -> String {
    let mut w = JsonWriter::new(Vec::new(), false);
    match decode::message(
        &mut w,
        msg::FILE_ENTRY,
        bytes,
        Style { pretty: true },
        false,
    ) {
        Ok(()) => match w.finish() {
            Ok(v) => String::from_utf8_lossy(&v).into_owned(),
            Err(e) => format!("(cannot show: {e})"),
        },
        Err(e) => format!("(cannot show: {})", e.reason),
    }
}

/// Validates and applies `actions` to `dir` in memory.
pub fn prepare(dir: &Path, actions: &[Action]) -> Result<Prepared> {
    check_dir(dir)?;
    let files = FilesImg::open(&dir.join("files.img"))?;
    let mut notes = Vec::new();
    let queues = match read_queues(&dir.join("sk-queues.img")) {
        Ok(q) => Some(q),
        Err(e) => {
            notes.push(format!("note: queued data not counted: {e}"));
            None
        }
    };
    let labels = actions.iter().map(|a| a.label.clone()).collect();
    let inos: Vec<u32> = actions.iter().map(|a| a.ino).collect();
    let mut g = Graph::load(&files, labels, &inos, queues)?;
    let mut done: Vec<Vec<Item>> = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        done.push(match &a.kind {
            Kind::Reconnect(addr) => g.reconnect(i, a.ino, addr)?,
            Kind::External(addr) => g.external(i, a.ino, addr.as_ref())?,
        });
    }
    g.check()?;

    // New bytes for changed entries, and the added ones.
    let mut replaced = Vec::new();
    let mut added = Vec::new();
    let mut after: HashMap<usize, Vec<u8>> = HashMap::new();
    for (si, (x, s)) in g.edits.iter().zip(&g.model.socks).enumerate() {
        match &x.entry {
            Some(at) => {
                // An entry no action touched, or one changed back.
                let Some(before) = &x.before else {
                    continue;
                };
                if **before == s.e {
                    continue;
                }
                let fe = files.entry(at)?;
                if encode(&fe) != files.message(at) {
                    return Err(EditError::NoReencode {
                        file: files.name.clone(),
                        ino: s.e.ino,
                        id: fe.id,
                        offset: at.offset,
                    }
                    .into());
                }
                let mut fe = fe;
                fe.usk = Some(s.e.clone());
                let bytes = encode(&fe);
                after.insert(si, bytes.clone());
                replaced.push((at.clone(), bytes));
            }
            None => {
                let fe = pb::FileEntry {
                    r#type: pb::FdTypes::Unixsk as i32,
                    id: s.e.id,
                    usk: Some(s.e.clone()),
                    ..Default::default()
                };
                let bytes = encode(&fe);
                after.insert(si, bytes.clone());
                added.push((s.e.ino, bytes));
            }
        }
    }

    let report = report(&notes, actions, &done, &g, &files, &after);
    let added = place_added(&g, added);
    Ok(Prepared {
        path: files.path.clone(),
        changed: replaced.len(),
        files,
        replaced,
        added,
        report,
    })
}

/// Where each added entry (inode, message) goes: right before the first
/// entry whose unix peer it is (CRIU resolves a socket's peer among the
/// entries read before it, and an external entry never points back, so
/// it must come first, as CRIU's own dump writes it). One nothing points
/// to goes at the end.
fn place_added(g: &Graph, added: Vec<(u32, Vec<u8>)>) -> Vec<(Option<u64>, Vec<u8>)> {
    let mut before: Vec<Option<u64>> = vec![None; added.len()];
    if !added.is_empty() {
        let mut by_ino: HashMap<u32, Vec<usize>> = HashMap::new();
        for (k, (ino, _)) in added.iter().enumerate() {
            by_ino.entry(*ino).or_default().push(k);
        }
        let peers = g
            .briefs
            .iter()
            .map(|b| b.peer_now(&g.model))
            .chain(g.other_peers.iter().copied());
        for (offset, peer) in peers {
            if peer == 0 {
                continue;
            }
            for &k in by_ino.get(&peer).into_iter().flatten() {
                if before[k].is_none_or(|b| offset < b) {
                    before[k] = Some(offset);
                }
            }
        }
    }
    before
        .into_iter()
        .zip(added)
        .map(|(b, (_, m))| (b, m))
        .collect()
}

/// The printout: notes, then each action with what it did to each entry
/// (before and after, as JSON) and its notes.
fn report(
    notes: &[String],
    actions: &[Action],
    done: &[Vec<Item>],
    g: &Graph,
    files: &FilesImg,
    after: &HashMap<usize, Vec<u8>>,
) -> String {
    let mut report = String::new();
    for n in notes {
        report.push_str(n);
        report.push('\n');
    }
    for (a, items) in actions.iter().zip(done) {
        report.push_str(&a.label);
        report.push('\n');
        for it in items {
            match it {
                Item::Entry { sock, summary } => {
                    report.push_str(&format!("  {summary}\n"));
                    let s = &g.edits[*sock];
                    let before = match &s.entry {
                        Some(at) => entry_json(files.message(at)),
                        None => "none".to_string(),
                    };
                    let now = match (after.get(sock), &s.entry) {
                        (Some(b), _) => entry_json(b),
                        (None, Some(at)) => entry_json(files.message(at)),
                        (None, None) => "none".to_string(),
                    };
                    report.push_str(&format!("    before: {before}\n    after:  {now}\n"));
                }
                Item::Note(n) => report.push_str(&format!("  {n}\n")),
            }
        }
    }
    report
}

/// `crit edit`.
pub fn run(dir: &Path, reconnect: &[OsString], external: &[OsString], dry_run: bool) -> Result<()> {
    let actions = parse_actions(reconnect, external)?;
    // One edit (or restore) of an images directory at a time: a second
    // edit waits, then reads what the first wrote.
    // (A missing directory is refused by `prepare`, in its words.)
    let _lock = match std::fs::File::open(dir) {
        Ok(d) => Some(
            nix::fcntl::Flock::lock(d, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
                EditError::Lock {
                    dir: dir.to_path_buf(),
                    source: e.into(),
                }
            })?,
        ),
        Err(_) => None,
    };
    let p = prepare(dir, &actions)?;
    let what = format!(
        "files.img: {} {} changed, {} added",
        p.changed,
        if p.changed == 1 { "entry" } else { "entries" },
        p.added()
    );
    let end = if dry_run {
        format!("{what}; dry run, nothing written\n")
    } else if p.changed + p.added() == 0 {
        format!("{what}; nothing to write\n")
    } else {
        p.commit()?;
        format!("{what}; written\n")
    };
    let mut out = std::io::stdout().lock();
    out.write_all(p.report.as_bytes())
        .and_then(|()| out.write_all(end.as_bytes()))
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("stdout", e))
}
