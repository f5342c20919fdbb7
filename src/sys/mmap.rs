//! Memory mappings: read-only file maps, shared anonymous objects, and
//! crit's own heap in huge pages before a restore forks.

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
    let m = unsafe { memmap2::MmapOptions::new().map(f) }?;
    // Images are read once: without this, unmapping marks every page
    // read "accessed" (an LRU move under a shared lock, per page): that
    // was almost half of the lazy-pages daemon's exit after 1 GiB.
    let _ = m.advise(memmap2::Advice::Sequential);
    Ok(m)
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

/// Backs the busy parts of crit's heap with huge pages now
/// (`MADV_HUGEPAGE`, then `MADV_COLLAPSE`): each 2 MiB block of its
/// private anonymous read-write memory that is mostly resident (thread
/// stacks and arena tails are not, and stay as they are). Returns the
/// bytes collapsed. Best effort: a kernel without THP or `MADV_COLLAPSE`
/// (before 6.1) leaves small pages.
///
/// Why: every task a restore forks starts as a copy of crit, and fork
/// copies the page tables of crit's heap, which the task unmaps later:
/// one entry per 4 KiB page (10 MiB of plan at 512 tasks, 40 MiB at
/// 2,048), copied and torn down once per task; with huge pages one per
/// 2 MiB.
pub fn huge_heap() -> u64 {
    const HUGE: usize = 2 << 20;
    const PAGE: usize = 4096;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut done = 0;
    let mut resident = vec![0u8; HUGE / PAGE];
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let path = f.nth(3).unwrap_or("");
        if perms != "rw-p" || !(path.is_empty() || path == "[heap]") {
            continue;
        }
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(s), Ok(e)) = (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16)) else {
            continue;
        };
        let mut at = s.div_ceil(HUGE) * HUGE;
        while at + HUGE <= e {
            let block = at as *mut libc::c_void;
            // SAFETY: mincore only reads the page tables of a range of
            // this process's own mappings and writes one byte per page
            // into `resident`, which has room for exactly that.
            let ok = unsafe { libc::mincore(block, HUGE, resident.as_mut_ptr()) } == 0;
            let busy = resident.iter().filter(|&&b| b & 1 != 0).count();
            if ok && busy * 2 >= resident.len() {
                // SAFETY: advice on a block of this process's own private
                // anonymous memory; both keep its contents (the kernel
                // copies them into the huge page).
                let collapsed = unsafe {
                    libc::madvise(block, HUGE, libc::MADV_HUGEPAGE);
                    libc::madvise(block, HUGE, libc::MADV_COLLAPSE)
                };
                if collapsed == 0 {
                    done += HUGE as u64;
                }
            }
            at += HUGE;
        }
    }
    done
}

#[cfg(test)]
mod tests {
    #[test]
    fn heap_in_huge_pages_keeps_its_contents() {
        // 16 MiB of written heap: at least one whole 2 MiB block in it.
        let data: Vec<u64> = (0..(2u64 << 20))
            .map(|i| i.wrapping_mul(0x9e37_79b9))
            .collect();
        let huge = super::huge_heap();
        // Where the kernel has THP and free memory to compact from.
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|s| !s.contains("[never]"));
        let free_kib: u64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemFree:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        if thp && free_kib > 1 << 20 {
            assert!(huge >= 2 << 20, "{huge} bytes collapsed");
        }
        assert!(data
            .iter()
            .enumerate()
            .all(|(i, &v)| v == (i as u64).wrapping_mul(0x9e37_79b9)));
    }
}
