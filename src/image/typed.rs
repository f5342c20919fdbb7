//! Typed access to image files for the engines, `x` and `edit`: read the
//! entries of an image as prost messages, and write images atomically.

use super::entry::{self, EntryReader};
use super::magic::{self, Magic};
use super::source::Source;
use crate::error::{Error, ImagesFault, Result};
use prost::Message;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Files smaller than this are read rather than mapped: a map and its
/// unmap cost more than copying a few pages (most images are a few KiB).
const MAP_FROM: u64 = 64 << 10;

/// A file opened for reading: memory-mapped when it is big and can be.
pub struct Mapped {
    map: Option<memmap2::Mmap>,
    bytes: Vec<u8>,
    pub name: String,
}

impl Mapped {
    /// An image of an images directory: a regular file (or a link to
    /// one). Anything else is refused before a read: a FIFO would hold
    /// the reader until a writer came (hence the open without blocking),
    /// a device such as /dev/zero would never end.
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Error::io(&name, e))?;
        let meta = f.metadata().map_err(|e| Error::io(&name, e))?;
        if !meta.is_file() {
            return Err(Error::Images {
                file: path.to_path_buf(),
                why: ImagesFault::NotRegular(file_kind(&meta.file_type())),
            });
        }
        Self::read(f, name, &meta)
    }

    /// Any readable file, pipes and devices too: the toolkit's `-i`,
    /// which may be a pipe (`<(...)`) or a FIFO a writer fills later.
    pub fn open_any(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let f = std::fs::File::open(path).map_err(|e| Error::io(&name, e))?;
        let meta = f.metadata().map_err(|e| Error::io(&name, e))?;
        Self::read(f, name, &meta)
    }

    fn read(f: std::fs::File, name: String, meta: &std::fs::Metadata) -> Result<Self> {
        if meta.is_file() && meta.len() >= MAP_FROM {
            if let Ok(m) = crate::sys::mmap::map_readonly(&f) {
                return Ok(Mapped {
                    map: Some(m),
                    bytes: Vec::new(),
                    name,
                });
            }
        }
        // Room for the whole file and one byte more: one read, then the
        // end of file, with no probing reads.
        let mut bytes = Vec::with_capacity(meta.len().min(MAP_FROM) as usize + 1);
        std::io::Read::read_to_end(&mut &f, &mut bytes).map_err(|e| Error::io(&name, e))?;
        Ok(Mapped {
            map: None,
            bytes,
            name,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.map {
            Some(m) => m,
            None => &self.bytes,
        }
    }

    pub fn source(&self) -> Source<'_> {
        Source::from_slice(self.name.clone(), self.bytes())
    }

    /// Maps `len` bytes from `offset` in now, so that readers (the
    /// kernel's copies from them above all) take no page faults. By
    /// touching a byte of each page: each fault maps 16 pages (the
    /// kernel's fault-around), where `MADV_POPULATE_READ` marked every
    /// page accessed, an LRU move under a shared lock (1 GiB restore:
    /// 0.29 -> 0.25 s, 0.42 -> 0.38 s of CPU).
    pub fn prefault(&self, offset: usize, len: usize) {
        if let Some(m) = &self.map {
            let end = offset.saturating_add(len).min(m.len());
            let mut sum = 0u8;
            for i in (offset..end).step_by(4096) {
                sum ^= m[i];
            }
            std::hint::black_box(sum);
        }
    }

    /// Gives back what [`Mapped::prefault`] or reads of that range made
    /// resident (the file's cache keeps it): a reader of a large file
    /// keeps crit's memory to the part it works on.
    pub fn release(&self, offset: usize, len: usize) {
        if let Some(m) = &self.map {
            let len = len.min(m.len().saturating_sub(offset));
            crate::sys::mmap::drop_resident(m, offset, len);
        }
    }
}

/// How much of a mapped file [`Mapped::write_range`] copies between
/// releases: crit's share of the file's pages stays at about this.
const RELEASE_EVERY: usize = 4 << 20;

impl Mapped {
    /// The file's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes bytes `range` of the file to `out` as they are, a few MiB
    /// at a time, releasing each piece once written: copying a large
    /// file costs crit no more resident memory than one piece.
    pub fn write_range(
        &self,
        out: &mut impl Write,
        range: std::ops::Range<usize>,
    ) -> std::io::Result<()> {
        let b = self.bytes();
        let (mut at, end) = (range.start.min(b.len()), range.end.min(b.len()));
        while at < end {
            let n = (end - at).min(RELEASE_EVERY);
            out.write_all(&b[at..at + n])?;
            self.release(at, n);
            at += n;
        }
        Ok(())
    }
}

