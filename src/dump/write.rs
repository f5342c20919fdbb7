//! Collects the whole frozen tree, then writes every image: per task
//! core/mm/pagemap/pages/fs/ids/fdinfo, then the shared images (pstree,
//! files and their data images, shared memory, timens, seccomp), and
//! inventory.img last.

use super::files::FileTable;
use super::freeze::Frozen;
use super::ids::Ids;
use super::imgdir::ImgDir;
use super::progress::Log;
use super::sockets::Sockets;
use super::{mm, task, tree, DumpOpts, Summary};
use crate::error::{Error, Result};
use crate::image::pb;
use crate::image::typed::ImageBuilder;

pub fn run(
    fr: &Frozen,
    opts: &DumpOpts,
    env: &task::Env,
    dir: &mut ImgDir,
    log: &Log,
) -> Result<Summary> {
    let tasks = fr.tasks.clone();
    tree::check_ids(&tasks)?;
    tree::check_locks(&tasks)?;
    let mut ids = Ids::default();
    // The dumper's own objects take the first ids, as in CRIU.
    let root_ids = ids.task(std::process::id() as i32)?;
    let mut files = FileTable::default();
    let mut socks = Sockets::default();
    socks.net_ns_id = root_ids.net_ns_id;
    let (mut seen_vm, mut seen_files) = (Vec::new(), Vec::new());
    let mut pw = super::pages::PageWriter::new(&dir.dir);
    let ticker = super::progress::Ticker::start(log, pw.counters());
    let mut all = Vec::new();
    log.step(&format!("collecting {} task(s)", tasks.len()));
    let mut zombies = Vec::new();
    for t in &tasks {
        super::guard::check()?;
        if t.zombie {
            zombies.push(t.clone());
            continue;
        }
        log.debug(&format!("pid {}: {} thread(s)", t.pid, t.threads.len()));
        let c = task::collect(
            fr,
            t,
            env,
            &mut ids,
            &mut files,
            &mut seen_vm,
            &mut seen_files,
            &mut socks,
            &mut pw,
            opts,
        )?;
        ids.check_same_ns(t.pid, &c.ids, &root_ids)?;
        all.push(c);
    }
    log.debug("tasks collected");
    socks.finish(&mut files, &opts.ext_unix, !opts.leave_running)?;

    // Nothing was refused: write.
    log.step("writing images");
    let mut s = Summary {
        tasks: all.len(),
        sockets: socks.count,
        ..Default::default()
    };
    pw.help();
    let (copied, (t_read, t_write)) = pw.finish()?;
    ticker.stop();
    log.debug("pages copied");
    let mut st = pb::DumpStatsEntry {
        pages_scanned: all.iter().map(|c| c.pages_scanned).sum(),
        irmap_resolve: Some(0),
        page_pipes: Some(copied.len() as u64),
        page_pipe_bufs: Some(copied.len() as u64),
        shpages_scanned: Some(0),
        shpages_skipped_parent: Some(0),
        shpages_written: Some(0),
        ..Default::default()
    };
    for d in copied {
        dir.finish(d.stream)?;
        dir.write(&format!("pagemap-{}.img", d.pid), &d.pagemap)?;
        s.pages += d.pages;
    }
    st.pages_written = s.pages;
    st.memdump_time = t_read.as_micros() as u32;
    st.memwrite_time = t_write.as_micros() as u32;
    for c in &all {
        let pid = c.t.pid;
        s.threads += c.t.threads.len();
        for (i, core) in c.cores.iter().enumerate() {
            let mut b = ImageBuilder::new("CORE")?;
            b.entry(core);
            dir.write(&format!("core-{}.img", c.t.threads[i]), &b)?;
        }
        let mut b = ImageBuilder::new("IDS")?;
        b.entry(&c.ids);
        dir.write(&format!("ids-{pid}.img"), &b)?;
        let mut b = ImageBuilder::new("FS")?;
        b.entry(&c.fs);
        dir.write(&format!("fs-{pid}.img"), &b)?;
        if let Some(m) = &c.mm {
            let mut b = ImageBuilder::new("MM")?;
            b.entry(m);
            dir.write(&format!("mm-{pid}.img"), &b)?;
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

    // Shared memory (memfd and shared anonymous mappings).
    for (ino, path) in files.shmem.clone() {
        let pages_id = pw.next_id();
        let (runs, data) = shmem_contents(&path)?;
        let read = move |_p: i32, pieces: &[(u64, usize)], buf: &mut [u8]| -> Result<()> {
            let mut o = 0;
            for &(a, n) in pieces {
                let a = a as usize;
                buf[o..o + n].copy_from_slice(
                    data.get(a..a + n)
                        .ok_or_else(|| Error::msg("shmem contents changed"))?,
                );
                o += n;
            }
            Ok(())
        };
        let n = mm::write_pages(
            dir,
            &format!("pagemap-shmem-{ino}.img"),
            pages_id,
            0,
            &runs,
            0,
            &read,
        )?;
        s.pages += n;
        st.shpages_written = Some(st.shpages_written.unwrap_or(0) + n);
        st.shpages_scanned = Some(st.shpages_scanned.unwrap_or(0) + n);
    }

    // Zombies: a core with the exit status, as CRIU's dump_one_zombie
    // (task_state TASK_DEAD = 2).
    for z in &zombies {
        let mut b = ImageBuilder::new("CORE")?;
        b.entry(&pb::CoreEntry {
            mtype: pb::core_entry::March::X8664 as i32,
            tc: Some(pb::TaskCoreEntry {
                task_state: 2,
                exit_code: z.stat.exit_code,
                comm: z.stat.comm.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
        dir.write(&format!("core-{}.img", z.pid), &b)?;
    }
    s.tasks += zombies.len();
    let mut b = ImageBuilder::new("PSTREE")?;
    for t in &tasks {
        b.entry(&pb::PstreeEntry {
            pid: t.pid as u32,
            ppid: if t.pid == opts.pid { 0 } else { t.ppid as u32 },
            pgid: t.pgid as u32,
            sid: t.sid as u32,
            threads: t.threads.iter().map(|&x| x as u32).collect(),
        });
    }
    dir.write("pstree.img", &b)?;

    let mut b = ImageBuilder::new("FILES")?;
    for e in &files.entries {
        b.entry(e);
    }
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
    for (gid, b) in &files.ghosts {
        dir.write(&format!("ghost-file-{gid}.img"), b)?;
    }
    if !files.memfd_inodes.is_empty() {
        let mut b = ImageBuilder::new("MEMFD_INODE")?;
        for m in &files.memfd_inodes {
            b.entry(m);
        }
        dir.write("memfd.img", &b)?;
    }

    if opts.cpu_caps.has(crate::model::cpu::CpuCaps::IMAGE) {
        let mut b = ImageBuilder::new("CPUINFO")?;
        b.entry(&crate::model::cpu::to_image(&crate::sys::cpu::this_cpu()));
        dir.write("cpuinfo.img", &b)?;
    }
    let mut b = ImageBuilder::new("TIMENS")?;
    b.entry(&timens()?);
    dir.write("timens-0.img", &b)?;
    let mut b = ImageBuilder::new("SECCOMP")?;
    b.entry(&pb::SeccompEntry {
        seccomp_filters: env.seccomp.borrow().clone(),
    });
    dir.write("seccomp.img", &b)?;

    // stats-dump, as CRIU writes it (times in microseconds).
    if let Some((freezing, at)) = env.frozen_at.get() {
        st.freezing_time = freezing.as_micros() as u32;
        st.frozen_time = at.elapsed().as_micros() as u32;
    }
    let mut b = ImageBuilder::new("STATS")?;
    b.entry(&pb::StatsEntry {
        dump: Some(st),
        restore: None,
    });
    dir.write("stats-dump", &b)?;

    // The data of connections pending in a listener can only be read by
    // taking them from the tree: done last, once all else is written.
    super::guard::check()?;
    socks.drain_pending()?;
    if let Some(b) = &socks.queues {
        dir.write("sk-queues.img", b)?;
    }
    // Last: its presence says the set is complete.
    let mut b = ImageBuilder::new("INVENTORY")?;
    b.entry(&pb::InventoryEntry {
        img_version: 2,
        fdinfo_per_id: Some(true),
        root_ids: Some(root_ids),
        ns_per_id: Some(true),
        root_cg_set: Some(1),
        lsmtype: Some(pb::Lsmtype::NoLsm as i32),
        dump_uptime: None,
        pre_dump_mode: None,
        tcp_close: None,
        network_lock_method: Some(0),
        plugins_entry: Some(pb::PluginsEntry::default()),
        dump_criu_run_id: Some(run_id()),
        allow_uprobes: None,
    });
    dir.write("inventory.img", &b)?;
    dir.sync()?;
    s.bytes = dir.bytes;
    Ok(s)
}

fn timens() -> Result<pb::TimensEntry> {
    use nix::time::{clock_gettime, ClockId};
    let m = clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map_err(|e| Error::io("clock_gettime", e.into()))?;
    let b =
        clock_gettime(ClockId::CLOCK_BOOTTIME).map_err(|e| Error::io("clock_gettime", e.into()))?;
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
fn run_id() -> String {
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

/// The non-hole, non-zero pages of a shmem file, as runs (offsets as
/// addresses) and the whole contents.
fn shmem_contents(path: &str) -> Result<(Vec<super::pagemap::Run>, Vec<u8>)> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut data))
        .map_err(|e| Error::io(format!("{path}: read shared memory"), e))?;
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
    Ok((runs, data))
}
