//! `crit-gen-bench DIR`: writes a synthetic but CRIU-shaped images
//! directory for benchmarks: one task holding 9,000 socketpairs (18,000
//! UNIXSK ends), plus regular files and pipes, each with its fd.
//!
//! The task's core, mm, ids, pagemap and inventory are taken from the real
//! `testdata/criu-4.2/counter` dump (compiled in), decoded with prost and
//! given the new pid and comm; the executable and its libraries keep their
//! file ids 1-3, which the mm's VMAs point at.
//!
//! Output is deterministic: the same options always give the same bytes.
//!
//! Options (all optional, after DIR):
//!   --pairs N   socketpairs (default 9000)
//!   --regs N    regular files open as fds (default 6000)
//!   --pipes N   pipes, both ends open (default 1500)
//!   --pid N     the task's pid (default 4242)

use crit::image::entry::EntryReader;
use crit::image::pb;
use crit::image::source::Source;
use crit::image::typed::{write_atomic, ImageBuilder};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::exit;

const T_CORE: &[u8] = include_bytes!("../../testdata/criu-4.2/counter/core-26659.img");
const T_MM: &[u8] = include_bytes!("../../testdata/criu-4.2/counter/mm-26659.img");
const T_IDS: &[u8] = include_bytes!("../../testdata/criu-4.2/counter/ids-26659.img");
const T_FS: &[u8] = include_bytes!("../../testdata/criu-4.2/counter/fs-26659.img");
const T_PAGEMAP: &[u8] = include_bytes!("../../testdata/criu-4.2/counter/pagemap-26659.img");
const T_FILES: &[u8] = include_bytes!("../../testdata/criu-4.2/counter/files.img");
const T_INVENTORY: &[u8] = include_bytes!("../../testdata/criu-4.2/counter/inventory.img");

/// Linux values used below.
const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;
const O_APPEND: u32 = 0o2000;
const O_LARGEFILE: u32 = 0o100000;
const SOCK_STREAM: u32 = 1;
const TCP_ESTABLISHED: u32 = 1;
const FD_CLOEXEC: u32 = 1;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;

struct Opts {
    dir: PathBuf,
    pairs: u32,
    regs: u32,
    pipes: u32,
    pid: u32,
}

fn usage() -> ! {
    eprintln!("usage: crit-gen-bench DIR [--pairs N] [--regs N] [--pipes N] [--pid N]");
    exit(2);
}

fn parse_args() -> Opts {
    let mut args = std::env::args().skip(1);
    let mut o = Opts {
        dir: PathBuf::new(),
        pairs: 9000,
        regs: 6000,
        pipes: 1500,
        pid: 4242,
    };
    let mut dir = None;
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> u32 {
            let v = args.next().unwrap_or_else(|| usage());
            v.parse().unwrap_or_else(|_| {
                eprintln!("crit-gen-bench: {name} wants a number, not {v:?}");
                exit(2)
            })
        };
        match a.as_str() {
            "--pairs" => o.pairs = num("--pairs"),
            "--regs" => o.regs = num("--regs"),
            "--pipes" => o.pipes = num("--pipes"),
            "--pid" => o.pid = num("--pid"),
            "-h" | "--help" => usage(),
            s if s.starts_with('-') => usage(),
            s => {
                if dir.replace(PathBuf::from(s)).is_some() {
                    usage()
                }
            }
        }
    }
    o.dir = dir.unwrap_or_else(|| usage());
    if o.pid == 0 {
        usage()
    }
    o
}

/// The entries' messages of a template image.
fn template_entries(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut src = Source::from_slice("template", bytes);
    let mut rd = EntryReader::new(&mut src).expect("template image has a magic");
    let mut v = Vec::new();
    while let Some(e) = rd.next_entry().expect("template image reads") {
        v.push(e.message.to_vec());
    }
    v
}

fn one<T: Message + Default>(bytes: &[u8]) -> T {
    T::decode(&template_entries(bytes)[0][..]).expect("template image decodes")
}

fn fown() -> pb::FownEntry {
    pb::FownEntry {
        uid: 0,
        euid: 0,
        signum: 0,
        pid_type: 0,
        pid: 0,
    }
}

/// Socket options as CRIU dumps them for a fresh AF_UNIX socket.
fn sk_opts() -> pb::SkOptsEntry {
    pb::SkOptsEntry {
        so_sndbuf: 212_992,
        so_rcvbuf: 212_992,
        so_snd_tmo_sec: 0,
        so_snd_tmo_usec: 0,
        so_rcv_tmo_sec: 0,
        so_rcv_tmo_usec: 0,
        reuseaddr: Some(false),
        so_priority: Some(0),
        so_rcvlowat: Some(1),
        so_passcred: Some(false),
        so_passsec: Some(false),
        so_dontroute: Some(false),
        so_no_check: Some(false),
        so_reuseport: Some(false),
        so_broadcast: Some(false),
        so_keepalive: Some(false),
        so_oobinline: Some(0),
        so_buf_lock: Some(0),
        ..Default::default()
    }
}

