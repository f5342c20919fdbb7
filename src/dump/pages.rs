//! The page writers: threads that move task memory into pages-N.img
//! while the main thread goes on collecting the frozen tree. A task's
//! memory is cut into batches of up to 1 MiB, each with its place in the
//! pages file; the task puts each batch into a pipe ([`super::vmsplice`])
//! and any writer splices any batch into the file (one copy), or, for a
//! batch without a pipe, reads it with process_vm_readv (which needs no
//! tracer) and writes it. Pages ids are given in submission order;
//! nothing is committed until the main thread takes the results, so a
//! failed dump leaves no pages behind.
//!
//! With a page server ([`crate::pageserver`]) the batches go to its
//! connection instead, each in its turn (batches are numbered as they are
//! queued), with the pagemap's commands between them.

use super::error::DumpError;
use super::imgdir::Stream;
use super::maps::PAGE_SIZE;
use super::pagemap::{self, Run, PE_PARENT, PE_PRESENT};
use crate::error::{Error, Result};
use crate::image::pb;
use crate::image::typed::ImageBuilder;
use crate::pageserver::client::Client;
use crate::pageserver::lazy::FrozenPages;
use crate::pageserver::wire::{Dst, Header};
use crate::sys::inject::Injector;
use crate::sys::remote;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest batch: what one pipe holds (or, without one, one
/// process_vm_readv and one write).
const BATCH: usize = super::vmsplice::PIPE_BYTES;
/// Page-copying threads.
const WRITERS: usize = 1;

struct Batch {
    job: usize,
    pieces: Vec<(u64, usize)>,
    offset: u64,
    len: usize,
    /// The pieces' pages, already in a pipe (see [`super::vmsplice`]);
    /// else they are read with process_vm_readv.
    pipe: Option<OwnedFd>,
    /// Its place in the queue (the page server's turn).
    seq: u64,
    /// To a page server: the commands this batch sends, its pieces as
    /// `Data` in order.
    msgs: Vec<Msg>,
}

/// One page server command of a batch.
enum Msg {
    /// OPEN2 of the job's pagemap; `holes`: the job leaves pages to the
    /// parent images, which the server must hold.
    Open { holes: bool },
    /// Pages left to the parent images.
    Hole { vaddr: u64, nr_pages: u64 },
    /// The batch's next piece, with its pagemap flags.
    Data { vaddr: u64, len: usize, flags: u32 },
}

impl Batch {
    fn new(job: usize, offset: u64) -> Batch {
        Batch {
            job,
            pieces: Vec::new(),
            offset,
            len: 0,
            pipe: None,
            seq: 0,
            msgs: Vec::new(),
        }
    }
}

struct JobFile {
    pid: i32,
    /// The task runs on while it is copied (pre-dump): pages unmapped
    /// meanwhile read as zeros (see [`read_live`]).
    live: bool,
    /// The pages file; None when pages go to a page server.
    stream: Option<Stream>,
    /// The pagemap, for a page server.
    dst: Dst,
    /// Held while writing to the file.
    writing: Mutex<()>,
}

#[derive(Default)]
struct Queue {
    batches: VecDeque<Batch>,
    closed: bool,
    error: Option<Error>,
    times: (Duration, Duration),
}

struct Shared {
    q: Mutex<Queue>,
    cv: Condvar,
    jobs: Mutex<Vec<Arc<JobFile>>>,
    cancel: AtomicBool,
    count: Arc<Counters>,
    /// Queued batches that hold a pipe (each an fd of crit's).
    pipes: AtomicUsize,
    /// The page server's connection, when pages go there.
    remote: Option<Remote>,
}

/// A page server connection shared by the copying threads, which send
/// their batches in queue order.
struct Remote {
    turn: Mutex<Turn>,
    cv: Condvar,
}

struct Turn {
    client: Option<Client>,
    /// The batch whose turn it is.
    next: u64,
}

impl Shared {
    /// Stops every copying thread (one failed, or the dump did).
    fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.cv.notify_all();
        if let Some(r) = &self.remote {
            // Under its lock: a thread between its check and its wait
            // would miss the wake-up.
            let _t = r.turn.lock().unwrap_or_else(|e| e.into_inner());
            r.cv.notify_all();
        }
    }
}