/// What a file that is not a regular one is, for errors.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "of another kind"
    }
}

/// Reads the magic of `src` and checks it is `want`.
pub fn expect_magic(src: &mut Source, want: &str) -> Result<&'static Magic> {
    Ok(EntryReader::expect(src, want)?.magic())
}

/// Calls `f` with every entry of an image, decoded as `T` (payloads, if
/// the image has any, are skipped).
pub fn for_each<T: Message + Default>(
    path: &Path,
    magic_name: &str,
    mut f: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let file = Mapped::open(path)?;
    let mut src = file.source();
    let mut rd = EntryReader::expect(&mut src, magic_name)?;
    while let Some(e) = rd.next_entry()? {
        f(e.decode()?)?;
    }
    Ok(())
}

/// All entries of a payload-free image.
pub fn read_all<T: Message + Default>(path: &Path, magic_name: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    for_each(path, magic_name, |m| {
        v.push(m);
        Ok(())
    })?;
    Ok(v)
}

/// The single entry of an image that holds exactly one (core, mm, fs, ids).
pub fn read_one<T: Message + Default>(path: &Path, magic_name: &str) -> Result<T> {
    let mut v = read_all::<T>(path, magic_name)?;
    if v.is_empty() {
        return Err(Error::Images {
            file: path.to_path_buf(),
            why: crate::error::ImagesFault::NoEntry,
        });
    }
    Ok(v.swap_remove(0))
}

/// Builds an image in memory: header, then framed entries and payloads.
pub struct ImageBuilder {
    pub bytes: Vec<u8>,
}

impl ImageBuilder {
    pub fn new(magic_name: &str) -> Result<Self> {
        let mg = magic::by_name(magic_name.as_bytes())
            .ok_or_else(|| Error::UnknownMagic(magic_name.to_string()))?;
        let mut bytes = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = entry::write_header(&mut bytes, mg);
        Ok(ImageBuilder { bytes })
    }

    pub fn entry<T: Message>(&mut self, m: &T) -> &mut Self {
        entry::put_message(&mut self.bytes, m);
        self
    }

    /// An entry given as encoded message bytes.
    pub fn message(&mut self, bytes: &[u8]) -> &mut Self {
        // Writing to a Vec cannot fail.
        let _ = entry::write_entry(&mut self.bytes, bytes);
        self
    }

    pub fn raw(&mut self, data: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(data);
        self
    }

    /// Entries encoded earlier, in their order.
    pub fn entries(&mut self, e: &EncodedEntries) -> &mut Self {
        self.raw(&e.bytes)
    }
}

/// Entries framed and encoded as they come, for an image whose header is
/// written later: kept as messages, 18,000 file entries (some 2 KiB each,
/// as prost lays out every optional sub-message inline) would take 40 MiB
/// of fresh memory, against 2 MiB encoded.
#[derive(Default)]
pub struct EncodedEntries {
    bytes: Vec<u8>,
}

impl EncodedEntries {
    pub fn push<T: Message>(&mut self, m: &T) {
        entry::put_message(&mut self.bytes, m);
    }

