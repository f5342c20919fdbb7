//! File lookup shared by `fds`, `mems`, `rss` and `sk`: what crit 4.2's
//! `get_file_str` prints for a (descriptor type, file id) pair.
//!
//! As in crit 4.2, a file id is looked up in `files.img` first (the first
//! entry with that id wins, whatever its type); the descriptor type then
//! picks the field read from it (`reg`, `pipe`, `usk`), and an entry
//! without that field gives the "unknown" string. Only when `files.img`
//! has no entry with that id (or is missing or empty) do the images of old
//! layouts (`reg-files.img`, `pipes.img`, `unixsk.img`) get searched.
//! Unlike crit 4.2, which crashes there, a missing old-layout image counts
//! as "not found".
//!
//! Every image is read at most once, on first need, into a hash map.
//!
//! | type    | found                              | not found        |
//! |---------|------------------------------------|------------------|
//! | REG     | the file's name                    | `unknown path`   |
//! | PIPE    | `pipe[PIPE_ID]`                    | `pipe[?]`        |
//! | UNIXSK  | `unix[INO (PEER)]`, `unix[INO (PEER) NAME]` | `unix[?]` |
//! | other   | `TYPE.ID` (no lookup)              |                  |
//!
//! A unix socket's NAME is crit's JSON form of the bytes: Python's
//! `quopri.encodestring` (so a trailing NUL shows as `=00`).

use super::tasks::fd_type_name;
use crate::error::Result;
use crate::image::pb;
use crate::image::store::Images;
use std::collections::HashMap;

const REG: i32 = pb::FdTypes::Reg as i32;
const PIPE: i32 = pb::FdTypes::Pipe as i32;
const UNIXSK: i32 = pb::FdTypes::Unixsk as i32;

/// What crit 4.2 needs of a unix socket entry.
struct Usk {
    ino: u32,
    peer: u32,
    name: Vec<u8>,
}

/// What crit 4.2 needs of a `files.img` entry.
#[derive(Default)]
struct Found {
    reg: Option<String>,
    pipe: Option<u32>,
    usk: Option<Usk>,
}

pub struct Files {
    dir: Images,
    files: Option<HashMap<u32, Found>>,
    old_reg: Option<HashMap<u32, String>>,
    old_pipes: Option<HashMap<u32, u32>>,
    old_usk: Option<HashMap<u32, Usk>>,
}

/// Reads every entry of an image with `f`, keeping the first value per
/// id; a missing image gives an empty map.
fn load<T, V>(
    dir: &Images,
    name: &str,
    magic: &str,
    mut f: impl FnMut(T) -> (u32, V),
) -> Result<HashMap<u32, V>>
where
    T: prost::Message + Default,
{
    let mut m = HashMap::new();
    if !dir.exists(name) {
        return Ok(m);
    }
    dir.for_each::<T>(name, magic, |e| {
        let (id, v) = f(e);
        m.entry(id).or_insert(v);
        Ok(())
    })?;
    Ok(m)
}

impl Files {
    pub fn new(dir: &Images) -> Self {
        Files {
            dir: dir.clone(),
            files: None,
            old_reg: None,
            old_pipes: None,
            old_usk: None,
        }
    }

    fn files(&mut self) -> Result<&HashMap<u32, Found>> {
        if self.files.is_none() {
            let m = load::<pb::FileEntry, Found>(&self.dir, "files.img", "FILES", |e| {
                let found = Found {
                    reg: e.reg.map(|r| r.name),
                    pipe: e.pipe.map(|p| p.pipe_id),
                    usk: e.usk.map(|u| Usk {
                        ino: u.ino,
                        peer: u.peer,
                        name: u.name,
                    }),
                };
                (e.id, found)
            })?;
            self.files = Some(m);
        }
        Ok(self.files.get_or_insert_with(HashMap::new))
    }

    /// The `files.img` entry with id `id`, if any.
    fn in_files(&mut self, id: u64) -> Result<Option<&Found>> {
        let Ok(id) = u32::try_from(id) else {
            return Ok(None);
        };
        Ok(self.files()?.get(&id))
    }

    /// What crit 4.2 prints for a descriptor of type `ftype` on file `id`.
    pub fn describe(&mut self, ftype: i32, id: u64) -> Result<String> {
        Ok(match ftype {
            REG => self.reg(id)?,
            PIPE => match self.pipe_id(id)? {
                Some(p) => format!("pipe[{p}]"),
                None => "pipe[?]".to_string(),
            },
            UNIXSK => self.unix(id)?,
            _ => format!("{}.{}", fd_type_name(ftype), id),
        })
    }

    /// The name of regular file `id`, or `unknown path`.
    pub fn reg(&mut self, id: u64) -> Result<String> {
        let name = match self.in_files(id)? {
            Some(f) => f.reg.clone(),
            None => {
                if self.old_reg.is_none() {
                    let m = load::<pb::RegFileEntry, String>(
                        &self.dir,
                        "reg-files.img",
                        "REG_FILES",
                        |e| (e.id, e.name),
                    )?;
                    self.old_reg = Some(m);
                }
                let old = self.old_reg.get_or_insert_with(HashMap::new);
                u32::try_from(id).ok().and_then(|id| old.get(&id).cloned())
            }
        };
        // `rf and rf['name'] or 'unknown path'`: an empty name is unknown too.
        Ok(match name {
            Some(n) if !n.is_empty() => n,
            _ => "unknown path".to_string(),
        })
    }

    fn pipe_id(&mut self, id: u64) -> Result<Option<u32>> {
        if let Some(f) = self.in_files(id)? {
            return Ok(f.pipe);
        }
        if self.old_pipes.is_none() {
            let m =
                load::<pb::PipeEntry, u32>(&self.dir, "pipes.img", "PIPES", |e| (e.id, e.pipe_id))?;
            self.old_pipes = Some(m);
        }
        let old = self.old_pipes.get_or_insert_with(HashMap::new);
        Ok(u32::try_from(id).ok().and_then(|id| old.get(&id).copied()))
    }

    fn unix(&mut self, id: u64) -> Result<String> {
        let usk = match self.in_files(id)? {
            Some(f) => f.usk.as_ref(),
            None => {
                if self.old_usk.is_none() {
                    let m = load::<pb::UnixSkEntry, Usk>(&self.dir, "unixsk.img", "UNIXSK", |e| {
                        (
                            e.id,
                            Usk {
                                ino: e.ino,
                                peer: e.peer,
                                name: e.name,
                            },
                        )
                    })?;
                    self.old_usk = Some(m);
                }
                let old = self.old_usk.get_or_insert_with(HashMap::new);
                u32::try_from(id).ok().and_then(|id| old.get(&id))
            }
        };
        let Some(u) = usk else {
            return Ok("unix[?]".to_string());
        };
        let mut s = format!("unix[{} ({})", u.ino, u.peer);
        if !u.name.is_empty() {
            let mut q = Vec::new();
            crate::json::bytes_forms::qp_encode(&u.name, &mut q);
            // Quoted-printable output is ASCII.
            s.push(' ');
            s.push_str(&String::from_utf8_lossy(&q));
        }
        s.push(']');
        Ok(s)
    }
}