fn reg(id: u32, flags: u32, pos: u64, name: &str, size: Option<u64>, mode: u32) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Reg as i32,
        id,
        reg: Some(pb::RegFileEntry {
            id,
            flags,
            pos,
            fown: fown(),
            name: name.to_string(),
            size,
            mode: Some(mode),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn usk(id: u32, ino: u32, peer: u32) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Unixsk as i32,
        id,
        usk: Some(pb::UnixSkEntry {
            id,
            ino,
            r#type: SOCK_STREAM,
            state: TCP_ESTABLISHED,
            flags: O_RDWR,
            uflags: 0,
            backlog: 0,
            peer,
            fown: fown(),
            opts: sk_opts(),
            name: Vec::new(),
            ns_id: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pipe(id: u32, pipe_id: u32, flags: u32) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Pipe as i32,
        id,
        pipe: Some(pb::PipeEntry {
            id,
            pipe_id,
            flags,
            fown: fown(),
        }),
        ..Default::default()
    }
}

fn fdinfo(id: u32, ty: pb::FdTypes, fd: u32, flags: u32) -> pb::FdinfoEntry {
    pb::FdinfoEntry {
        id,
        flags,
        r#type: ty as i32,
        fd,
        xattr_security_selinux: None,
    }
}

/// A tiny deterministic generator (xorshift) for sizes and offsets.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    if let Err(e) = write_atomic(&path, bytes) {
        eprintln!("crit-gen-bench: {e}");
        exit(1);
    }
}

fn builder(magic: &str) -> ImageBuilder {
    ImageBuilder::new(magic).expect("known magic")
}

fn main() {
    let o = parse_args();
    if let Err(e) = std::fs::create_dir_all(&o.dir) {
        eprintln!("crit-gen-bench: {}: {e}", o.dir.display());
        exit(1);
    }
    let t = write_fd_table(&o);
    write_task(&o.dir, o.pid, &t);
    println!(
        "{}: pid {}, {} files ({} unix socket ends), {} fds",
        o.dir.display(),
        o.pid,
        t.nfiles,
        2 * o.pairs,
        t.nfds
    );
}

/// fds 0-2: /dev/null, read-only (file `id`) and write-only (`id + 1`).
fn std_fds(files: &mut ImageBuilder, fds: &mut ImageBuilder, id: u32) {
    let devnull_mode = S_IFCHR | 0o666;
    let wronly = O_WRONLY | O_LARGEFILE;
    files.entry(&reg(id, O_LARGEFILE, 0, "/dev/null", None, devnull_mode));
    files.entry(&reg(id + 1, wronly, 0, "/dev/null", None, devnull_mode));
    fds.entry(&fdinfo(id, pb::FdTypes::Reg, 0, 0));
    fds.entry(&fdinfo(id + 1, pb::FdTypes::Reg, 1, 0));
    fds.entry(&fdinfo(id + 1, pb::FdTypes::Reg, 2, 0));
}

/// What [`write_fd_table`] wrote that the rest needs.
struct FdTable {
    nfiles: u64,
    nfds: u64,
    cwd_id: u32,
    root_id: u32,
}