    /// The framed entries, for an image written in pieces.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A file written all at once or not at all: bytes go to an unnamed file
/// (O_TMPFILE) in the target's directory, which [`AtomicFile::commit`]
/// fsyncs, links under a temporary name and renames over the target. A
/// writer killed before the commit leaves nothing behind; dropped without
/// commit, neither. On a file system without O_TMPFILE a named temporary
/// file is used instead (removed when dropped, left if killed). New files
/// get mode 0600 (images hold process memory); a replaced file keeps its
/// mode. A symlink is followed: its target is replaced, the link stays.
/// Hard links of the old file keep the old contents (the path gets a new
/// inode).
pub struct AtomicFile {
    file: std::fs::File,
    /// The named fallback, when the directory refused O_TMPFILE.
    named: Option<tempfile::TempPath>,
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
}

/// `path` with symlinks in its last component followed.
fn resolve(path: &Path) -> std::path::PathBuf {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&p) {
            Ok(t) => {
                p = match p.parent() {
                    Some(d) if t.is_relative() => d.join(t),
                    _ => t,
                }
            }
            Err(_) => return p,
        }
    }
    p
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<Self> {
        let path = resolve(path);
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let mode = std::fs::metadata(&path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap_or(0o600);
        let perms: std::fs::Permissions = std::os::unix::fs::PermissionsExt::from_mode(mode);
        let (file, named) = match unnamed_in(&dir) {
            Ok(f) => (f, None),
            Err(_) => {
                let tmp = tempfile::Builder::new()
                    .prefix(".crit-")
                    .permissions(perms.clone())
                    .tempfile_in(&dir)
                    .map_err(|e| Error::FileOp {
                        path: dir.clone(),
                        what: "create temporary file",
                        source: e,
                    })?;
                let (f, p) = tmp.into_parts();
                (f, Some(p))
            }
        };
        // The umask may have narrowed the mode given at creation.
        if mode != 0o600 || umask_narrows_0600() {
            file.set_permissions(perms)
                .map_err(|e| Error::io(path.display().to_string(), e))?;
        }
        Ok(AtomicFile {
            file,
            named,
            dir,
            path,
        })
    }

    /// As [`AtomicFile::create`] for a path its writer made sure holds
    /// nothing yet (a dump's images in a directory without images): no
    /// symlink to follow and no mode to keep, so neither is looked up;
    /// the file gets mode 0600. Should something be there after all, it
    /// is replaced like any file (a symlink too, not its target).
    pub fn create_fresh(path: &Path) -> Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        match unnamed_in(dir) {
            Ok(file) if !umask_narrows_0600() => Ok(AtomicFile {
                file,
                named: None,
                dir: dir.to_path_buf(),
                path: path.to_path_buf(),
            }),
            _ => AtomicFile::create(path),
        }
    }

    /// Writes `data` at byte `offset` of the file (for writers that fill
    /// a file out of order, from several threads).
    pub fn write_at(&self, data: &[u8], offset: u64) -> Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, data, offset)
            .map_err(|e| Error::io(self.path.display().to_string(), e))
    }

    /// Moves exactly `len` bytes from `pipe` to byte `offset` of the file
    /// (splice: the file's pages are filled from the pipe's, no copy
    /// through crit's memory).
    pub fn splice_at(&self, pipe: &impl std::os::fd::AsFd, offset: u64, len: usize) -> Result<()> {
        let mut off = offset as libc::loff_t;
        let mut left = len;
        while left > 0 {
            let n = nix::fcntl::splice(
                pipe.as_fd(),
                None,
                &self.file,
                Some(&mut off),
                left,
                nix::fcntl::SpliceFFlags::SPLICE_F_MOVE,
            )
            .map_err(|e| Error::io(self.path.display().to_string(), e.into()))?;
            if n == 0 {
                return Err(self.short("pipe", left));
            }
            left -= n;
        }
        Ok(())
    }

    /// Appends `len` bytes of `src`, from byte `src_off`, at the file's
    /// position (sendfile: copied inside the kernel, from any file
    /// system, where copy_file_range wants both files on one).
    pub fn send_from(&self, src: &std::fs::File, src_off: u64, len: u64) -> Result<()> {
        let mut off = src_off as libc::off_t;
        let mut left = len as usize;
        while left > 0 {
            let n = nix::sys::sendfile::sendfile(&self.file, src, Some(&mut off), left)
                .map_err(|e| Error::io(self.path.display().to_string(), e.into()))?;
            if n == 0 {
                return Err(self.short("source file", left));
            }
            left -= n;
        }
        Ok(())
    }

    /// `what` ended `left` bytes before a copy into this file was done.
    fn short(&self, what: &str, left: usize) -> Error {
        Error::io(
            self.path.display().to_string(),
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{what} ended {left} bytes short"),
            ),
        )
    }

    /// Copies `len` bytes of `src` from `src_off` to byte `dst_off` of
    /// the file, inside the kernel (copy_file_range: shared extents on
    /// file systems that can, one copy in the page cache elsewhere).
    pub fn copy_from(
        &self,
        src: &std::fs::File,
        src_off: u64,
        dst_off: u64,
        len: u64,
    ) -> Result<()> {
        let (mut i, mut o) = (src_off as i64, dst_off as i64);
        let mut left = len as usize;
        while left > 0 {
            let n = nix::fcntl::copy_file_range(src, Some(&mut i), &self.file, Some(&mut o), left)
                .map_err(|e| Error::io(self.path.display().to_string(), e.into()))?;
            if n == 0 {
                return Err(self.short("source", left));
            }
            left -= n;
        }
        Ok(())
    }

    /// Has the kernel start writing `len` bytes from `offset` to disk now
    /// (a hint: a writer of much data overlaps the disk with its work
    /// instead of waiting for all of it at the commit or sync).
    pub fn start_writeback(&self, offset: u64, len: u64) {
        let _ = crate::sys::fdops::start_writeback(&self.file, offset, len);
    }

    /// Makes the file durable, then puts it in place: after a crash the
    /// path holds the old contents or the new, never a part.
    pub fn commit(self) -> Result<()> {
        let name = self.path.display().to_string();
        self.file.sync_all().map_err(|e| Error::io(&name, e))?;
        let dir = self.dir.clone();
        self.publish()?;
        // The rename itself survives a crash once the directory is synced.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Puts the file in place without waiting for the disk: for writers
    /// of many files that make them durable together afterwards (one
    /// [`sync_filesystem`] instead of two flushes per file).
    pub fn publish(self) -> Result<()> {
        let name = self.path.display().to_string();
        let tmp = match self.named {
            Some(p) => p,
            // A path nothing holds takes the file at once: no rename.
            None => match self.link_as(&self.path) {
                Ok(()) => return Ok(()),
                Err(nix::errno::Errno::EEXIST) => self.link_unnamed()?,
                Err(e) => {
                    return Err(Error::FileOp {
                        path: self.path.clone(),
                        what: "link the written file",
                        source: e.into(),
                    })
                }
            },
        };
        tmp.persist(&self.path)
            .map_err(|e| Error::io(&name, e.error))?;
        Ok(())
    }

    /// Gives the unnamed file the name `to` (EEXIST if taken): by its
    /// descriptor where the kernel allows it (AT_EMPTY_PATH needs
    /// CAP_DAC_READ_SEARCH), else through /proc/self/fd.
    fn link_as(&self, to: &Path) -> nix::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.file.as_raw_fd();
        let direct = nix::unistd::linkat(
            &self.file,
            "",
            nix::fcntl::AT_FDCWD,
            to,
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        );
        match direct {
            Err(nix::errno::Errno::EPERM | nix::errno::Errno::ENOENT) => nix::unistd::linkat(
                nix::fcntl::AT_FDCWD,
                format!("/proc/self/fd/{fd}").as_str(),
                nix::fcntl::AT_FDCWD,
                to,
                nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
            ),
            r => r,
        }
    }

    /// Gives the unnamed file a temporary name next to the target.
    fn link_unnamed(&self) -> Result<tempfile::TempPath> {
        for k in 0..100u32 {
            let tmp = self.dir.join(format!(".crit-{}-{k}", std::process::id()));
            match self.link_as(&tmp) {
                Ok(()) => {
                    return tempfile::TempPath::try_from_path(&tmp)
                        .map_err(|e| Error::io(tmp.display().to_string(), e))
                }
                Err(nix::errno::Errno::EEXIST) => continue,
                Err(e) => {
                    return Err(Error::FileOp {
                        path: tmp.clone(),
                        what: "link the written file",
                        source: e.into(),
                    })
                }
            }
        }
        Err(Error::NoTempName {
            dir: self.dir.clone(),
        })
    }
}

