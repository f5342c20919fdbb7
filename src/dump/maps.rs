//! The address space of a task: /proc/PID/smaps parsed into VMAs with
//! CRIU's status bits, as CRIU 4.2 classifies them (criu/proc_parse.c).

use super::error::DumpError;
use super::procfs;
use crate::error::Result;
pub use crate::image::flags::{
    VMA_ANON_PRIVATE, VMA_ANON_SHARED, VMA_AREA_AIORING, VMA_AREA_HEAP, VMA_AREA_MEMFD,
    VMA_AREA_REGULAR, VMA_AREA_SHSTK, VMA_AREA_SYSVIPC, VMA_AREA_UPROBES, VMA_AREA_VDSO,
    VMA_AREA_VSYSCALL, VMA_AREA_VVAR, VMA_FILE_PRIVATE, VMA_FILE_SHARED,
};
use std::os::unix::fs::MetadataExt;

pub const PROT_READ: u32 = 1;
pub const PROT_WRITE: u32 = 2;
pub const PROT_EXEC: u32 = 4;
pub const MAP_SHARED: u32 = 0x01;
pub const MAP_PRIVATE: u32 = 0x02;
pub const MAP_ANONYMOUS: u32 = 0x20;
pub const MAP_GROWSDOWN: u32 = 0x0100;
pub const MAP_LOCKED: u32 = 0x2000;
pub const MAP_NORESERVE: u32 = 0x4000;
pub const MAP_HUGETLB: u32 = 0x40000;

pub const PAGE_SIZE: u64 = 4096;
pub use crate::sys::TASK_SIZE;

/// What backs a file mapping, for the files image.
#[derive(Debug, Clone)]
pub struct MapFile {
    /// Path as the kernel shows it, without " (deleted)".
    pub path: String,
    pub deleted: bool,
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    /// Where to open the mapped file from /proc (map_files link).
    pub proc_link: String,
}

#[derive(Debug, Clone)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    pub prot: u32,
    pub flags: u32,
    pub status: u32,
    pub madv: u64,
    pub fdflags: Option<u32>,
    /// The file id (regular or memfd) or the shmem inode, filled later.
    pub shmid: u64,
    pub file: Option<MapFile>,
    /// Name shown in maps ("[heap]", a path, or empty).
    pub name: String,
}

impl Vma {
    pub fn is(&self, bits: u32) -> bool {
        self.status & bits == bits
    }
    /// Private memory whose pages go to pages images (CRIU's vma_entry_is_private).
    pub fn is_private(&self) -> bool {
        (self.is(VMA_AREA_REGULAR)
            && (self.is(VMA_ANON_PRIVATE) || self.is(VMA_FILE_PRIVATE))
            && self.end <= TASK_SIZE)
            || self.is(VMA_AREA_SHSTK)
            || self.is(VMA_AREA_AIORING)
    }
    /// CRIU's vma_entry_can_be_lazy: marks PE_LAZY on its pagemap entries.
    pub fn can_be_lazy(&self) -> bool {
        self.flags & MAP_ANONYMOUS != 0
            && self.flags & MAP_PRIVATE != 0
            && self.flags & MAP_LOCKED == 0
            && !self.is(VMA_AREA_VDSO)
            && !self.is(VMA_AREA_VVAR)
            && !self.is(VMA_AREA_VSYSCALL)
            && self.flags & MAP_HUGETLB == 0
    }
}

/// What smaps' VmFlags tell beyond MAP_ and MADV_ bits.
#[derive(Default)]
struct Seen {
    io_pf: bool,
    shstk: bool,
    /// Registered with a userfaultfd for missing or minor faults: its
    /// pages may not all be in the task (another process serves them).
    uffd_fill: bool,
}

fn vm_flags(v: &mut Vma, words: &str) -> Seen {
    let mut seen = Seen::default();
    for t in words.split_whitespace() {
        match t {
            "gd" => v.flags |= MAP_GROWSDOWN,
            "lo" => v.flags |= MAP_LOCKED,
            "nr" => v.flags |= MAP_NORESERVE,
            "ht" => v.flags |= MAP_HUGETLB,
            "sr" => v.madv |= 1 << 2,
            "rr" => v.madv |= 1 << 1,
            "dc" => v.madv |= 1 << 10,
            "dd" => v.madv |= 1 << 16,
            "mg" => v.madv |= 1 << 12,
            "hg" => v.madv |= 1 << 14,
            "nh" => v.madv |= 1 << 15,
            "wf" => v.madv |= 1 << 18,
            "io" | "pf" => seen.io_pf = true,
            "ss" => seen.shstk = true,
            "um" | "ui" => seen.uffd_fill = true,
            _ => {}
        }
    }
    seen
}

