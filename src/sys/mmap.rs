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
