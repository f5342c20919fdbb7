//! Where a set of images is: a directory, or a checkpoint archive
//! (`checkpoint/` inside podman's and CRI-O's exports). The explore views
//! and the toolkit read images through [`Images`] and so take either.

use super::archive::{self, Archive, ArchiveFault, FileReader};
use super::entry::EntryReader;
use super::source::Source;
use super::typed::Mapped;
use crate::error::{Error, Result};
use prost::Message;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The bytes of one file of images, wherever they are held.
pub struct Blob {
    pub name: String,
    held: Held,
}

enum Held {
    File(Mapped),
    Slice(Arc<memmap2::Mmap>, Range<usize>),
    Shared(Arc<[u8]>),
}

impl Blob {
    pub(super) fn slice(name: String, map: Arc<memmap2::Mmap>, r: Range<usize>) -> Blob {
        Blob {
            name,
            held: Held::Slice(map, r),
        }
    }

    pub(super) fn shared(name: String, b: Arc<[u8]>) -> Blob {
        Blob {
            name,
            held: Held::Shared(b),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.held {
            Held::File(m) => m.bytes(),
            Held::Slice(map, r) => &map[r.clone()],
            Held::Shared(b) => b,
        }
    }

    pub fn source(&self) -> Source<'_> {
        Source::from_slice(self.name.clone(), self.bytes())
    }
}

/// A set of images: a directory, or the images dir inside an archive.
#[derive(Clone)]
pub enum Images {
    Dir(PathBuf),
    Archive {
        archive: Arc<Archive>,
        /// The images' folder inside the archive: `checkpoint/`, or empty.
        root: String,
    },
}

/// The images' folder inside an archive: podman's and CRI-O's
/// `checkpoint/`, else the top (a tar of an images dir).
fn images_root(a: &Archive) -> Option<String> {
    if a.members()
        .iter()
        .any(|m| m.name.starts_with("checkpoint/"))
    {
        return Some("checkpoint/".into());
    }
    a.member("inventory.img").map(|_| String::new())
}

impl Images {
    /// A directory, or an archive file with images inside.
    pub fn open(path: &Path) -> Result<Images> {
        // A missing path is a directory whose first image read says so,
        // by that image's name.
        if std::fs::metadata(path).map_or(true, |m| m.is_dir()) {
            return Ok(Images::Dir(path.to_path_buf()));
        }
        let a = Archive::open(path)?;
        let root = images_root(&a).ok_or_else(|| Error::Archive {
            path: path.to_path_buf(),
            why: ArchiveFault::NoImages,
        })?;
        Ok(Images::Archive {
            archive: Arc::new(a),
            root,
        })
    }

    /// The archive the images are in, if any.
    pub fn archive(&self) -> Option<&Archive> {
        match self {
            Images::Dir(_) => None,
            Images::Archive { archive, .. } => Some(archive),
        }
    }

    fn member(&self, name: &str) -> String {
        match self {
            Images::Dir(_) => name.to_string(),
            Images::Archive { root, .. } => format!("{root}{name}"),
        }
    }

    /// How file `name` is named in messages: its path, or `ARCHIVE:MEMBER`.
    pub fn label(&self, name: &str) -> PathBuf {
        match self {
            Images::Dir(d) => d.join(name),
            Images::Archive { archive, .. } => archive.label(&self.member(name)).into(),
        }
    }

    /// Whether file `name` is there. In a directory, errors other than
    /// "not found" count as there, so that reading it reports them.
    pub fn exists(&self, name: &str) -> bool {
        match self {
            Images::Dir(d) => !matches!(d.join(name).try_exists(), Ok(false)),
            Images::Archive { archive, .. } => archive.member(&self.member(name)).is_some(),
        }
    }

    /// The files of the set (not those of subfolders) and their sizes,
    /// by name.
    pub fn files(&self) -> Result<Vec<(String, u64)>> {
        match self {
            Images::Dir(d) => {
                let io = |e| Error::io(d.display().to_string(), e);
                let mut v = Vec::new();
                for e in std::fs::read_dir(d).map_err(io)? {
                    let e = e.map_err(io)?;
                    let meta = e.metadata().map_err(io)?;
                    if meta.is_file() {
                        v.push((e.file_name().to_string_lossy().into_owned(), meta.len()));
                    }
                }
                v.sort();
                Ok(v)
            }
            Images::Archive { archive, root } => Ok(archive
                .members()
                .iter()
                .filter(|m| m.kind == archive::Kind::File)
                .filter_map(|m| {
                    let name = m.name.strip_prefix(root.as_str())?;
                    (!name.contains('/')).then(|| (name.to_string(), m.size))
                })
                .collect()),
        }
    }