/// Reads and classifies the VMAs of `pid`. `shmem_dev` is the device of
/// anonymous shared memory (see [`shmem_dev`]).
pub fn read(pid: i32, shmem_dev: u64) -> Result<Vec<Vma>> {
    read_from(pid, "smaps", shmem_dev)
}

/// The same VMAs from /proc/PID/maps, without what only smaps' VmFlags
/// tell (madvise bits, MAP_LOCKED, MAP_HUGETLB, MAP_GROWSDOWN, shadow
/// stacks, VM_IO): enough to find and track pages, not to write `mm`
/// images. maps walks no page tables; smaps does, for its counters
/// (about 18 ms per GiB present here).
pub fn read_quick(pid: i32, shmem_dev: u64) -> Result<Vec<Vma>> {
    read_from(pid, "maps", shmem_dev)
}

fn read_from(pid: i32, file: &str, shmem_dev: u64) -> Result<Vec<Vma>> {
    use std::io::BufRead;
    // Read line by line through one buffer: a big task's smaps is tens of
    // MiB (some 1 KiB per VMA), which read whole costs fresh pages and
    // copies as it grows.
    let path = procfs::path(pid, file);
    let f = std::fs::File::open(&path).map_err(|source| DumpError::Proc {
        pid,
        path: path.clone(),
        source,
    })?;
    let mut reader = std::io::BufReader::with_capacity(128 << 10, f);
    let mut raw = Vec::with_capacity(256);
    let mut out: Vec<Vma> = Vec::new();
    let mut cur: Option<Vma> = None;
    let push = |v: Vma, out: &mut Vec<Vma>| -> Result<()> {
        if v.is(VMA_AREA_VVAR) {
            if let Some(p) = out.last_mut() {
                if p.is(VMA_AREA_VVAR) && p.end == v.start {
                    p.end = v.end;
                    return Ok(());
                }
            }
        }
        if v.is(VMA_AREA_UPROBES) {
            return Ok(());
        }
        // maps (pre-dump rounds) has no VmFlags: anonymous hugetlb memory
        // is known by its name there.
        if v.name.starts_with("/anon_hugepage") {
            return Err(DumpError::MappingKind {
                pid,
                start: v.start,
                end: v.end,
                name: v.name.clone(),
                what: "hugetlb memory",
            }
            .into());
        }
        // Kernels before 4.12 hid a stack's guard page from maps and CRIU
        // added it back; since then maps shows the VMA as it is (CRIU's
        // probe finds the gap not hidden), so it is recorded as shown.
        out.push(v);
        Ok(())
    };
    let mut last_file: Option<FileSeen> = None;
    loop {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .map_err(|source| DumpError::Proc {
                pid,
                path: path.clone(),
                source,
            })?;
        if n == 0 {
            break;
        }
        // smaps gives some 25 counter lines ("Rss:", "Pss:"...) per VMA,
        // each starting with a capital; a range starts with a lowercase
        // hex address. Skipping counters before any text work saves about
        // 4 ms of CPU per 1,000 VMAs here.
        if raw[0].is_ascii_uppercase() && !raw.starts_with(b"VmFlags:") {
            continue;
        }
        let text = String::from_utf8_lossy(&raw);
        let line = text.strip_suffix('\n').unwrap_or(&text);
        if let Some(rest) = line.strip_prefix("VmFlags:") {
            let v = cur.as_mut().ok_or(DumpError::SmapsOrder { pid })?;
            let seen = vm_flags(v, rest);
            if seen.shstk {
                v.status |= VMA_AREA_SHSTK;
            }
            let refused = if seen.io_pf && !v.is(VMA_AREA_VVAR) && !v.is(VMA_FILE_SHARED) {
                Some("an I/O or PFN mapping")
            } else if v.flags & MAP_HUGETLB != 0 {
                Some("hugetlb memory")
            } else if seen.uffd_fill {
                Some("registered with a userfaultfd for missing or minor faults (another process may hold pages of it)")
            } else {
                None
            };
            if let Some(what) = refused {
                return Err(DumpError::MappingKind {
                    pid,
                    start: v.start,
                    end: v.end,
                    name: v.name.clone(),
                    what,
                }
                .into());
            }
            continue;
        }
        let Some(v) = parse_range(pid, line, shmem_dev, &mut last_file)? else {
            continue;
        };
        if let Some(p) = cur.take() {
            push(p, &mut out)?;
        }
        cur = Some(v);
    }
    if let Some(p) = cur.take() {
        push(p, &mut out)?;
    }
    // A proxy an earlier restore left takes the vDSO's place.
    if let Some(mark) = super::vdso::find_mark(pid, &out) {
        super::vdso::apply(&mut out, &mark);
    }
    Ok(out)
}

