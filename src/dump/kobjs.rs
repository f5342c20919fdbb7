//! Kernel objects (open files, address spaces, descriptor tables, ...)
//! held by the tasks of a tree, each with a value, kept in the kernel's
//! kcmp order: whether a task's object was seen before costs O(log n)
//! kcmp calls, not one per object seen (which made the ids of a tree of
//! 2,048 tasks cost millions of calls).

use crate::sys::kcmp::{self, Kind};
use std::cmp::Ordering;

/// A failed kcmp: the other task's pid, and the error.
pub type KcmpFailure = (i32, std::io::Error);

/// One object: a task's pid and the object's index in it (a descriptor
/// number for files, 0 otherwise), and its value.
struct Obj<T> {
    pid: i32,
    idx: u64,
    val: T,
}

/// Objects of one kind, sorted by kcmp.
pub struct Sorted<T> {
    kind: Kind,
    objs: Vec<Obj<T>>,
}

impl<T: Copy> Sorted<T> {
    pub fn new(kind: Kind) -> Self {
        Sorted {
            kind,
            objs: Vec::new(),
        }
    }

    /// Where `pid`'s object `idx` is (`Ok`) or would go (`Err`).
    fn place(&self, pid: i32, idx: u64) -> Result<Result<usize, usize>, KcmpFailure> {
        let (mut lo, mut hi) = (0, self.objs.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let o = &self.objs[mid];
            match kcmp::order(pid, o.pid, self.kind, idx, o.idx).map_err(|e| (o.pid, e))? {
                Ordering::Equal => return Ok(Ok(mid)),
                Ordering::Less => hi = mid,
                Ordering::Greater => lo = mid + 1,
            }
        }
        Ok(Err(lo))
    }

    /// The value of `pid`'s object `idx` if the same object was added.
    pub fn find(&self, pid: i32, idx: u64) -> Result<Option<T>, KcmpFailure> {
        Ok(self.place(pid, idx)?.ok().map(|i| self.objs[i].val))
    }

    /// The value of the same object if one was added (and `false`), or
    /// `make()`'s, added for this one (and `true`).
    pub fn find_or_add(
        &mut self,
        pid: i32,
        idx: u64,
        make: impl FnOnce() -> T,
    ) -> Result<(T, bool), KcmpFailure> {
        match self.place(pid, idx)? {
            Ok(i) => Ok((self.objs[i].val, false)),
            Err(at) => {
                let val = make();
                self.objs.insert(at, Obj { pid, idx, val });
                Ok((val, true))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// This process's own descriptors: duplicates are found as the same
    /// object, distinct files are added, whatever the order they come in.
    #[test]
    fn duplicates_are_found_and_distinct_files_added() {
        let me = std::process::id() as i32;
        let files: Vec<std::fs::File> = (0..9).map(|_| tempfile::tempfile().unwrap()).collect();
        let dups: Vec<std::os::fd::OwnedFd> =
            files.iter().map(|f| nix::unistd::dup(f).unwrap()).collect();
        let mut s = Sorted::new(Kind::File);
        for (i, f) in files.iter().enumerate() {
            let (v, new) = s.find_or_add(me, f.as_raw_fd() as u64, || i).unwrap();
            assert_eq!((v, new), (i, true));
        }
        for (i, d) in dups.iter().enumerate().rev() {
            assert_eq!(s.find(me, d.as_raw_fd() as u64).unwrap(), Some(i));
            let (v, new) = s.find_or_add(me, d.as_raw_fd() as u64, || 99).unwrap();
            assert_eq!((v, new), (i, false));
        }
        let other = tempfile::tempfile().unwrap();
        assert_eq!(s.find(me, other.as_raw_fd() as u64).unwrap(), None);
        // A descriptor that is not open: the error names the task compared.
        let (pid, _) = s.find(me, 1 << 30).unwrap_err();
        assert_eq!(pid, me);
    }
}
