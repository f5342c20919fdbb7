//! Bit values that images carry in integer fields, shared by the engines,
//! `x` and `edit` (CRIU's criu/include/image.h and friends).

/// `vma_entry.status`: what kind of area a mapping is.
pub const VMA_AREA_REGULAR: u32 = 1 << 0;
pub const VMA_AREA_STACK: u32 = 1 << 1;
pub const VMA_AREA_VSYSCALL: u32 = 1 << 2;
pub const VMA_AREA_VDSO: u32 = 1 << 3;
pub const VMA_AREA_HEAP: u32 = 1 << 5;
pub const VMA_FILE_PRIVATE: u32 = 1 << 6;
pub const VMA_FILE_SHARED: u32 = 1 << 7;
pub const VMA_ANON_SHARED: u32 = 1 << 8;
pub const VMA_ANON_PRIVATE: u32 = 1 << 9;
pub const VMA_AREA_SYSVIPC: u32 = 1 << 10;
pub const VMA_AREA_SOCKET: u32 = 1 << 11;
pub const VMA_AREA_VVAR: u32 = 1 << 12;
pub const VMA_AREA_AIORING: u32 = 1 << 13;
pub const VMA_AREA_MEMFD: u32 = 1 << 14;
pub const VMA_AREA_SHSTK: u32 = 1 << 15;
/// Not a mapping: a range of one that `MADV_GUARD_INSTALL` guards. CRIU
/// 4.2 writes these after every real VMA, with only start, end and this
/// status.
pub const VMA_AREA_GUARD: u32 = 1 << 16;
pub const VMA_AREA_UPROBES: u32 = 1 << 17;
pub const VMA_UNSUPP: u32 = 1 << 31;

/// `pagemap_entry.flags`.
pub const PE_PARENT: u32 = 1 << 0;
pub const PE_LAZY: u32 = 1 << 1;
pub const PE_PRESENT: u32 = 1 << 2;

/// `unix_sk_entry.uflags`: the entry stands for a socket outside the dump.
pub const USK_EXTERN: u32 = 1 << 0;

/// `task_core_entry.task_state`. CRIU writes a zombie as TASK_DEAD.
pub const TASK_ALIVE: u32 = 1;
pub const TASK_DEAD: u32 = 2;
pub const TASK_STOPPED: u32 = 3;
