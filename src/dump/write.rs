//! Writes every image of a collected tree: per task
//! core/mm/pagemap/pages/fs/ids/fdinfo, then the shared images (pstree,
//! files and their data images, file locks, shared memory, timens,
//! seccomp, stats),
//! sk-queues, then makes them durable and writes inventory.img last.

use super::context::DumpCtx;
use super::error::{DumpError, Via};
use super::files::{FileTable, GhostBody};
use super::imgdir::{ImgDir, Stream};
use super::ns::pids::PidMap;
use super::pages::Done;
use super::task::{Collected, Collection};
use super::{mm, tree, Summary};
use crate::error::Result;
use crate::image::pb;
use crate::image::typed::{EncodedEntries, ImageBuilder};
use crate::model::netlock::{Lock, Method};
use crate::pageserver::wire::Dst;
use std::time::Duration;

/// Task memory the page writer has copied, not yet committed.
pub struct Copied {
    done: Vec<Done>,
    /// Time spent reading memory and writing it (summed over writers).
    times: (Duration, Duration),
}

/// Waits until every task's memory is copied, lending this thread to
/// the copying meanwhile.
fn copy_pages(ctx: &mut DumpCtx) -> Result<Copied> {
    ctx.pages.help();
    let (done, times) = ctx.pages.finish()?;
    Ok(Copied { done, times })
}

/// Writes every image of the collected tree; inventory.img last. The
/// images of the tasks, the tree and the files are written while the
/// page writers still copy (files.img of 18,000 sockets takes 10 ms, the
/// images of a tree of 2,048 tasks about 0.2 s); then the copy's end is
/// waited for (`copied` is called with the number of MiB
/// copied and of them through pipes, for the log).
pub fn images(
    ctx: &mut DumpCtx,
    all: Collection,
    copied: impl FnOnce(u64, u64),
) -> Result<Summary> {
    let mut s = Summary {
        tasks: all.tasks.len(),
        sockets: ctx.socks.count,
        ..Default::default()
    };
    let pids = &ctx.ns.pids;
    write_tasks(ctx.dir, &all.tasks, pids, &mut s)?;
    write_zombies(ctx.dir, &all.zombies, pids)?;
    write_tree(ctx.dir, &ctx.frozen.tasks, ctx.opts.pid, pids)?;
    write_files(ctx.dir, &ctx.files)?;
    write_locks(ctx.dir, &all.locks)?;
    let pages = copy_pages(ctx)?;
    let c = ctx.pages.counters();
    copied(
        c.copied.load(std::sync::atomic::Ordering::Relaxed) >> 20,
        c.spliced.load(std::sync::atomic::Ordering::Relaxed) >> 20,
    );
    let mut st = dump_stats(&all, &pages);
    let pids = &ctx.ns.pids;
    write_pages(ctx.dir, pages, pids, &mut s, &mut st)?;
    write_shared_memory(ctx, &mut s, &mut st)?;
    let ns = super::ns::images(&ctx.ns, all.ns)?;
    write_namespaces(ctx, ns, &mut s, &mut st)?;
    // Every page is sent: the page server keeps them once it answers.
    ctx.pages.close_remote()?;
    if let Some(cg) = ctx.cgroups.entry() {
        let mut b = ImageBuilder::new("CGROUP")?;
        b.entry(&cg);
        ctx.dir.write("cgroup.img", &b)?;
    }
    s.tasks += all.zombies.len();
    write_machine(ctx)?;
    write_stats(ctx, st)?;
    if let Some(p) = &ctx.parent {
        ctx.dir.symlink("parent", &p.link)?;
    }
    write_queues(ctx)?;
    for st in &ctx.socks.streams {
        let mut b = ImageBuilder::new("TCP_STREAM")?;
        b.entry(&st.entry).raw(&st.inq).raw(&st.outq);
        ctx.dir.write(&format!("tcp-stream-{:x}.img", st.ino), &b)?;
    }
    let lock = ctx.socks.repair.as_ref().map(|r| r.net_lock().clone());
    let last = Last {
        lock: lock.unwrap_or_else(|| Lock::new(Method::Iptables, &run_id())),
        root_ids: ctx.root_ids,
        tracking: ctx.parent.is_some() || ctx.opts.track_mem,
    };
    match ctx.opts.leave_running {
        true => ctx.last = Some(last),
        false => last.write(ctx.dir)?,
    }
    s.bytes = ctx.dir.bytes;
    Ok(s)
}