/// What the map_files link of a file mapping told, kept for the next
/// mapping of the same file (as CRIU reuses the previous VMA's file): a
/// library's 4 or 5 mappings cost two stats, not ten.
struct FileSeen {
    /// maps' "maj:min" and inode, and the name.
    key: (String, u64, String),
    fdflags: u32,
    st: std::fs::Metadata,
}

/// The VMA a range line of smaps describes (None for any other line).
fn parse_range(
    pid: i32,
    line: &str,
    shmem_dev: u64,
    last_file: &mut Option<FileSeen>,
) -> Result<Option<Vma>> {
    let Some((mut v, devs, ino)) = range_fields(pid, line)? else {
        return Ok(None);
    };
    // Only a mapping named by a path has a file behind it: anonymous
    // memory (most VMAs of a big task) needs no map_files lookup.
    if v.name.starts_with('/') {
        let link = format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end);
        let key = (devs.to_string(), ino, v.name.clone());
        if let Some(seen) = last_file.as_ref().filter(|f| f.key == key) {
            v.fdflags = Some(seen.fdflags);
            file_mapping(pid, &mut v, link, &seen.st, shmem_dev)?;
            return Ok(Some(v));
        }
        if let Ok(lm) = std::fs::symlink_metadata(&link) {
            let fdflags = match lm.mode() & 0o600 {
                0o200 => 1,
                0o600 => 2,
                _ => 0,
            };
            let st = std::fs::metadata(&link).map_err(|source| DumpError::Proc {
                pid,
                path: link.clone().into(),
                source,
            })?;
            v.fdflags = Some(fdflags);
            file_mapping(pid, &mut v, link, &st, shmem_dev)?;
            *last_file = Some(FileSeen { key, fdflags, st });
            return Ok(Some(v));
        }
    }
    special_or_anon(pid, &mut v, ino)?;
    Ok(Some(v))
}

/// The fields of a range line, "start-end perms offset maj:min inode
/// path", as a VMA without status, and the inode. None when the line is
/// not a range. Also the device field as written ("maj:min").
fn range_fields(pid: i32, line: &str) -> Result<Option<(Vma, &str, u64)>> {
    let mut it = line.splitn(6, ' ');
    let range = it.next().unwrap_or("");
    let Some((s, e)) = range.split_once('-') else {
        return Ok(None);
    };
    let (Ok(start), Ok(end)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
        return Ok(None);
    };
    let bad = || DumpError::SmapsLine {
        pid,
        line: line.to_string(),
    };
    let perms = it.next().ok_or_else(bad)?.as_bytes();
    if perms.len() < 4 {
        return Err(bad().into());
    }
    let pgoff = u64::from_str_radix(it.next().ok_or_else(bad)?, 16).map_err(|_| bad())?;
    let devs = it.next().ok_or_else(bad)?;
    let ino: u64 = it.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let name = it.next().unwrap_or("").trim_start().to_string();
    let mut prot = 0;
    if perms[0] == b'r' {
        prot |= PROT_READ;
    }
    if perms[1] == b'w' {
        prot |= PROT_WRITE;
    }
    if perms[2] == b'x' {
        prot |= PROT_EXEC;
    }
    let flags = match perms[3] {
        b's' => MAP_SHARED,
        b'p' => MAP_PRIVATE,
        _ => return Err(bad().into()),
    };
    let v = Vma {
        start,
        end,
        pgoff,
        prot,
        flags,
        status: 0,
        madv: 0,
        fdflags: None,
        shmid: 0,
        file: None,
        name,
    };
    Ok(Some((v, devs, ino)))
}