/// Pipes queued at most: past this the submitting thread writes some out
/// itself before it fills more. Each is a descriptor of crit's: half of
/// what its limit leaves beyond 1024, up to 4 GiB in flight (the fill
/// then runs ahead of the writers while the rest of the task is read).
fn max_pipes() -> usize {
    let room = crate::sys::nofile::soft().saturating_sub(1024) / 2;
    room.clamp(64, 4096) as usize
}

/// Bytes of memory queued for copying and copied so far (for progress).
#[derive(Default)]
pub struct Counters {
    pub queued: AtomicU64,
    pub copied: AtomicU64,
    /// Of `copied`, the bytes that came through pipes (one copy).
    pub spliced: AtomicU64,
}

/// One task's copied memory, ready to commit.
pub struct Done {
    pub pid: i32,
    /// Its pages file (none when a page server has the pages).
    pub stream: Option<Stream>,
    pub pagemap: ImageBuilder,
    pub pages: u64,
}

impl Done {
    /// Commits the pages file and writes the pagemap of task `vpid`;
    /// when a page server has them, keeps the pagemap apart (see
    /// [`super::incremental::sent_pagemap`]). Returns the bytes sent.
    pub fn commit(self, dir: &mut super::imgdir::ImgDir, vpid: i32) -> Result<u64> {
        match self.stream {
            Some(s) => {
                dir.finish(s)?;
                dir.write(&format!("pagemap-{vpid}.img"), &self.pagemap)?;
                Ok(0)
            }
            None => {
                let name = super::incremental::sent_pagemap(vpid);
                dir.write(&name, &self.pagemap)?;
                Ok(self.pages * PAGE_SIZE)
            }
        }
    }
}

pub struct PageWriter {
    dir: PathBuf,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    next_id: u32,
    /// Per job: pagemap image and page count.
    maps: Vec<(ImageBuilder, u64)>,
    /// See [`PageWriter::made_fds`].
    made: Arc<super::vmsplice::Made>,
    /// See [`max_pipes`].
    max_pipes: usize,
    /// Batches queued so far.
    queued: u64,
    /// `dump --lazy-pages`: the lazy runs left in the frozen tasks, to
    /// be served from there (None: every page goes to the images).
    lazy: Option<Vec<FrozenPages>>,
    /// Pages of the next task kept in the images even where lazy (each
    /// thread's stack page, as CRIU keeps them).
    keep: Vec<u64>,
}

/// When a thread stops taking batches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// None is left and the queue is closed (the writer threads).
    Closed,
    /// None is left (the main thread helping).
    Empty,
    /// Fewer than this many queued batches hold a pipe (or none is left).
    PipesBelow(usize),
}

/// Copies batches until `until`.
fn work(sh: &Shared, until: Until) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let b = {
            let mut q = sh.q.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if sh.cancel.load(Ordering::Relaxed) {
                    return;
                }
                if let Until::PipesBelow(n) = until {
                    if sh.pipes.load(Ordering::Relaxed) < n {
                        return;
                    }
                }
                if let Some(b) = q.batches.pop_front() {
                    break b;
                }
                if q.closed || until != Until::Closed {
                    return;
                }
                q = sh.cv.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let job = {
            let jobs = sh.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs[b.job].clone()
        };
        let (r, tr, tw) = match &b.pipe {
            Some(pipe) => {
                let t = std::time::Instant::now();
                let r = match &sh.remote {
                    Some(rm) => rm.send(sh, &job, &b, Src::Pipe(pipe)),
                    None => job.splice_at(pipe, b.offset, b.len),
                };
                sh.pipes.fetch_sub(1, Ordering::Relaxed);
                (r, Duration::ZERO, t.elapsed())
            }
            None => {
                if buf.len() < b.len {
                    buf.resize(b.len, 0);
                }
                let t = std::time::Instant::now();
                let r = match (job.live, b.len) {
                    (_, 0) => Ok(()),
                    (true, _) => read_live(job.pid, &b.pieces, &mut buf[..b.len]),
                    (false, _) => read_mem(job.pid, &b.pieces, &mut buf[..b.len]),
                };
                let tr = t.elapsed();
                let t = std::time::Instant::now();
                let r = r.and_then(|_| match &sh.remote {
                    Some(rm) => rm.send(sh, &job, &b, Src::Buf(&buf[..b.len])),
                    None => job.write_at(&buf[..b.len], b.offset),
                });
                (r, tr, t.elapsed())
            }
        };
        if r.is_ok() {
            sh.count.copied.fetch_add(b.len as u64, Ordering::Relaxed);
            if b.pipe.is_some() {
                sh.count.spliced.fetch_add(b.len as u64, Ordering::Relaxed);
            }
        }
        let mut q = sh.q.lock().unwrap_or_else(|e| e.into_inner());
        q.times.0 += tr;
        q.times.1 += tw;
        if let Err(e) = r {
            if q.error.is_none() {
                q.error = Some(e);
            }
            drop(q);
            sh.cancel();
            return;
        }
    }
}

