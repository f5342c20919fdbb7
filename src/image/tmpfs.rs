//! tmpfs-dev-N.tar.gz.img: the contents of a tmpfs as a gzipped tar, as
//! CRIU stores them (it runs GNU tar; crit writes and reads the format
//! with the `tar` and `flate2` crates). Entries are relative to the
//! tmpfs root, ownership and modes numeric; the walk stays on the one
//! file system (what is mounted below it is not its contents) and skips
//! sockets, as GNU tar does.

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The tar.gz of everything under `dir` that is on `dir`'s file system.
pub fn archive(dir: &str) -> io::Result<Vec<u8>> {
    let root = Path::new(dir);
    // Followed: `dir` may be a /proc/self/fd/N link to a detached mount.
    let dev = std::fs::metadata(root)?.dev();
    let gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    b.mode(tar::HeaderMode::Complete);
    b.follow_symlinks(false);
    add_dir(&mut b, root, Path::new(""), dev)?;
    b.into_inner()?.finish()
}

fn add_dir(
    b: &mut tar::Builder<GzEncoder<Vec<u8>>>,
    root: &Path,
    rel: &Path,
    dev: u64,
) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for n in names {
        let r = rel.join(&n);
        let full = root.join(&r);
        let meta = std::fs::symlink_metadata(&full)?;
        let ft = meta.file_type();
        if ft.is_socket() {
            continue;
        }
        if meta.dev() != dev {
            // A mountpoint: the directory itself, none of what is on it.
            if ft.is_dir() {
                dir_entry(b, &r, &meta)?;
            }
            continue;
        }
        if ft.is_dir() {
            dir_entry(b, &r, &meta)?;
            add_dir(b, root, &r, dev)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            // Header only: the metadata says which device.
            dir_entry(b, &r, &meta)?;
        } else {
            b.append_path_with_name(&full, &r)?;
        }
    }
    Ok(())
}

/// An entry without contents (a directory, device node or FIFO) with
/// `meta`'s type, owner, mode and time.
fn dir_entry(
    b: &mut tar::Builder<GzEncoder<Vec<u8>>>,
    rel: &Path,
    meta: &std::fs::Metadata,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
    h.set_size(0);
    let ft = meta.file_type();
    if ft.is_char_device() || ft.is_block_device() {
        let rdev = meta.rdev();
        h.set_device_major(libc::major(rdev))?;
        h.set_device_minor(libc::minor(rdev))?;
    }
    b.append_data(&mut h, rel, io::empty())
}

/// Unpacks `data` (a tmpfs image) into `dir`, keeping owners, modes and
/// times.
pub fn extract(data: &[u8], dir: &Path) -> io::Result<()> {
    let mut a = tar::Archive::new(GzDecoder::new(data));
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(true);
    a.set_preserve_mtime(true);
    a.set_unpack_xattrs(false);
    a.set_overwrite(true);
    // Directory times after their contents, as tar does it.
    let mut dirs: Vec<(PathBuf, tar::Header)> = Vec::new();
    for e in a.entries()? {
        let mut e = e?;
        if e.header().entry_type().is_dir() {
            dirs.push((e.path()?.into_owned(), e.header().clone()));
        }
        if !unpack_special(&e, dir)? {
            e.unpack_in(dir)?;
        }
    }
    for (p, h) in dirs.into_iter().rev() {
        // A later entry may have put a symlink where a directory was.
        let Ok(at) = inside(dir, &p) else { continue };
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        if let Ok(t) = h.mtime() {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
            if let Ok(f) = std::fs::File::open(&at) {
                let _ = f.set_modified(t);
            }
        }
    }
    Ok(())
}

/// `dir`/`rel` for an entry written by hand (the tar crate checks its
/// own): refused when `rel` climbs out (`..`, an absolute path) or when
/// a directory on the way is a symlink, which an earlier entry of the
/// archive may have made to lead out of the tmpfs.
fn inside(dir: &Path, rel: &Path) -> io::Result<PathBuf> {
    let out = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("tmpfs archive: entry {} {why}", rel.display()),
        )
    };
    let mut at = dir.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(c) = parts.next() {
        match c {
            std::path::Component::Normal(n) => at.push(n),
            std::path::Component::CurDir => continue,
            _ => return Err(out("leaves the tmpfs")),
        }
        let last = parts.peek().is_none();
        if !last && std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(out("lies behind a symlink of the archive"));
        }
    }
    Ok(at)
}