/// Makes images directory `dir` and any missing parent, private (0700);
/// an existing directory is left as it is. A file in its place is "Not a
/// directory", not the "File exists" the kernel says.
pub fn create_images_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => std::io::Error::from_raw_os_error(libc::ENOTDIR),
            _ => e,
        })
}

/// Flushes every written file of the file system that holds `dir`
/// (syncfs), so that what [`AtomicFile::publish`] put there survives a
/// crash.
pub fn sync_filesystem(dir: &Path) -> Result<()> {
    let d = std::fs::File::open(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    nix::unistd::syncfs(&d).map_err(|e| Error::FileOp {
        path: dir.to_path_buf(),
        what: "syncfs",
        source: e.into(),
    })
}

/// Whether this process's umask takes bits off mode 0600 (then a new
/// file needs its mode set again). Read once, from /proc/self/status:
/// umask(2) cannot be read without being set, racing other threads.
fn umask_narrows_0600() -> bool {
    static NARROWS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NARROWS.get_or_init(|| {
        crate::sys::procfs::status_field(std::process::id() as i32, "Umask")
            .ok()
            .flatten()
            .and_then(|v| u32::from_str_radix(&v, 8).ok())
            .is_none_or(|m| m & 0o600 != 0)
    })
}

/// An unnamed file in `dir` (O_TMPFILE), mode 0600.
fn unnamed_in(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
}

impl Write for AtomicFile {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.file.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Writes `data` to `path` atomically (see [`AtomicFile`]).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(data)
        .map_err(|e| Error::io(path.display().to_string(), e))?;
    f.commit()
}