/// What completes a set: every image on disk, then inventory.img. A tree
/// that is killed waits for it; one that runs on (`-R`) need not, as
/// nothing of it is lost if the sync fails (the dump fails, and removes
/// its images).
pub struct Last {
    /// The network lock and its run id, which the inventory records.
    lock: Lock,
    root_ids: pb::TaskKobjIdsEntry,
    tracking: bool,
}

impl Last {
    pub fn write(self, dir: &mut ImgDir) -> Result<()> {
        dir.sync()?;
        write_inventory(dir, &self.root_ids, None, self.tracking, true, &self.lock)
    }
}

/// stats-dump as far as the collection and the page copy tell it.
fn dump_stats(all: &Collection, copied: &Copied) -> pb::DumpStatsEntry {
    pb::DumpStatsEntry {
        pages_scanned: all.tasks.iter().map(|c| c.pages_scanned).sum(),
        pages_skipped_parent: all.tasks.iter().map(|c| c.pages_parent).sum(),
        irmap_resolve: Some(0),
        page_pipes: Some(copied.done.len() as u64),
        page_pipe_bufs: Some(copied.done.len() as u64),
        shpages_scanned: Some(0),
        shpages_skipped_parent: Some(0),
        shpages_written: Some(0),
        ..Default::default()
    }
}

/// Commits each task's pages image and writes its pagemap.
fn write_pages(
    dir: &mut ImgDir,
    copied: Copied,
    pids: &PidMap,
    s: &mut Summary,
    st: &mut pb::DumpStatsEntry,
) -> Result<()> {
    for d in copied.done {
        s.pages += d.pages;
        let vpid = pids.get(d.pid);
        s.sent += d.commit(dir, vpid)?;
    }
    let (t_read, t_write) = copied.times;
    st.pages_written = s.pages;
    st.memdump_time = t_read.as_micros() as u32;
    st.memwrite_time = t_write.as_micros() as u32;
    Ok(())
}

/// One entry in image `kind` at `name`.
fn write_one(dir: &mut ImgDir, kind: &str, name: &str, e: &impl prost::Message) -> Result<()> {
    let mut b = ImageBuilder::new(kind)?;
    b.entry(e);
    dir.write(name, &b)
}

/// Per task: core per thread, ids, fs, mm and (for its own fd table)
/// fdinfo.
fn write_tasks(
    dir: &mut ImgDir,
    tasks: &[Collected],
    pids: &PidMap,
    s: &mut Summary,
) -> Result<()> {
    for c in tasks {
        let pid = pids.get(c.t.pid);
        s.threads += c.t.threads.len();
        for (i, core) in c.cores.iter().enumerate() {
            let tid = pids.get(c.t.threads[i]);
            write_one(dir, "CORE", &format!("core-{tid}.img"), core)?;
        }
        write_one(dir, "IDS", &format!("ids-{pid}.img"), &c.ids)?;
        write_one(dir, "FS", &format!("fs-{pid}.img"), &c.fs)?;
        if let Some(m) = &c.mm {
            write_one(dir, "MM", &format!("mm-{pid}.img"), m)?;
        }
        if !c.shared_files {
            let mut b = ImageBuilder::new("FDINFO")?;
            for f in &c.fdinfo {
                b.entry(f);
            }
            s.fds += c.fdinfo.len();
            dir.write(&format!("fdinfo-{}.img", c.ids.files_id), &b)?;
        }
    }
    Ok(())
}

/// Shared memory (memfd and shared anonymous mappings): its pages, read
/// from the file, with a pagemap-shmem image each.
fn write_shared_memory(
    ctx: &mut DumpCtx,
    s: &mut Summary,
    st: &mut pb::DumpStatsEntry,
) -> Result<()> {
    for (ino, path) in ctx.files.shmem.clone() {
        write_shmem(ctx, ino, read_shmem(&path)?, s, st)?;
    }
    Ok(())
}