impl JobFile {
    fn stream(&self) -> Result<&Stream> {
        Ok(self
            .stream
            .as_ref()
            .ok_or(DumpError::WriterHoldsFile { pid: self.pid })?)
    }

    /// Writes one batch at its place. Reads run in parallel; writes to
    /// one file take turns here, since the file system serialises them
    /// anyway on the file's lock, and its waiters spin (a third of the
    /// CPU of a 4 GiB dump went to that spinning).
    fn write_at(&self, data: &[u8], offset: u64) -> Result<()> {
        let _turn = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        self.stream()?.write_at(data, offset)
    }

    /// Like [`JobFile::write_at`], the `len` bytes coming from `pipe`.
    fn splice_at(&self, pipe: &OwnedFd, offset: u64, len: usize) -> Result<()> {
        let _turn = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        self.stream()?.splice_at(pipe, offset, len)
    }
}

/// Where a batch's pages are.
enum Src<'a> {
    Pipe(&'a OwnedFd),
    Buf(&'a [u8]),
}

impl Remote {
    /// Sends batch `b` of `job` once every batch queued before it is
    /// sent.
    fn send(&self, sh: &Shared, job: &JobFile, b: &Batch, src: Src) -> Result<()> {
        let mut turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        while turn.next != b.seq {
            if sh.cancel.load(Ordering::Relaxed) {
                return Err(DumpError::CopyCancelled { pid: job.pid }.into());
            }
            turn = self.cv.wait(turn).unwrap_or_else(|e| e.into_inner());
        }
        let c = turn
            .client
            .as_mut()
            .ok_or(DumpError::CopyCancelled { pid: job.pid })?;
        let mut at = 0usize;
        for m in &b.msgs {
            match *m {
                Msg::Open { holes } => {
                    if !c.open(job.dst)? && holes {
                        return Err(DumpError::NoParentOnPageServer {
                            pagemap: job.dst.pagemap_name(),
                        }
                        .into());
                    }
                }
                Msg::Hole { vaddr, nr_pages } => {
                    c.header(Header::add(job.dst, vaddr, nr_pages, PE_PARENT), true)?
                }
                Msg::Data { vaddr, len, flags } => {
                    let pages = len as u64 / PAGE_SIZE;
                    c.header(Header::add(job.dst, vaddr, pages, flags), true)?;
                    match src {
                        Src::Pipe(p) => c.data_from_pipe(p, len)?,
                        Src::Buf(buf) => c.data(&buf[at..at + len])?,
                    }
                    at += len;
                }
            }
        }
        turn.next += 1;
        self.cv.notify_all();
        Ok(())
    }
}

/// Copies the (address, length) pieces of `pid`'s memory back to back
/// into `buf` (batched process_vm_readv); all or nothing. Needs no tracer,
/// so the page writer thread calls it.
fn read_mem(pid: i32, pieces: &[(u64, usize)], buf: &mut [u8]) -> Result<()> {
    let iov: Vec<remote::RemoteIoVec> = pieces
        .iter()
        .map(|&(base, len)| remote::RemoteIoVec { base, len })
        .collect();
    let want: usize = pieces.iter().map(|p| p.1).sum();
    let got = match remote::read_ranges(pid, &mut buf[..want], &iov) {
        // Nothing readable at the first piece.
        Err(e) if crate::sys::errno_of(&e) == Some(libc::EFAULT) => 0,
        r => r.map_err(|source| DumpError::Task {
            pid,
            what: "reading memory",
            source,
        })?,
    };
    if got != want {
        return read_forced(pid, pieces, &mut buf[..want]);
    }
    Ok(())
}

/// The pieces through /proc/PID/mem, which reads what process_vm_readv
/// cannot: pages of mappings the task itself may not read (PROT_NONE,
/// write-only), as CRIU's parasite makes them readable to dump them.
fn read_forced(pid: i32, pieces: &[(u64, usize)], buf: &mut [u8]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let want = buf.len();
    let short = |got: usize, at: u64| DumpError::ShortMemRead { pid, got, want, at };
    let f = std::fs::File::open(format!("/proc/{pid}/mem"))
        .map_err(|_| short(0, pieces.first().map_or(0, |p| p.0)))?;
    let mut done = 0usize;
    for &(base, len) in pieces {
        let dst = &mut buf[done..done + len];
        f.read_exact_at(dst, base).map_err(|_| short(done, base))?;
        done += len;
    }
    Ok(())
}

/// [`read_mem`] for a task that runs on: what cannot be read any more
/// (unmapped since its pagemap was read) is left as zeros, page by page.
/// Such a page is never taken from this dump later: its address either
/// stays unmapped or gets a new mapping, which the tracker reports as
/// written whole (see [`super::track`]).
fn read_live(pid: i32, pieces: &[(u64, usize)], buf: &mut [u8]) -> Result<()> {
    if read_mem(pid, pieces, buf).is_ok() {
        return Ok(());
    }
    let mut at = 0usize;
    for &(base, len) in pieces {
        for p in (0..len).step_by(PAGE_SIZE as usize) {
            let n = (PAGE_SIZE as usize).min(len - p);
            let dst = &mut buf[at + p..at + p + n];
            if read_mem(pid, &[(base + p as u64, n)], dst).is_err() {
                dst.fill(0);
            }
        }
        at += len;
    }
    Ok(())
}

impl PageWriter {
    /// Page writers into `dir`, or to the page server `remote`. `frozen`:
    /// the tree waits for the copy (not a pre-dump's, which runs beside it).
    pub fn new(dir: &Path, remote: Option<Client>, frozen: bool) -> PageWriter {
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            jobs: Mutex::new(Vec::new()),
            cancel: AtomicBool::new(false),
            count: Arc::default(),
            pipes: AtomicUsize::new(0),
            remote: remote.map(|c| Remote {
                turn: Mutex::new(Turn {
                    client: Some(c),
                    next: 0,
                }),
                cv: Condvar::new(),
            }),
        });
        // A writer the kernel refuses (a pids limit) is one fewer; with
        // none, `finish` copies on the caller's thread.
        let threads = (0..WRITERS)
            .filter_map(|_| {
                let sh = shared.clone();
                crate::sys::thread::spawn(move || {
                    // The copy of a frozen tree is the dump's critical path
                    // while crit's other threads have slack: 5 nice levels
                    // over them where allowed (bench: 25 ms less, the
                    // writer no longer sharing a CPU with the descriptor
                    // scan early on).
                    if let Some(n) = frozen.then(|| crate::sys::task::nice(0).ok()).flatten() {
                        let _ = crate::sys::task::set_own_nice((n - 5).max(-20));
                    }
                    work(&sh, Until::Closed)
                })
                .ok()
            })
            .collect();
        PageWriter {
            dir: dir.to_path_buf(),
            shared,
            threads,
            next_id: 0,
            maps: Vec::new(),
            made: Arc::default(),
            max_pipes: max_pipes(),
            queued: 0,
            lazy: None,
            keep: Vec::new(),
        }
    }

    /// `dump --lazy-pages`: the pages of lazy runs (PE_LAZY) are not
    /// written; their entries say PE_LAZY alone, as CRIU's, and the runs
    /// are kept for [`PageWriter::take_lazy`].
    pub fn leave_lazy(&mut self) {
        self.lazy = Some(Vec::new());
    }

    /// Pages (addresses) of the next task submitted that stay in the
    /// images even where lazy.
    pub fn keep_in_image(&mut self, pages: Vec<u64>) {
        self.keep = pages;
    }

    /// The lazy runs left in the frozen tasks, by task.
    pub fn take_lazy(&mut self) -> Vec<FrozenPages> {
        self.lazy.take().unwrap_or_default()
    }

    /// With [`PageWriter::leave_lazy`], `runs` with their lazy pages
    /// left out (and noted for task `pid`, `vpid` in the images);
    /// otherwise `runs` as they are.
    fn leave_out(&mut self, pid: i32, vpid: i32, runs: Vec<Run>) -> Vec<Run> {
        let Some(lazy) = self.lazy.as_mut() else {
            return runs;
        };
        let (out, left) = pagemap::leave_lazy(runs, &self.keep);
        match lazy.last_mut().filter(|t| t.pid == pid) {
            Some(t) => t.runs.extend(left),
            None => lazy.push(FrozenPages {
                vpid: vpid as u64,
                pid,
                runs: left,
            }),
        }
        out
    }

    /// Pages go to a page server.
    pub fn is_remote(&self) -> bool {
        self.shared.remote.is_some()
    }

    /// The copy counters, for a progress display.
    pub fn counters(&self) -> Arc<Counters> {
        self.shared.count.clone()
    }

    /// The next pages id (for images written outside the writers).
    pub fn next_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Queues the memory of `pid` for copying; returns its pages id. With
    /// `inj`, an injector into the (frozen) task, the pages go into pipes
    /// first ([`super::vmsplice`]), for one copy instead of two; without,
    /// the task may be running (pre-dump) and they are read as they are.
    /// Runs flagged PE_PARENT only get their pagemap entry. `vpid` is
    /// the task's pid in the images.
    pub fn submit(
        &mut self,
        pid: i32,
        vpid: i32,
        runs: Vec<Run>,
        inj: Option<&mut Injector>,
    ) -> Result<u32> {
        self.submit_parts(pid, vpid, runs, None, inj)
            .map(|(id, _)| id)
    }

    /// [`PageWriter::submit`] with the runs in two parts: the pages of
    /// `first` are queued before `rest` is called for the runs after
    /// them, so that the writers start while a big address space is
    /// still read. Returns the pages id and all the runs.
    pub fn submit_parts(
        &mut self,
        pid: i32,
        vpid: i32,
        first: Vec<Run>,
        rest: Option<&mut dyn FnMut() -> Result<Vec<Run>>>,
        mut inj: Option<&mut Injector>,
    ) -> Result<(u32, Vec<Run>)> {
        let pages_id = self.next_id();
        let remote = self.is_remote();
        let mut runs = self.leave_out(pid, vpid, first);
        let mut rest = rest;
        if remote {
            // A page server hears first whether the job leaves holes.
            if let Some(more) = rest.take() {
                pagemap::append(&mut runs, more()?);
            }
        }
        let stream = match remote {
            true => None,
            false => Some(Stream::create(
                &self.dir.join(format!("pages-{pages_id}.img")),
            )?),
        };
        let job = {
            let mut jobs = self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.push(Arc::new(JobFile {
                pid,
                live: inj.is_none(),
                stream,
                dst: Dst::Task(vpid as u64),
                writing: Mutex::new(()),
            }));
            jobs.len() - 1
        };
        let (mut batches, mut offset, mut pages) = cut(job, &runs, remote, 0);
        if let Some(first) = batches.first_mut().filter(|_| remote) {
            let holes = runs.iter().any(|r| r.flags & PE_PARENT != 0);
            first.msgs.insert(0, Msg::Open { holes });
        }
        self.put(pid, batches, offset, inj.as_deref_mut())?;
        if let Some(more) = rest {
            let more = more()?;
            let more = self.leave_out(pid, vpid, more);
            let (batches, end, more_pages) = cut(job, &more, remote, offset);
            self.put(pid, batches, end - offset, inj)?;
            (offset, pages) = (end, pages + more_pages);
            pagemap::append(&mut runs, more);
        }
        debug_assert_eq!(offset, pages * PAGE_SIZE);
        self.maps.push((pagemap_image(pages_id, &runs)?, pages));
        Ok((pages_id, runs))
    }

    /// Queues `batches` (`bytes` of pages). A group of pipes at a time,
    /// each queued once filled, so the writers start while the next is
    /// filled. Crit holds a descriptor per queued pipe: past the bound it
    /// writes some out itself first.
    fn put(
        &mut self,
        pid: i32,
        mut batches: Vec<Batch>,
        bytes: u64,
        inj: Option<&mut Injector>,
    ) -> Result<()> {
        self.shared.count.queued.fetch_add(bytes, Ordering::Relaxed);
        let Some(inj) = inj else {
            return self.queue(batches);
        };
        let mut rest = batches.drain(..).peekable();
        while rest.peek().is_some() {
            let mut group: Vec<Batch> = rest.by_ref().take(super::vmsplice::PER_RUN).collect();
            work(&self.shared, Until::PipesBelow(self.max_pipes));
            let pieces: Vec<&[(u64, usize)]> = group.iter().map(|b| &b.pieces[..]).collect();
            let pipes = super::vmsplice::fill(inj, pid, &pieces, &self.made);
            for (b, p) in group.iter_mut().zip(pipes) {
                b.pipe = p;
            }
            let n = group.iter().filter(|b| b.pipe.is_some()).count();
            self.shared.pipes.fetch_add(n, Ordering::Relaxed);
            self.queue(group)?;
        }
        Ok(())
    }

    /// The descriptors the injection makes in the task whose pages are
    /// queued (see [`super::vmsplice::Made`]), for a listing made beside
    /// it. One task at a time: fresh for each.
    pub fn made_fds(&mut self) -> Arc<super::vmsplice::Made> {
        self.made = Arc::default();
        self.made.clone()
    }
}

