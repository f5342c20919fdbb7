//! The images directory of a dump: created if missing, refused if it
//! already holds images; every image goes through src/image (ImageBuilder,
//! AtomicFile: temp file, fsync, rename, mode 0600). On failure the images
//! written so far are removed, so a failed dump leaves no half set behind.
//! While a dump writes, it holds the directory's lock (flock): a second
//! dump into it is refused, and a restore of it (which takes the same
//! lock) waits.

use super::error::DumpError;
use crate::error::Result;
use crate::image::typed::{AtomicFile, ImageBuilder};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct ImgDir {
    pub dir: PathBuf,
    written: Vec<PathBuf>,
    pub bytes: u64,
    keep: bool,
    /// The dump made the directory: a failed dump removes it.
    created: bool,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl ImgDir {
    /// Opens the images directory: a new one is made private (0700); an
    /// existing one must not be writable by group or others, who could
    /// otherwise change the images before a restore as root.
    pub fn open(dir: &Path) -> Result<ImgDir> {
        use std::os::unix::fs::PermissionsExt;
        let created = !dir.exists();
        crate::image::typed::create_images_dir(dir).map_err(|source| DumpError::FileOp {
            path: dir.to_path_buf(),
            what: "create images directory",
            source,
        })?;
        let meta = std::fs::metadata(dir).map_err(|source| DumpError::File {
            path: dir.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(DumpError::DirNotPrivate {
                dir: dir.to_path_buf(),
                mode,
            }
            .into());
        }
        let lock = lock(dir)?;
        // Rounds left by a pre-copy dump killed with its worker (nobody
        // was left to remove them; one still running holds the lock).
        let _ = std::fs::remove_dir_all(dir.join(super::precopy::ROUNDS));
        let rd = std::fs::read_dir(dir).map_err(|source| DumpError::File {
            path: dir.to_path_buf(),
            source,
        })?;
        for e in rd.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.ends_with(".img") || n == "stats-dump" {
                return Err(DumpError::DirNotEmpty {
                    dir: dir.to_path_buf(),
                    found: n.into_owned(),
                }
                .into());
            }
        }
        Ok(ImgDir {
            dir: dir.to_path_buf(),
            written: Vec::new(),
            bytes: 0,
            keep: false,
            created,
            _lock: lock,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes a whole image.
    pub fn write(&mut self, name: &str, img: &ImageBuilder) -> Result<()> {
        self.write_raw(name, &img.bytes)
    }

    /// Writes a file of the set as it is (a tmpfs tar, which has no
    /// magic). It reaches the disk with [`ImgDir::sync`].
    pub fn write_raw(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let f = self.fill(name, bytes)?;
        f.publish()?;
        self.bytes += bytes.len() as u64;
        self.written.push(self.path(name));
        Ok(())
    }

    /// Writes the image that completes the set (inventory.img), after
    /// [`ImgDir::sync`]: durable at once, so a set that has it is whole
    /// even after a crash.
    pub fn write_last(&mut self, name: &str, img: &ImageBuilder) -> Result<()> {
        let f = self.fill(name, &img.bytes)?;
        f.commit()?;
        self.bytes += img.bytes.len() as u64;
        self.written.push(self.path(name));
        Ok(())
    }

    fn fill(&self, name: &str, bytes: &[u8]) -> Result<AtomicFile> {
        super::guard::check()?;
        let p = self.path(name);
        let mut f = AtomicFile::create_fresh(&p)?;
        if let Err(source) = f.write_all(bytes) {
            return Err(DumpError::File { path: p, source }.into());
        }
        Ok(f)
    }

    /// Makes symlink `name` to `target` (the `parent` link of a dump on
    /// top of another), removed with the images if the dump fails.
    pub fn symlink(&mut self, name: &str, target: &Path) -> Result<()> {
        let p = self.path(name);
        std::os::unix::fs::symlink(target, &p).map_err(|source| DumpError::FileOp {
            path: p.clone(),
            what: "link to the previous images",
            source,
        })?;
        self.written.push(p);
        Ok(())
    }

    /// Counts file `name`, which another step writes (or may write), as
    /// one of the set's: removed with the images if the dump fails.
    pub fn adopt(&mut self, name: &str) {
        self.written.push(self.path(name));
    }

    pub fn finish(&mut self, s: Stream) -> Result<()> {
        s.file.publish()?;
        self.bytes += s.bytes;
        self.written.push(s.path);
        Ok(())
    }

    /// Makes every image written so far durable, with their names: one
    /// flush of the file system rather than two per image (thousands of
    /// journal commits for a large tree on a disk).
    pub fn sync(&self) -> Result<()> {
        crate::image::typed::sync_filesystem(&self.dir)
    }

    /// The dump succeeded: keep the images.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

/// The lock of images directory `dir`, or the refusal if another crit
/// command holds it.
fn lock(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    let f = std::fs::File::open(dir).map_err(|source| DumpError::FileOp {
        path: dir.to_path_buf(),
        what: "open images directory",
        source,
    })?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| match e {
        nix::errno::Errno::EWOULDBLOCK => DumpError::DirBusy {
            dir: dir.to_path_buf(),
        }
        .into(),
        e => DumpError::FileOp {
            path: dir.to_path_buf(),
            what: "lock images directory",
            source: e.into(),
        }
        .into(),
    })
}

impl Drop for ImgDir {
    fn drop(&mut self) {
        if !self.keep {
            for p in &self.written {
                let _ = std::fs::remove_file(p);
            }
            if self.created {
                let _ = std::fs::remove_dir(&self.dir);
            }
        }
    }
}

pub struct Stream {
    file: AtomicFile,
    path: PathBuf,
    pub bytes: u64,
}

impl Stream {
    /// Writes at a byte offset (several threads may fill one file); the
    /// caller accounts the bytes with [`Stream::add_bytes`].
    pub fn write_at(&self, b: &[u8], offset: u64) -> Result<()> {
        super::guard::check()?;
        self.file.write_at(b, offset)?;
        // Pages are most of a dump's bytes: on a disk, writing them out
        // meanwhile leaves less for the sync at the end.
        self.file.start_writeback(offset, b.len() as u64);
        Ok(())
    }

    /// Moves `len` bytes from `pipe` to byte `offset` of the file.
    pub fn splice_at(&self, pipe: &impl std::os::fd::AsFd, offset: u64, len: usize) -> Result<()> {
        super::guard::check()?;
        self.file.splice_at(pipe, offset, len)?;
        self.file.start_writeback(offset, len as u64);
        Ok(())
    }

    /// Appends `len` bytes of `src` from byte `src_off` (see
    /// [`crate::image::typed::AtomicFile::send_from`]).
    pub fn send_from(&mut self, src: &std::fs::File, src_off: u64, len: u64) -> Result<()> {
        super::guard::check()?;
        self.file.send_from(src, src_off, len)?;
        self.bytes += len;
        Ok(())
    }

    pub fn add_bytes(&mut self, n: u64) {
        self.bytes += n;
    }

    /// Starts an image written in pieces (pages), committed by
    /// [`ImgDir::finish`]; dropped unfinished, it leaves nothing.
    pub fn create(p: &Path) -> Result<Stream> {
        Ok(Stream {
            file: AtomicFile::create_fresh(p)?,
            path: p.to_path_buf(),
            bytes: 0,
        })
    }

    pub fn write(&mut self, b: &[u8]) -> Result<()> {
        super::guard::check()?;
        self.file.write_all(b).map_err(|source| DumpError::File {
            path: self.path.clone(),
            source,
        })?;
        self.bytes += b.len() as u64;
        Ok(())
    }
}