/// The images of the tree's own namespaces; System V segments as shared
/// memory by their ids, as CRIU 4.2 writes them.
fn write_namespaces(
    ctx: &mut DumpCtx,
    ns: super::ns::Written,
    s: &mut Summary,
    st: &mut pb::DumpStatsEntry,
) -> Result<()> {
    for (name, b) in &ns.images {
        ctx.dir.write(name, b)?;
    }
    for (name, bytes) in &ns.raw {
        ctx.dir.write_raw(name, bytes)?;
    }
    for (id, data) in ns.shm {
        write_shmem(ctx, u64::from(id), data, s, st)?;
    }
    Ok(())
}

/// pagemap-shmem-`ino`.img and its pages: the non-zero pages of `data`.
fn write_shmem(
    ctx: &mut DumpCtx,
    ino: u64,
    data: Vec<u8>,
    s: &mut Summary,
    st: &mut pb::DumpStatsEntry,
) -> Result<()> {
    let pages_id = ctx.pages.next_id();
    let (runs, data) = shmem_runs(data);
    let read = move |_p: i32, pieces: &[(u64, usize)], buf: &mut [u8]| -> Result<()> {
        let mut o = 0;
        for &(a, n) in pieces {
            let a = a as usize;
            buf[o..o + n]
                .copy_from_slice(data.get(a..a + n).ok_or(DumpError::ShmemChanged { ino })?);
            o += n;
        }
        Ok(())
    };
    let n = match ctx.pages.is_remote() {
        true => ctx.pages.send_whole(Dst::Shmem(ino), &runs, &read)?,
        false => {
            let name = format!("pagemap-shmem-{ino}.img");
            mm::write_pages(ctx.dir, &name, pages_id, 0, &runs, 0, &read)?
        }
    };
    s.pages += n;
    st.shpages_written = Some(st.shpages_written.unwrap_or(0) + n);
    st.shpages_scanned = Some(st.shpages_scanned.unwrap_or(0) + n);
    Ok(())
}

