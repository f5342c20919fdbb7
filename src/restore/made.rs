//! Something a restore made on the host (a socket file it bound, a
//! mountpoint), held by an O_PATH descriptor of its directory and its
//! name: it is found wherever that directory is reached from (a bind of
//! a host directory into the tree, a mount namespace that is gone), and
//! its device and inode tell it apart from what may be at that name
//! later, which is never removed.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

pub struct Entry {
    parent: OwnedFd,
    name: OsString,
    dev: u64,
    ino: u64,
    /// Where it was made, as crit reached it then: for messages.
    pub shown: PathBuf,
}

impl Entry {
    /// What is at `at` now.
    pub fn record(at: &Path) -> std::io::Result<Entry> {
        use std::os::unix::fs::MetadataExt;
        let (Some(dir), Some(name)) = (at.parent(), at.file_name()) else {
            return Err(std::io::Error::other("no parent directory"));
        };
        let m = std::fs::symlink_metadata(at)?;
        let parent = nix::fcntl::open(
            dir,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        Ok(Entry {
            parent,
            name: name.to_os_string(),
            dev: m.dev(),
            ino: m.ino(),
            shown: at.to_path_buf(),
        })
    }

    /// One recorded elsewhere (by the janitor's crit).
    pub fn from_parts(parent: OwnedFd, name: OsString, dev: u64, ino: u64) -> Entry {
        Entry {
            shown: PathBuf::from(&name),
            parent,
            name,
            dev,
            ino,
        }
    }

    pub fn parent(&self) -> BorrowedFd<'_> {
        self.parent.as_fd()
    }

    pub fn name(&self) -> &OsStr {
        &self.name
    }

    pub fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// Removes it if it is still the one recorded (a directory only when
    /// empty). Whether it did.
    pub fn remove(&self) -> bool {
        self.remove_as().is_ok()
    }

    /// [`Entry::remove`], with why not: ENOENT when nothing is there,
    /// ESTALE when something else is (or, for a mountpoint, what is
    /// mounted on it in the mount namespace its directory was reached
    /// from, while that lives), EBUSY for a mountpoint in use.
    pub fn remove_as(&self) -> nix::Result<()> {
        use nix::sys::stat::{fstatat, SFlag};
        let name = self.name.as_os_str();
        let st = fstatat(&self.parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if st.st_dev != self.dev || st.st_ino != self.ino {
            return Err(nix::errno::Errno::ESTALE);
        }
        let dir = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR;
        let how = if dir {
            nix::unistd::UnlinkatFlags::RemoveDir
        } else {
            nix::unistd::UnlinkatFlags::NoRemoveDir
        };
        nix::unistd::unlinkat(&self.parent, name, how)
    }
}

#[cfg(test)]
mod tests {
    use super::Entry;

    #[test]
    fn an_entry_is_removed_only_while_it_is_the_one_recorded() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.sock");
        let ours = std::os::unix::net::UnixListener::bind(&p).unwrap();
        let b = Entry::record(&p).unwrap();
        // Another process takes the path meanwhile.
        std::fs::remove_file(&p).unwrap();
        let theirs = std::os::unix::net::UnixListener::bind(&p).unwrap();
        assert!(!b.remove());
        assert!(p.exists());
        drop(theirs);
        std::fs::remove_file(&p).unwrap();
        let _again = std::os::unix::net::UnixListener::bind(&p).unwrap();
        let b = Entry::record(&p).unwrap();
        assert!(b.remove());
        assert!(!p.exists());
        drop(ours);
        // Found through its directory wherever that is now.
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let m = Entry::record(&sub).unwrap();
        let moved = tempfile::tempdir().unwrap();
        std::fs::rename(d.path(), moved.path().join("d")).unwrap();
        assert!(m.remove());
        assert!(!moved.path().join("d/sub").exists());
    }
}