/// The pagemap image of pages id `pages_id`: its head, then an entry per
/// run.
fn pagemap_image(pages_id: u32, runs: &[Run]) -> Result<ImageBuilder> {
    let mut pm = ImageBuilder::new("PAGEMAP")?;
    pm.entry(&pb::PagemapHead { pages_id });
    for r in runs {
        pm.entry(&pb::PagemapEntry {
            vaddr: r.vaddr,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(r.flags),
            nr_pages: Some(r.nr_pages),
        });
    }
    Ok(pm)
}

/// The pages `runs` put into a pages file, in order, as merged ranges
/// (start, end): what the file's bytes are, whatever the runs' flags.
fn page_ranges(runs: &[Run]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for r in runs.iter().filter(|r| r.flags & PE_PRESENT != 0) {
        let end = r.vaddr + r.nr_pages * PAGE_SIZE;
        match out.last_mut() {
            Some(last) if last.1 == r.vaddr => last.1 = end,
            _ => out.push((r.vaddr, end)),
        }
    }
    out
}

/// Cuts the present pages of `runs` into batches of job `job` at their
/// places in the pages file, from offset `start`; returns them, the end
/// offset and the
/// page count. For a page server (`remote`) the batches carry their
/// commands, holes included (a job of holes only gets a batch of
/// commands).
fn cut(job: usize, runs: &[Run], remote: bool, start: u64) -> (Vec<Batch>, u64, u64) {
    let mut batches = Vec::new();
    let mut cur = Batch::new(job, start);
    let mut offset = start;
    let mut pages = 0u64;
    for r in runs {
        if r.flags & PE_PARENT != 0 {
            if remote {
                cur.msgs.push(Msg::Hole {
                    vaddr: r.vaddr,
                    nr_pages: r.nr_pages,
                });
            }
            continue;
        }
        // Left in the task (dump --lazy-pages).
        if r.flags & PE_PRESENT == 0 {
            continue;
        }
        pages += r.nr_pages;
        let mut addr = r.vaddr;
        let mut left = (r.nr_pages * PAGE_SIZE) as usize;
        while left > 0 {
            let n = left.min(BATCH - cur.len);
            cur.pieces.push((addr, n));
            if remote {
                cur.msgs.push(Msg::Data {
                    vaddr: addr,
                    len: n,
                    flags: r.flags,
                });
            }
            cur.len += n;
            addr += n as u64;
            left -= n;
            offset += n as u64;
            if cur.len == BATCH {
                batches.push(std::mem::replace(&mut cur, Batch::new(job, offset)));
            }
        }
    }
    if cur.len > 0 || !cur.msgs.is_empty() || (remote && batches.is_empty()) {
        batches.push(cur);
    }
    (batches, offset, pages)
}

