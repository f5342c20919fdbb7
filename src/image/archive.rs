//! Checkpoint archives, read in place: the tar that `podman container
//! checkpoint --export` and CRI-O write (images under `checkpoint/`, with
//! `config.dump`, `spec.dump`, `stats-dump`, `rootfs-diff.tar`, ...),
//! plain, gzip or zstd compressed, told apart by their first bytes.
//!
//! Nothing is unpacked to disk. A plain tar is memory-mapped and its
//! members are slices of the map. A compressed one is read once at open,
//! keeping the bytes of small members (up to [`CACHE_MEMBER`] each,
//! [`CACHE_TOTAL`] in all: the metadata images); a larger member (pages,
//! a root fs diff) is decompressed again when asked for, and streamed, so
//! memory stays bounded by one member whatever the archive's size.

use super::store::Blob;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Members up to this size are kept in memory when the archive is
/// compressed.
pub const CACHE_MEMBER: u64 = 8 << 20;
/// At most this much of a compressed archive is kept in memory.
pub const CACHE_TOTAL: u64 = 64 << 20;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// How the tar is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Plain,
    Gzip,
    Zstd,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::Plain => "tar",
            Codec::Gzip => "tar.gz",
            Codec::Zstd => "tar.zst",
        }
    }
}

/// What a member is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(String),
    Other,
}

/// One member of the archive, as its header says.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its path, without a leading `./` or a trailing `/`.
    pub name: String,
    pub size: u64,
    pub mtime: u64,
    pub kind: Kind,
    data: Data,
}

#[derive(Clone, Debug)]
enum Data {
    /// A plain tar: the bytes are at this offset of the file.
    At(u64),
    /// Kept from the pass at open.
    Cached(Arc<[u8]>),
    /// At this offset of the decompressed tar, read again when needed.
    Stream(u64),
    /// Not a regular file, or a sparse one (podman writes none).
    None,
}

pub struct Archive {
    pub path: PathBuf,
    pub codec: Codec,
    /// The size of the archive file.
    pub file_size: u64,
    map: Option<Arc<memmap2::Mmap>>,
    members: Vec<Member>,
    by_name: HashMap<String, usize>,
}

/// What is wrong with an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveFault {
    #[error("not a tar, tar.gz or tar.zst archive")]
    NotArchive,
    #[error("no member {0}")]
    NoMember(String),
    #[error("member {0} is not a regular file")]
    NotFile(String),
    #[error("member {name} is {size} bytes, more than can be held in memory here")]
    TooLarge { name: String, size: u64 },
    #[error("no images in it (no checkpoint/ folder, no inventory.img)")]
    NoImages,
    #[error("reading the archive: {0}")]
    Read(#[source] std::io::Error),
    #[error(
        "member {name} ({size} bytes from byte {at}) runs past the end of the tar ({end} bytes)"
    )]
    CutShort {
        name: String,
        size: u64,
        at: u64,
        end: u64,
    },
    #[error("reading member {name}: {source}")]
    ReadMember {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the archive after member {name} ({size} bytes): {source}")]
    ReadAfter {
        name: String,
        size: u64,
        #[source]
        source: std::io::Error,
    },
}

fn fault(path: &Path, why: ArchiveFault) -> Error {
    Error::Archive {
        path: path.to_path_buf(),
        why,
    }
}

/// The codec of a file that starts with `head`, if it looks like an
/// archive: gzip or zstd magic, or a tar header (`ustar` at 257).
pub fn sniff(head: &[u8]) -> Option<Codec> {
    if head.starts_with(GZIP_MAGIC) {
        Some(Codec::Gzip)
    } else if head.starts_with(ZSTD_MAGIC) {
        Some(Codec::Zstd)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(Codec::Plain)
    } else {
        None
    }
}

/// True when `path` is a regular file that looks like an archive.
pub fn is_archive(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    head_of(&f).is_ok_and(|h| sniff(&h).is_some())
}

/// The first 512 bytes of `f` (fewer if it is shorter), read without
/// moving its offset.
fn head_of(f: &std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut head = vec![0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read_at(&mut head[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(n);
    Ok(head)
}

fn clean(name: &str) -> String {
    let mut s = name;
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    s.trim_end_matches('/').to_string()
}

/// The folder a symlink `to` in folder `dir` (empty or ending in `/`)
/// leads to inside the archive, ending in `/`; `None` when it leaves the
/// archive.
pub fn resolve(dir: &str, to: &str) -> Option<String> {
    if to.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in to.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.iter().map(|p| format!("{p}/")).collect())
}

/// A reader whose first read fails with the error a decoder met at its
/// start.
struct Failing(Option<std::io::Error>);

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::ErrorKind::InvalidData.into()))
    }
}