/// Zombies: a core with the exit status, as CRIU's dump_one_zombie
/// (task_state TASK_DEAD = 2).
fn write_zombies(dir: &mut ImgDir, zombies: &[tree::Task], pids: &PidMap) -> Result<()> {
    for z in zombies {
        let core = pb::CoreEntry {
            mtype: pb::core_entry::March::X8664 as i32,
            tc: Some(pb::TaskCoreEntry {
                task_state: 2,
                exit_code: z.stat.exit_code,
                comm: z.stat.comm.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        write_one(dir, "CORE", &format!("core-{}.img", pids.get(z.pid)), &core)?;
    }
    Ok(())
}

/// pstree.img: every task in pstree order; the root's parent is 0.
/// Pids as the tree sees them (`pids`).
fn write_tree(dir: &mut ImgDir, tasks: &[tree::Task], root: i32, pids: &PidMap) -> Result<()> {
    let mut b = ImageBuilder::new("PSTREE")?;
    for host in tasks {
        let t = pids.task(host);
        b.entry(&pb::PstreeEntry {
            pid: t.pid as u32,
            ppid: if host.pid == root { 0 } else { t.ppid as u32 },
            pgid: t.pgid as u32,
            sid: t.sid as u32,
            threads: t.threads.iter().map(|&x| x as u32).collect(),
        });
    }
    dir.write("pstree.img", &b)
}

/// files.img and the images that hang off it: pipe and fifo data,
/// ghost files and their remaps, memfd inodes.
/// filelocks.img, when the tree holds locks (CRIU writes none
/// otherwise).
fn write_locks(dir: &mut ImgDir, locks: &[pb::FileLockEntry]) -> Result<()> {
    if locks.is_empty() {
        return Ok(());
    }
    let mut b = ImageBuilder::new("FILE_LOCKS")?;
    for l in locks {
        b.entry(l);
    }
    dir.write("filelocks.img", &b)
}

fn write_files(dir: &mut ImgDir, files: &FileTable) -> Result<()> {
    let mut b = ImageBuilder::new("FILES")?;
    b.entries(&files.entries);
    dir.write("files.img", &b)?;
    if let Some(b) = &files.pipes_data {
        dir.write("pipes-data.img", b)?;
    }
    if let Some(b) = &files.fifo_data {
        dir.write("fifo-data.img", b)?;
    }
    if !files.remaps.is_empty() {
        let mut b = ImageBuilder::new("REMAP_FPATH")?;
        for r in &files.remaps {
            b.entry(r);
        }
        dir.write("remap-fpath.img", &b)?;
    }
    for g in &files.ghosts {
        let name = format!("ghost-file-{}.img", g.id);
        match &g.body {
            GhostBody::Built(b) => dir.write(&name, b)?,
            GhostBody::Chunks { head, file } => write_chunks(dir, &name, head, file, &g.via)?,
        }
    }
    if !files.ttys.is_empty() {
        let mut b = ImageBuilder::new("TTY_INFO")?;
        for t in &files.ttys {
            b.entry(t);
        }
        dir.write("tty-info.img", &b)?;
    }
    if !files.tty_data.is_empty() {
        let mut b = ImageBuilder::new("TTY_DATA")?;
        for d in &files.tty_data {
            b.entry(d);
        }
        dir.write("tty-data.img", &b)?;
    }
    if !files.memfd_inodes.is_empty() {
        let mut b = ImageBuilder::new("MEMFD_INODE")?;
        for m in &files.memfd_inodes {
            b.entry(m);
        }
        dir.write("memfd.img", &b)?;
    }
    Ok(())
}

/// A ghost image in CRIU's chunked layout: the head, then for each run of
/// data between the file's holes a chunk entry and its bytes, copied by
/// the kernel from the deleted file (never whole in crit's memory).
fn write_chunks(
    dir: &mut ImgDir,
    name: &str,
    head: &pb::GhostFileEntry,
    file: &std::fs::File,
    via: &Via,
) -> Result<()> {
    let mut s = Stream::create(&dir.path(name))?;
    let mut b = ImageBuilder::new("GHOST_FILE")?;
    b.entry(head);
    s.write(&b.bytes)?;
    let runs = crate::sys::fdops::data_runs(file, head.size.unwrap_or(0)).map_err(|source| {
        DumpError::GhostRead {
            via: via.clone(),
            source,
        }
    })?;
    for (off, len) in runs {
        let mut e = EncodedEntries::default();
        e.push(&pb::GhostChunkEntry { len, off });
        s.write(e.as_bytes())?;
        s.send_from(file, off, len)?;
    }
    dir.finish(s)
}

/// cpuinfo.img (with --cpu-cap), timens and the seccomp filters.
fn write_machine(ctx: &mut DumpCtx) -> Result<()> {
    if ctx.opts.cpu_caps.has(crate::model::cpu::CpuCaps::IMAGE) {
        let cpu = crate::model::cpu::to_image(&crate::sys::cpu::this_cpu());
        write_one(ctx.dir, "CPUINFO", "cpuinfo.img", &cpu)?;
    }
    // A tree with a time namespace of its own has its clocks in
    // timens-ID.img; CRIU writes crit's own otherwise.
    if !ctx.ns.owned.has(crate::model::ns::Kind::Time) {
        write_one(ctx.dir, "TIMENS", "timens-0.img", &timens()?)?;
    }
    let seccomp = pb::SeccompEntry {
        seccomp_filters: std::mem::take(&mut ctx.seccomp),
    };
    write_one(ctx.dir, "SECCOMP", "seccomp.img", &seccomp)
}

/// stats-dump, as CRIU writes it (times in microseconds).
fn write_stats(ctx: &mut DumpCtx, mut st: pb::DumpStatsEntry) -> Result<()> {
    st.freezing_time = ctx.timing.freezing.as_micros() as u32;
    st.frozen_time = ctx.timing.frozen_at.elapsed().as_micros() as u32;
    let stats = pb::StatsEntry {
        dump: Some(st),
        restore: None,
    };
    write_one(ctx.dir, "STATS", "stats-dump", &stats)
}

/// sk-queues.img. The data of connections pending in a listener can only
/// be read by taking them from the tree: done last, once all else is
/// written.
fn write_queues(ctx: &mut DumpCtx) -> Result<()> {
    super::guard::check()?;
    ctx.socks.drain_pending()?;
    if let Some(b) = &ctx.socks.queues {
        ctx.dir.write("sk-queues.img", b)?;
    }
    Ok(())
}

/// inventory.img, last: its presence says the set is complete. A
/// pre-dump's says how its pages were taken (`pre_dump_mode`: CRIU's 1
/// splice, 2 read); a dump that tracks memory or builds on another
/// records the uptime, as CRIU does (it tells a task that started since
/// from one with a reused pid). Durable at once unless `durable` is false
/// (the rounds of `--pre-copy`, which live only as long as the dump).
pub fn write_inventory(
    dir: &mut ImgDir,
    root_ids: &pb::TaskKobjIdsEntry,
    pre_dump_mode: Option<u32>,
    tracking: bool,
    durable: bool,
    lock: &Lock,
) -> Result<()> {
    let inventory = pb::InventoryEntry {
        img_version: 2,
        fdinfo_per_id: Some(true),
        root_ids: Some(*root_ids),
        ns_per_id: Some(true),
        root_cg_set: Some(1),
        lsmtype: Some(pb::Lsmtype::NoLsm as i32),
        dump_uptime: if tracking { uptime_us() } else { None },
        pre_dump_mode,
        tcp_close: None,
        network_lock_method: Some(lock.method.number()),
        plugins_entry: Some(pb::PluginsEntry::default()),
        dump_criu_run_id: Some(lock.run_id.clone()),
        allow_uprobes: None,
    };
    let mut b = ImageBuilder::new("INVENTORY")?;
    b.entry(&inventory);
    match durable {
        true => dir.write_last("inventory.img", &b),
        false => dir.write("inventory.img", &b),
    }
}

/// Microseconds since boot, from /proc/uptime to the hundredth of a
/// second (CRIU's reading).
fn uptime_us() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/uptime").ok()?;
    let (sec, cs) = s.split_whitespace().next()?.split_once('.')?;
    Some(sec.parse::<u64>().ok()? * 1_000_000 + cs.get(..2)?.parse::<u64>().ok()? * 10_000)
}

fn timens() -> Result<pb::TimensEntry> {
    use nix::time::{clock_gettime, ClockId};
    let err = |e: nix::errno::Errno| DumpError::Call {
        what: "clock_gettime",
        source: e.into(),
    };
    let m = clock_gettime(ClockId::CLOCK_MONOTONIC).map_err(err)?;
    let b = clock_gettime(ClockId::CLOCK_BOOTTIME).map_err(err)?;
    Ok(pb::TimensEntry {
        monotonic: pb::Timespec {
            tv_sec: m.tv_sec() as u64,
            tv_nsec: m.tv_nsec() as u64,
        },
        boottime: pb::Timespec {
            tv_sec: b.tv_sec() as u64,
            tv_nsec: b.tv_nsec() as u64,
        },
    })
}

/// A random UUID-shaped run id, as CRIU writes.
/// A new run id (a random UUID, as CRIU's): names the dump in
/// inventory.img and its nftables lock.
pub fn run_id() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// The contents of a shmem file.
fn read_shmem(path: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut data))
        .map_err(|source| DumpError::FileOp {
            path: path.into(),
            what: "read shared memory",
            source,
        })?;
    Ok(data)
}

/// The non-zero pages of shared memory contents, as runs (offsets as
/// addresses), and the contents padded to whole pages.
fn shmem_runs(mut data: Vec<u8>) -> (Vec<super::pagemap::Run>, Vec<u8>) {
    let ps = super::maps::PAGE_SIZE as usize;
    data.resize(data.len().div_ceil(ps) * ps, 0);
    let mut runs: Vec<super::pagemap::Run> = Vec::new();
    for (i, page) in data.chunks(ps).enumerate() {
        if page.iter().all(|&b| b == 0) {
            continue;
        }
        let a = (i * ps) as u64;
        match runs.last_mut() {
            Some(r) if r.vaddr + r.nr_pages * ps as u64 == a => r.nr_pages += 1,
            _ => runs.push(super::pagemap::Run {
                vaddr: a,
                nr_pages: 1,
                flags: super::pagemap::PE_PRESENT,
            }),
        }
    }
    (runs, data)
}