/// A mapping of the file behind map_files `link`: a regular file (or
/// /dev/zero), private or shared, maybe memfd or shmem.
/// `st` is the file's.
fn file_mapping(
    pid: i32,
    v: &mut Vma,
    link: String,
    st: &std::fs::Metadata,
    shmem_dev: u64,
) -> Result<()> {
    let (start, end, name) = (v.start, v.end, &v.name);
    let (path, deleted) = match name.strip_suffix(" (deleted)") {
        Some(p) => (p.to_string(), true),
        None => (name.clone(), false),
    };
    let ftype = st.mode() & 0o170000;
    let is_reg = ftype == 0o100000;
    let is_devzero = ftype == 0o020000 && st.rdev() == nix::sys::stat::makedev(1, 5);
    if !is_reg && !is_devzero {
        return Err(DumpError::MappingNotRegular {
            pid,
            start,
            end,
            name: name.clone(),
        }
        .into());
    }
    v.status = VMA_AREA_REGULAR;
    if st.dev() == shmem_dev && path.starts_with("/SYSV") {
        // As CRIU: attached again by its id (the inode) at restore; the
        // contents belong to the ipc namespace, dumped with it when the
        // tree owns it.
        if v.flags & MAP_SHARED == 0 || v.pgoff != 0 {
            return Err(DumpError::SysvShm { pid, start, end }.into());
        }
        v.status = VMA_AREA_REGULAR | VMA_ANON_SHARED | VMA_AREA_SYSVIPC;
        v.flags |= MAP_ANONYMOUS;
        v.shmid = st.ino();
        return Ok(());
    }
    let is_memfd = path.starts_with("/memfd:");
    if is_memfd || st.dev() == shmem_dev {
        v.status |= VMA_AREA_MEMFD;
    }
    v.status |= if v.flags & MAP_PRIVATE != 0 {
        VMA_FILE_PRIVATE
    } else {
        VMA_FILE_SHARED
    };
    v.file = Some(MapFile {
        path,
        deleted,
        dev: st.dev(),
        ino: st.ino(),
        mode: st.mode(),
        size: st.size(),
        uid: st.uid(),
        gid: st.gid(),
        proc_link: link,
    });
    Ok(())
}

/// A mapping with no file behind it: a kernel-named area ([vdso],
/// [heap], ...) or anonymous memory, shared (`ino` is its shmem inode)
/// or private.
fn special_or_anon(pid: i32, v: &mut Vma, ino: u64) -> Result<()> {
    let (start, end, prot) = (v.start, v.end, v.prot);
    match v.name.as_str() {
        "[vsyscall]" | "[vectors]" => v.status |= VMA_AREA_VSYSCALL,
        "[vdso]" => {
            v.status |= VMA_AREA_REGULAR;
            if prot & (PROT_READ | PROT_EXEC) == PROT_READ | PROT_EXEC {
                v.status |= VMA_AREA_VDSO;
            }
        }
        "[vvar]" | "[vvar_vclock]" => {
            v.status |= VMA_AREA_REGULAR;
            if prot & PROT_READ == PROT_READ {
                v.status |= VMA_AREA_VVAR;
            }
        }
        "[heap]" => v.status |= VMA_AREA_REGULAR | VMA_AREA_HEAP,
        "[uprobes]" => return Err(DumpError::Uprobes { pid, start }.into()),
        _ => v.status = VMA_AREA_REGULAR,
    }
    if v.name.starts_with('/') {
        // A path without a map_files link: cannot be opened to check it.
        return Err(DumpError::NoMapFilesLink {
            pid,
            start,
            end,
            name: v.name.clone(),
        }
        .into());
    }
    if v.flags & MAP_SHARED != 0 {
        v.status |= VMA_ANON_SHARED;
        v.shmid = ino;
    } else {
        v.status |= VMA_ANON_PRIVATE;
    }
    v.flags |= MAP_ANONYMOUS;
    Ok(())
}

/// The device number of anonymous shared memory on this kernel: the
/// internal shmem mount, which memfd files live on too.
pub fn shmem_dev() -> Result<u64> {
    let fd =
        nix::sys::memfd::memfd_create(c"crit-shmem-probe", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| DumpError::Call {
                what: "memfd_create",
                source: e.into(),
            })?;
    let f = std::fs::File::from(fd);
    let st = f.metadata().map_err(|source| DumpError::Call {
        what: "memfd fstat",
        source,
    })?;
    Ok(st.dev())
}