    /// The size of file `name`.
    pub fn size(&self, name: &str) -> Result<u64> {
        match self {
            Images::Dir(d) => {
                let p = d.join(name);
                Ok(std::fs::metadata(&p)
                    .map_err(|e| Error::io(p.display().to_string(), e))?
                    .len())
            }
            Images::Archive { archive, .. } => {
                let m = self.member(name);
                archive
                    .member(&m)
                    .map(|m| m.size)
                    .ok_or_else(|| Error::Archive {
                        path: archive.path.clone(),
                        why: ArchiveFault::NoMember(m),
                    })
            }
        }
    }

    /// The whole of file `name` (mapped when it is a file or in a plain tar).
    pub fn bytes(&self, name: &str) -> Result<Blob> {
        match self {
            Images::Dir(d) => {
                let m = Mapped::open(&d.join(name))?;
                Ok(Blob {
                    name: m.name.clone(),
                    held: Held::File(m),
                })
            }
            Images::Archive { archive, .. } => archive.bytes(&self.member(name)),
        }
    }

    /// A reader of file `name` at any offset, for files too large to
    /// hold (pages).
    pub fn reader(&self, name: &str) -> Result<FileReader> {
        match self {
            Images::Dir(d) => {
                let p = d.join(name);
                let label = p.display().to_string();
                let file = std::fs::File::open(&p).map_err(|e| Error::io(label.clone(), e))?;
                FileReader::file(label, file)
            }
            Images::Archive { archive, .. } => archive.reader(&self.member(name)),
        }
    }

    /// The images of the previous dump this one builds on (its `parent`
    /// link), if there is one and it can be reached.
    pub fn parent(&self) -> Option<Images> {
        match self {
            Images::Dir(d) => {
                let p = d.join("parent");
                p.is_dir()
                    .then(|| Images::Dir(std::fs::canonicalize(&p).unwrap_or(p)))
            }
            Images::Archive { archive, root } => {
                let link = archive.member(&format!("{root}parent"))?;
                let archive::Kind::Symlink(to) = &link.kind else {
                    return None;
                };
                let dir = archive::resolve(root, to)?;
                archive
                    .members()
                    .iter()
                    .any(|m| m.name.starts_with(&dir))
                    .then(|| Images::Archive {
                        archive: archive.clone(),
                        root: dir,
                    })
            }
        }
    }

    /// Calls `f` with every entry of image `name`, decoded as `T`
    /// (payloads, if the image has any, are skipped).
    pub fn for_each<T: Message + Default>(
        &self,
        name: &str,
        magic_name: &str,
        mut f: impl FnMut(T) -> Result<()>,
    ) -> Result<()> {
        let blob = self.bytes(name)?;
        let mut src = blob.source();
        let mut rd = EntryReader::expect(&mut src, magic_name)?;
        while let Some(e) = rd.next_entry()? {
            f(e.decode()?)?;
        }
        Ok(())
    }

    /// All entries of image `name`.
    pub fn read_all<T: Message + Default>(&self, name: &str, magic_name: &str) -> Result<Vec<T>> {
        let mut v = Vec::new();
        self.for_each(name, magic_name, |m| {
            v.push(m);
            Ok(())
        })?;
        Ok(v)
    }

    /// A pagemap image: the id of its pages image (its head), then its
    /// entries.
    pub fn pagemap(&self, name: &str) -> Result<(u32, Vec<super::pb::PagemapEntry>)> {
        let blob = self.bytes(name)?;
        let mut src = blob.source();
        let mut rd = EntryReader::expect(&mut src, "PAGEMAP")?;
        let head: super::pb::PagemapHead = match rd.next_entry()? {
            Some(e) => e.decode()?,
            None => {
                return Err(Error::Images {
                    file: self.label(name),
                    why: crate::error::ImagesFault::NoEntry,
                })
            }
        };
        let mut v = Vec::new();
        while let Some(e) = rd.next_entry()? {
            v.push(e.decode()?);
        }
        Ok((head.pages_id, v))
    }

    /// The single entry of an image that holds exactly one (core, mm, fs,
    /// ids).
    pub fn read_one<T: Message + Default>(&self, name: &str, magic_name: &str) -> Result<T> {
        let mut v = self.read_all::<T>(name, magic_name)?;
        if v.is_empty() {
            return Err(Error::Images {
                file: self.label(name),
                why: crate::error::ImagesFault::NoEntry,
            });
        }
        Ok(v.swap_remove(0))
    }
}