/// The decompressed tar of `file`.
fn decompressed(codec: Codec, file: std::fs::File) -> Box<dyn Read + Send> {
    match codec {
        Codec::Plain => Box::new(BufReader::with_capacity(1 << 16, file)),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            file,
        ))),
        // libzstd reads every frame of the stream, skippable ones too.
        Codec::Zstd => match zstd::stream::read::Decoder::new(file) {
            Ok(d) => Box::new(d),
            Err(e) => Box::new(Failing(Some(e))),
        },
    }
}

impl Archive {
    /// Opens `path` and reads its table of members.
    pub fn open(path: &Path) -> Result<Archive> {
        let io = |e| Error::io(path.display().to_string(), e);
        let file = std::fs::File::open(path).map_err(io)?;
        let file_size = file.metadata().map_err(io)?.len();
        let head = head_of(&file).map_err(io)?;
        let codec = sniff(&head).ok_or_else(|| fault(path, ArchiveFault::NotArchive))?;
        let map = match codec {
            Codec::Plain => Some(Arc::new(crate::sys::mmap::map_readonly(&file).map_err(io)?)),
            _ => None,
        };
        let mut a = Archive {
            path: path.to_path_buf(),
            codec,
            file_size,
            map,
            members: Vec::new(),
            by_name: HashMap::new(),
        };
        a.index(file)?;
        Ok(a)
    }

    fn index(&mut self, file: std::fs::File) -> Result<()> {
        let path = self.path.clone();
        let rd = |e| fault(&path, ArchiveFault::Read(e));
        if self.codec == Codec::Plain {
            // Seek over the members' data instead of reading it.
            let mut tar = tar::Archive::new(BufReader::with_capacity(1 << 16, file));
            let entries = tar.entries_with_seek().map_err(rd)?;
            return self.add_entries(entries);
        }
        let mut tar = tar::Archive::new(decompressed(self.codec, file));
        let entries = tar.entries().map_err(rd)?;
        self.add_entries(entries)
    }

    fn add_entries<R: Read>(&mut self, entries: tar::Entries<'_, R>) -> Result<()> {
        let path = self.path.clone();
        let rd = |e| fault(&path, ArchiveFault::Read(e));
        let mut cached = 0u64;
        for e in entries {
            // An error here is met skipping the previous member's data
            // (or reading the next header): name that member.
            let mut e = e.map_err(|source| match self.members.last() {
                Some(m) => fault(
                    &path,
                    ArchiveFault::ReadAfter {
                        name: m.name.clone(),
                        size: m.size,
                        source,
                    },
                ),
                None => rd(source),
            })?;
            let name = clean(&String::from_utf8_lossy(&e.path_bytes()));
            let h = e.header();
            let size = e.size();
            let mtime = h.mtime().unwrap_or(0);
            let et = h.entry_type();
            let kind = if et.is_file() || et == tar::EntryType::Continuous {
                Kind::File
            } else if et.is_dir() {
                Kind::Dir
            } else if et.is_symlink() {
                let to = e
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default();
                Kind::Symlink(to)
            } else {
                Kind::Other
            };
            let at = e.raw_file_position();
            let cut = |end: u64| {
                fault(
                    &path,
                    ArchiveFault::CutShort {
                        name: name.clone(),
                        size,
                        at,
                        end,
                    },
                )
            };
            let data = if kind != Kind::File || et.is_gnu_sparse() {
                Data::None
            } else if self.codec == Codec::Plain {
                // A plain tar is read by seeking, which goes past its end
                // quietly: a member cut short would read as a short one.
                if at.checked_add(size).is_none_or(|end| end > self.file_size) {
                    return Err(cut(self.file_size));
                }
                Data::At(at)
            } else if size <= CACHE_MEMBER && cached + size <= CACHE_TOTAL {
                let mut v = Vec::with_capacity(size as usize);
                e.read_to_end(&mut v).map_err(|source| {
                    fault(
                        &path,
                        ArchiveFault::ReadMember {
                            name: name.clone(),
                            source,
                        },
                    )
                })?;
                if (v.len() as u64) < size {
                    return Err(cut(at + v.len() as u64));
                }
                cached += size;
                Data::Cached(v.into())
            } else {
                Data::Stream(e.raw_file_position())
            };
            self.by_name.insert(name.clone(), self.members.len());
            self.members.push(Member {
                name,
                size,
                mtime,
                kind,
                data,
            });
        }
        Ok(())
    }