impl PageWriter {
    /// Hands batches to the writers (or reports a writer's failure),
    /// numbered in queue order.
    fn queue(&mut self, mut batches: Vec<Batch>) -> Result<()> {
        for b in &mut batches {
            b.seq = self.queued;
            self.queued += 1;
        }
        let mut q = self.shared.q.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = q.error.take() {
            return Err(e);
        }
        q.batches.extend(batches);
        self.shared.cv.notify_all();
        Ok(())
    }

    /// Gives the last task queued (pages id `pages_id`, written to a
    /// file, queued with `queued`) the pagemap entries of `runs` instead:
    /// for runs found from maps before smaps told what only it shows (a
    /// locked mapping's pages are not lazy). Its pages file stays as
    /// queued, so `runs` must hold the same pages in the same order;
    /// otherwise fails naming `pid`.
    pub fn retag(&mut self, pid: i32, pages_id: u32, queued: &[Run], runs: &[Run]) -> Result<()> {
        let remote = self.is_remote();
        match self.maps.last_mut() {
            Some((pm, _))
                if self.next_id == pages_id
                    && !remote
                    && page_ranges(queued) == page_ranges(runs) =>
            {
                *pm = pagemap_image(pages_id, runs)?;
                Ok(())
            }
            _ => Err(DumpError::PagesChanged { pid }.into()),
        }
    }