/// Writes files.img and fdinfo-2.img.
fn write_fd_table(o: &Opts) -> FdTable {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // files.img: the executable and libraries (ids 1-3, as the mm has
    // them), then the files in fd order, cwd and root last, as CRIU
    // dumps them.
    let mut files = builder("FILES");
    let mut fds = builder("FDINFO");
    let mut nfiles = 0u64;
    let mut nfds = 0u64;
    for data in template_entries(T_FILES).into_iter().take(3) {
        let e = pb::FileEntry::decode(&data[..]).expect("template files.img decodes");
        files.entry(&e);
        nfiles += 1;
    }
    let mut id = 4u32;
    std_fds(&mut files, &mut fds, id);
    nfiles += 2;
    nfds += 3;
    id += 2;
    let mut fd = 3u32;

    // Socketpairs: fds 2k and 2k+1 of each pair are neighbouring inodes.
    // CRIU writes a pair's entries once both ends are known, the peer's
    // first (see usk_pair: ids 7, 6).
    let mut ino = 1_306_123u32;
    for k in 0..o.pairs {
        let (a, b) = (id, id + 1);
        let (ia, ib) = (ino, ino + 1);
        files.entry(&usk(b, ib, ia));
        files.entry(&usk(a, ia, ib));
        nfiles += 2;
        // Every third pair was made with SOCK_CLOEXEC.
        let fl = if k % 3 == 0 { FD_CLOEXEC } else { 0 };
        fds.entry(&fdinfo(a, pb::FdTypes::Unixsk, fd, fl));
        fds.entry(&fdinfo(b, pb::FdTypes::Unixsk, fd + 1, fl));
        nfds += 2;
        fd += 2;
        id += 2;
        ino += 2;
    }

    // Regular files of various sizes, read-only, read-write or appended to.
    for k in 0..o.regs {
        let size = rng.next() % (64 << 20);
        let (flags, pos) = match k % 4 {
            0 | 1 => (O_LARGEFILE, if size > 0 { rng.next() % size } else { 0 }),
            2 => (O_RDWR | O_LARGEFILE, 0),
            _ => (O_WRONLY | O_APPEND | O_LARGEFILE, size),
        };
        let name = format!("/var/lib/bench/d{:02}/data-{:05}.db", k % 37, k);
        files.entry(&reg(id, flags, pos, &name, Some(size), S_IFREG | 0o644));
        nfiles += 1;
        fds.entry(&fdinfo(
            id,
            pb::FdTypes::Reg,
            fd,
            if k % 2 == 0 { FD_CLOEXEC } else { 0 },
        ));
        nfds += 1;
        fd += 1;
        id += 1;
    }

    // Pipes: read end then write end, one pipe inode each.
    for _ in 0..o.pipes {
        files.entry(&pipe(id, ino, 0));
        files.entry(&pipe(id + 1, ino, O_WRONLY));
        nfiles += 2;
        fds.entry(&fdinfo(id, pb::FdTypes::Pipe, fd, 0));
        fds.entry(&fdinfo(id + 1, pb::FdTypes::Pipe, fd + 1, 0));
        nfds += 2;
        fd += 2;
        id += 2;
        ino += 1;
    }

    // cwd and root (CRIU dumps them with no open flags).
    let (cwd_id, root_id) = (id, id + 1);
    files.entry(&reg(cwd_id, 0, 0, "/var/lib/bench", None, S_IFDIR | 0o755));
    files.entry(&reg(root_id, 0, 0, "/", None, S_IFDIR | 0o755));
    nfiles += 2;

    write(&o.dir, "files.img", &files.bytes);
    write(&o.dir, "fdinfo-2.img", &fds.bytes);
    FdTable {
        nfiles,
        nfds,
        cwd_id,
        root_id,
    }
}

/// Writes the task's images but files.img and fdinfo-2.img: its pstree,
/// ids, core, fs, mm, pagemap and pages, and the inventory.
fn write_task(dir: &Path, pid: u32, t: &FdTable) {
    // pstree.img: one task, one thread.
    let mut ps = builder("PSTREE");
    ps.entry(&pb::PstreeEntry {
        pid,
        ppid: 0,
        pgid: pid,
        sid: pid,
        threads: vec![pid],
    });
    write(dir, "pstree.img", &ps.bytes);

    // ids: the template's (files_id 2 names fdinfo-2.img).
    let ids: pb::TaskKobjIdsEntry = one(T_IDS);
    write(
        dir,
        &format!("ids-{pid}.img"),
        &builder("IDS").entry(&ids).bytes,
    );

    // core: the template's registers, the new comm.
    let mut core: pb::CoreEntry = one(T_CORE);
    if let Some(tc) = core.tc.as_mut() {
        tc.comm = "sockpairs".to_string();
    }
    write(
        dir,
        &format!("core-{pid}.img"),
        &builder("CORE").entry(&core).bytes,
    );

    let mut fs: pb::FsEntry = one(T_FS);
    fs.cwd_id = t.cwd_id;
    fs.root_id = t.root_id;
    write(
        dir,
        &format!("fs-{pid}.img"),
        &builder("FS").entry(&fs).bytes,
    );

    // mm: the template's VMAs point at file ids 1-3, kept above.
    let mm: pb::MmEntry = one(T_MM);
    write(
        dir,
        &format!("mm-{pid}.img"),
        &builder("MM").entry(&mm).bytes,
    );

    // pagemap: the head and entries as they are, and pages-1.img of the
    // size they add up to (zero-filled).
    let pm = template_entries(T_PAGEMAP);
    let mut pagemap = builder("PAGEMAP");
    let head = pb::PagemapHead::decode(&pm[0][..]).expect("template pagemap decodes");
    pagemap.entry(&head);
    let mut pages = 0u64;
    for data in &pm[1..] {
        let e = pb::PagemapEntry::decode(&data[..]).expect("template pagemap decodes");
        // PE_PRESENT without PE_PARENT: the pages are in pages-N.img.
        let fl = e.flags.unwrap_or(0);
        if fl & 4 != 0 && fl & 1 == 0 {
            pages += e.nr_pages.unwrap_or(0);
        }
        pagemap.entry(&e);
    }
    write(dir, &format!("pagemap-{pid}.img"), &pagemap.bytes);
    write(
        dir,
        &format!("pages-{}.img", head.pages_id),
        &vec![0u8; (pages * 4096) as usize],
    );

    let inv: pb::InventoryEntry = one(T_INVENTORY);
    write(
        dir,
        "inventory.img",
        &builder("INVENTORY").entry(&inv).bytes,
    );
}