    /// Every member, in archive order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.by_name.get(&clean(name)).map(|&i| &self.members[i])
    }

    /// How a member is named in messages: `ARCHIVE:NAME`.
    pub fn label(&self, name: &str) -> String {
        format!("{}:{}", self.path.display(), clean(name))
    }

    fn file(&self, name: &str) -> Result<&Member> {
        let m = self
            .member(name)
            .ok_or_else(|| fault(&self.path, ArchiveFault::NoMember(clean(name))))?;
        if matches!(m.data, Data::None) {
            return Err(fault(&self.path, ArchiveFault::NotFile(m.name.clone())));
        }
        Ok(m)
    }

    /// The decompressed tar from byte `pos` on, as an owned reader.
    fn decompressed_from(&self, pos: u64) -> Result<Box<dyn Read + Send>> {
        let file = std::fs::File::open(&self.path)
            .map_err(|e| Error::io(self.path.display().to_string(), e))?;
        let mut r = decompressed(self.codec, file);
        let skipped = std::io::copy(&mut (&mut r).take(pos), &mut std::io::sink())
            .map_err(|e| fault(&self.path, ArchiveFault::Read(e)))?;
        if skipped < pos {
            return Err(fault(
                &self.path,
                ArchiveFault::Read(std::io::ErrorKind::UnexpectedEof.into()),
            ));
        }
        Ok(r)
    }

    /// The whole of member `name`.
    pub fn bytes(&self, name: &str) -> Result<Blob> {
        let m = self.file(name)?;
        let label = self.label(name);
        match &m.data {
            Data::At(off) => {
                let map = self.map.clone().expect("a plain archive is mapped");
                let start = (*off as usize).min(map.len());
                let end = start.saturating_add(m.size as usize).min(map.len());
                Ok(Blob::slice(label, map, start..end))
            }
            Data::Cached(b) => Ok(Blob::shared(label, b.clone())),
            Data::Stream(pos) => {
                let mut v = Vec::new();
                v.try_reserve_exact(m.size as usize).map_err(|_| {
                    fault(
                        &self.path,
                        ArchiveFault::TooLarge {
                            name: m.name.clone(),
                            size: m.size,
                        },
                    )
                })?;
                self.decompressed_from(*pos)?
                    .take(m.size)
                    .read_to_end(&mut v)
                    .map_err(|e| fault(&self.path, ArchiveFault::Read(e)))?;
                Ok(Blob::shared(label, v.into()))
            }
            Data::None => unreachable!("file() refuses members without data"),
        }
    }

    /// A reader of member `name` that never holds it whole.
    pub fn reader(self: &Arc<Self>, name: &str) -> Result<FileReader> {
        let m = self.file(name)?;
        let how = match &m.data {
            Data::At(off) => How::Pread {
                file: std::fs::File::open(&self.path)
                    .map_err(|e| Error::io(self.path.display().to_string(), e))?,
                base: *off,
            },
            Data::Cached(b) => How::Memory(b.clone()),
            Data::Stream(pos) => How::Forward {
                archive: self.clone(),
                start: *pos,
                r: None,
                at: 0,
            },
            Data::None => unreachable!("file() refuses members without data"),
        };
        Ok(FileReader {
            name: self.label(name),
            size: m.size,
            how,
        })
    }
}

/// Reads a file of images at any offset: with pread on a file (an images
/// dir, a plain tar), from memory, or, inside a compressed archive, by
/// decompressing forward (and again from the start to go back).
pub struct FileReader {
    pub name: String,
    pub size: u64,
    how: How,
}

enum How {
    Pread {
        file: std::fs::File,
        base: u64,
    },
    Memory(Arc<[u8]>),
    Forward {
        archive: Arc<Archive>,
        /// Where the member starts in the decompressed tar.
        start: u64,
        r: Option<Box<dyn Read + Send>>,
        /// The member's offset `r` is at.
        at: u64,
    },
}

impl FileReader {
    /// A reader of a whole file.
    pub fn file(name: String, file: std::fs::File) -> Result<FileReader> {
        let size = file
            .metadata()
            .map_err(|e| Error::io(name.clone(), e))?
            .len();
        Ok(FileReader {
            name,
            size,
            how: How::Pread { file, base: 0 },
        })
    }

    /// Fills `buf` from offset `off`; fewer bytes only at the end.
    pub fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<usize> {
        let want = (buf.len() as u64).min(self.size.saturating_sub(off)) as usize;
        let buf = &mut buf[..want];
        let io = |name: &str, e| Error::io(name.to_string(), e);
        match &mut self.how {
            How::Pread { file, base } => {
                use std::os::unix::fs::FileExt;
                let mut done = 0;
                while done < buf.len() {
                    match file.read_at(&mut buf[done..], *base + off + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(io(&self.name, e)),
                    }
                }
                Ok(done)
            }
            How::Memory(b) => {
                let start = (off as usize).min(b.len());
                let n = buf.len().min(b.len() - start);
                buf[..n].copy_from_slice(&b[start..start + n]);
                Ok(n)
            }
            How::Forward {
                archive,
                start,
                r,
                at,
            } => {
                if r.is_none() || *at > off {
                    *r = Some(archive.decompressed_from(*start)?);
                    *at = 0;
                }
                let rd = r.as_mut().expect("reader set above");
                let gap = off - *at;
                let skipped = std::io::copy(&mut rd.take(gap), &mut std::io::sink())
                    .map_err(|e| io(&self.name, e))?;
                *at += skipped;
                if skipped < gap {
                    return Ok(0);
                }
                let mut done = 0;
                while done < buf.len() {
                    match rd.read(&mut buf[done..]) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(io(&self.name, e)),
                    }
                }
                *at += done as u64;
                Ok(done)
            }
        }
    }
}