/// Makes a device node or FIFO entry (the tar crate would write a
/// regular file); false for any other entry.
fn unpack_special<R: io::Read>(e: &tar::Entry<R>, dir: &Path) -> io::Result<bool> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let h = e.header();
    let kind = match h.entry_type() {
        tar::EntryType::Char => SFlag::S_IFCHR,
        tar::EntryType::Block => SFlag::S_IFBLK,
        tar::EntryType::Fifo => SFlag::S_IFIFO,
        _ => return Ok(false),
    };
    let rel = e.path()?;
    let path = inside(dir, &rel)?;
    let major = u64::from(h.device_major()?.unwrap_or(0));
    let minor = u64::from(h.device_minor()?.unwrap_or(0));
    let mode = h.mode()? & 0o7777;
    let _ = std::fs::remove_file(&path);
    let sys = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |e: nix::Error| io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}"))
    };
    mknod(
        &path,
        kind,
        Mode::from_bits_truncate(mode),
        nix::sys::stat::makedev(major, minor),
    )
    .map_err(sys("mknod"))?;
    let (uid, gid) = (h.uid()? as u32, h.gid()? as u32);
    nix::unistd::chown(&path, Some(uid.into()), Some(gid.into())).map_err(sys("chown"))?;
    // After chown (which clears set-id bits) and the umask.
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &path,
        Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(sys("chmod"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_tree_goes_through_and_back() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("d")).unwrap();
        std::fs::write(src.path().join("d/f"), b"held").unwrap();
        std::fs::write(src.path().join("top"), vec![7u8; 100_000]).unwrap();
        std::fs::set_permissions(
            src.path().join("top"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("d/f", src.path().join("link")).unwrap();
        let tar = archive(src.path().to_str().unwrap()).unwrap();
        let dst = tempfile::tempdir().unwrap();
        extract(&tar, dst.path()).unwrap();
        assert_eq!(std::fs::read(dst.path().join("d/f")).unwrap(), b"held");
        assert_eq!(
            std::fs::read(dst.path().join("top")).unwrap(),
            vec![7u8; 100_000]
        );
        let mode = std::fs::metadata(dst.path().join("top")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(
            std::fs::read_link(dst.path().join("link")).unwrap(),
            Path::new("d/f")
        );
    }

    /// A container's /dev tmpfs holds device nodes (root: CI runs so).
    #[test]
    fn device_nodes_and_fifos_come_back_as_such() {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let src = tempfile::tempdir().unwrap();
        let null = src.path().join("null");
        if mknod(
            &null,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(1, 3),
        )
        .is_err()
        {
            eprintln!("skipped: mknod needs CAP_MKNOD");
            return;
        }
        std::fs::set_permissions(&null, std::fs::Permissions::from_mode(0o666)).unwrap();
        nix::unistd::mkfifo(&src.path().join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
        let tar = archive(src.path().to_str().unwrap()).unwrap();
        let dst = tempfile::tempdir().unwrap();
        extract(&tar, dst.path()).unwrap();
        let m = std::fs::symlink_metadata(dst.path().join("null")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), makedev(1, 3));
        assert_eq!(m.mode() & 0o777, 0o666);
        let f = std::fs::symlink_metadata(dst.path().join("fifo")).unwrap();
        assert!(f.file_type().is_fifo());
        assert_eq!(f.mode() & 0o777, 0o640);
    }

    /// A hostile archive: a symlink leading out of the tmpfs, then a
    /// FIFO "behind" it. Nothing outside is touched; the FIFO is refused.
    #[test]
    fn an_entry_behind_a_symlink_of_the_archive_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), b"keep").unwrap();
        let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let header = |kind, mode| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(0);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h
        };
        let mut h = header(tar::EntryType::Symlink, 0o777);
        b.append_link(&mut h, "esc", outside.path()).unwrap();
        let mut h = header(tar::EntryType::Fifo, 0o644);
        b.append_data(&mut h, "esc/victim", io::empty()).unwrap();
        let data = b.into_inner().unwrap().finish().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let e = extract(&data, dst.path()).unwrap_err();
        assert!(e.to_string().contains("esc/victim"), "{e}");
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(
            std::fs::read(outside.path().join("victim")).unwrap(),
            b"keep"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dst = tempfile::tempdir().unwrap();
        assert!(extract(b"not a gzip", dst.path()).is_err());
    }
}