    /// Lends the calling thread to the copying until no batch is left
    /// (the main thread, once it has read everything else).
    pub fn help(&self) {
        work(&self.shared, Until::Empty);
    }

    /// Waits for every queued copy; returns the copies and the time spent
    /// reading memory and writing it (summed over the writers).
    pub fn finish(&mut self) -> Result<(Vec<Done>, (Duration, Duration))> {
        {
            let mut q = self.shared.q.lock().unwrap_or_else(|e| e.into_inner());
            q.closed = true;
            self.shared.cv.notify_all();
        }
        if self.threads.is_empty() {
            work(&self.shared, Until::Closed);
        }
        for t in self.threads.drain(..) {
            t.join().map_err(|_| DumpError::WriterPanicked)?;
        }
        let (err, times) = {
            let mut q = self.shared.q.lock().unwrap_or_else(|e| e.into_inner());
            (q.error.take(), q.times)
        };
        if let Some(e) = err {
            return Err(e);
        }
        let jobs = std::mem::take(&mut *self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out = Vec::new();
        for (j, (pagemap, pages)) in jobs.into_iter().zip(std::mem::take(&mut self.maps)) {
            let j = Arc::try_unwrap(j).map_err(|j| DumpError::WriterHoldsFile { pid: j.pid })?;
            let mut stream = j.stream;
            if let Some(s) = &mut stream {
                s.add_bytes(pages * PAGE_SIZE);
            }
            out.push(Done {
                pid: j.pid,
                stream,
                pagemap,
                pages,
            });
        }
        Ok((out, times))
    }

    /// Sends pagemap `dst` whole to the page server, after [`finish`]:
    /// `runs` (present pages) read with `read`. Returns the page count.
    ///
    /// [`finish`]: PageWriter::finish
    pub fn send_whole(&self, dst: Dst, runs: &[Run], read: super::mm::ReadMem) -> Result<u64> {
        let mut turn = self.remote_turn()?;
        let c = turn.client.as_mut().ok_or(DumpError::PageServerClosed)?;
        c.open(dst)?;
        let mut buf = Vec::new();
        let mut pages = 0;
        for r in runs {
            let len = (r.nr_pages * PAGE_SIZE) as usize;
            c.header(Header::add(dst, r.vaddr, r.nr_pages, r.flags), true)?;
            buf.resize(len, 0);
            read(0, &[(r.vaddr, len)], &mut buf)?;
            c.data(&buf)?;
            pages += r.nr_pages;
        }
        Ok(pages)
    }

    /// Ends the page server session (the server then keeps what it got);
    /// nothing to do without one.
    pub fn close_remote(&self) -> Result<()> {
        if self.shared.remote.is_none() {
            return Ok(());
        }
        let mut turn = self.remote_turn()?;
        match turn.client.take() {
            Some(c) => c.close(),
            None => Err(DumpError::PageServerClosed.into()),
        }
    }

    fn remote_turn(&self) -> Result<std::sync::MutexGuard<'_, Turn>> {
        let r = self
            .shared
            .remote
            .as_ref()
            .ok_or(DumpError::PageServerClosed)?;
        Ok(r.turn.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for PageWriter {
    fn drop(&mut self) {
        // A dump that failed: stop copying; uncommitted files vanish.
        self.shared.cancel();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::pagemap::PE_PRESENT;

    fn run(vaddr: u64, nr_pages: u64, flags: u32) -> Run {
        Run {
            vaddr,
            nr_pages,
            flags,
        }
    }

    /// (kind, vaddr, pages) of a batch's commands.
    fn msgs(b: &Batch) -> Vec<(char, u64, u64)> {
        b.msgs
            .iter()
            .map(|m| match *m {
                Msg::Open { .. } => ('o', 0, 0),
                Msg::Hole { vaddr, nr_pages } => ('h', vaddr, nr_pages),
                Msg::Data { vaddr, len, .. } => ('d', vaddr, len as u64 / PAGE_SIZE),
            })
            .collect()
    }

    #[test]
    fn batches_carry_holes_and_pieces_in_address_order() {
        let per = BATCH as u64 / PAGE_SIZE;
        let runs = [
            run(0, 1, PE_PARENT),
            run(PAGE_SIZE, per + 1, PE_PRESENT),
            run(1 << 30, 2, PE_PARENT),
        ];
        let (b, len, pages) = cut(0, &runs, true, 0);
        assert_eq!((len, pages), ((per + 1) * PAGE_SIZE, per + 1));
        assert_eq!(b.len(), 2);
        assert_eq!(msgs(&b[0]), vec![('h', 0, 1), ('d', PAGE_SIZE, per)]);
        let second = (per + 1) * PAGE_SIZE;
        assert_eq!(msgs(&b[1]), vec![('d', second, 1), ('h', 1 << 30, 2)]);
        assert_eq!(
            (b[1].offset, b[1].len),
            (per * PAGE_SIZE, PAGE_SIZE as usize)
        );
        // The same runs into a file: pieces only.
        let (b, _, _) = cut(0, &runs, false, 0);
        assert_eq!(b.len(), 2);
        assert!(b.iter().all(|b| b.msgs.is_empty()));
    }

    #[test]
    fn a_task_without_pages_still_opens_its_pagemap_on_a_page_server() {
        let (b, len, _) = cut(3, &[run(0, 4, PE_PARENT)], true, 0);
        assert_eq!((b.len(), len), (1, 0));
        assert_eq!(msgs(&b[0]), vec![('h', 0, 4)]);
        let (b, _, _) = cut(3, &[], true, 0);
        assert_eq!(b.len(), 1);
        assert!(cut(3, &[], false, 0).0.is_empty());
    }
}
