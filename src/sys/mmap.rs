//! Read-only file mappings.

use std::fs::File;

/// Maps `f` read-only.
///
/// Mapping is unsafe in general because another process may truncate or
/// change the file while it is mapped. crit maps only checkpoint images it
/// is reading; a concurrent writer would at worst give wrong bytes or
/// SIGBUS, which the same race would also cause with `read`-based I/O
/// mixed with truncation. The mapping is private and never written.
pub fn map_readonly(f: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: see above; the map is read-only and lives no longer than
    // the `Mapped` value that owns it.
    unsafe { memmap2::MmapOptions::new().map(f) }
}

/// A new shared anonymous memory object of `len` bytes (what
/// `mmap(MAP_SHARED | MAP_ANONYMOUS)` makes), as an fd. Mapping the fd
/// gives mappings the kernel shows as `/dev/zero (deleted)`, like the
/// original ones (a memfd would show as `/memfd:...`). Needs
/// CAP_SYS_ADMIN (for `/proc/self/map_files`).
pub fn anon_shared_fd(len: u64) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::OwnedFd;
    let n = usize::try_from(len).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a fresh mapping chosen by the kernel (no address hint), so
    // nothing of ours is replaced; it is only used to name the object and
    // unmapped below, never dereferenced.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            n,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if at == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    let start = at as usize;
    let path = format!("/proc/self/map_files/{:x}-{:x}", start, start + n);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path);
    // SAFETY: unmaps exactly the mapping made above, which nothing else
    // refers to; the object lives on through the fd.
    unsafe { libc::munmap(at, n) };
    Ok(OwnedFd::from(file?))
}

/// Drops `len` bytes from `offset` of a read-only file mapping from this
/// process's page tables (`MADV_DONTNEED`), so they no longer count as
/// its resident memory; the file's page cache keeps them. Best effort.
pub fn drop_resident(m: &memmap2::Mmap, offset: usize, len: usize) {
    // SAFETY: the mapping is of a file and never written, so dropping its
    // pages loses nothing: a later read faults them in again, unchanged.
    let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
}
