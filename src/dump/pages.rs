//! The page writers: threads that copy task memory (process_vm_readv,
//! which needs no tracer) into pages-N.img while the main thread goes on
//! reading descriptors and sockets of the frozen tree. A task's memory is
//! cut into batches of up to 16 MiB, each with its place in the pages
//! file, and any writer takes any batch (one read and one positional write
//! per batch). Pages ids are given in submission order; nothing is
//! committed until the main thread takes the results, so a failed dump
//! leaves no pages behind.

use super::error::DumpError;
use super::imgdir::Stream;
use super::maps::PAGE_SIZE;
use super::pagemap::Run;
use crate::error::{Error, Result};
use crate::image::pb;
use crate::image::typed::ImageBuilder;
use crate::sys::remote;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest batch: one process_vm_readv (in IOV_MAX pieces) and one write.
const BATCH: usize = 16 << 20;
/// Page-copying threads.
const WRITERS: usize = 1;

struct Batch {
    job: usize,
    pieces: Vec<(u64, usize)>,
    offset: u64,
    len: usize,
}

struct JobFile {
    pid: i32,
    stream: Stream,
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
}

/// Bytes of memory queued for copying and copied so far (for progress).
#[derive(Default)]
pub struct Counters {
    pub queued: AtomicU64,
    pub copied: AtomicU64,
}

/// One task's copied memory, ready to commit.
pub struct Done {
    pub pid: i32,
    pub stream: Stream,
    pub pagemap: ImageBuilder,
    pub pages: u64,
}

pub struct PageWriter {
    dir: PathBuf,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    next_id: u32,
    /// Per job: pagemap image and page count.
    maps: Vec<(ImageBuilder, u64)>,
}

/// Copies batches until there are none left and the queue is closed (or,
/// `until_empty`, as soon as none are left: the main thread helping).
fn work(sh: &Shared, until_empty: bool) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let b = {
            let mut q = sh.q.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if sh.cancel.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(b) = q.batches.pop_front() {
                    break b;
                }
                if q.closed || until_empty {
                    return;
                }
                q = sh.cv.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let job = {
            let jobs = sh.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs[b.job].clone()
        };
        if buf.len() < b.len {
            buf.resize(b.len, 0);
        }
        let t = std::time::Instant::now();
        let r = read_mem(job.pid, &b.pieces, &mut buf[..b.len]);
        let tr = t.elapsed();
        let t = std::time::Instant::now();
        let r = r.and_then(|_| job.write_at(&buf[..b.len], b.offset));
        let tw = t.elapsed();
        if r.is_ok() {
            sh.count.copied.fetch_add(b.len as u64, Ordering::Relaxed);
        }
        let mut q = sh.q.lock().unwrap_or_else(|e| e.into_inner());
        q.times.0 += tr;
        q.times.1 += tw;
        if let Err(e) = r {
            if q.error.is_none() {
                q.error = Some(e);
            }
            sh.cancel.store(true, Ordering::Relaxed);
            sh.cv.notify_all();
            return;
        }
    }
}

impl JobFile {
    /// Writes one batch at its place. Reads run in parallel; writes to
    /// one file take turns here, since the file system serialises them
    /// anyway on the file's lock, and its waiters spin (a third of the
    /// CPU of a 4 GiB dump went to that spinning).
    fn write_at(&self, data: &[u8], offset: u64) -> Result<()> {
        let _turn = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        self.stream.write_at(data, offset)
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
    let got =
        remote::read_ranges(pid, &mut buf[..want], &iov).map_err(|source| DumpError::Task {
            pid,
            what: "reading memory",
            source,
        })?;
    if got != want {
        let at = pieces.first().map(|p| p.0).unwrap_or(0);
        return Err(DumpError::ShortMemRead { pid, got, want, at }.into());
    }
    Ok(())
}

impl PageWriter {
    pub fn new(dir: &Path) -> PageWriter {
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            jobs: Mutex::new(Vec::new()),
            cancel: AtomicBool::new(false),
            count: Arc::default(),
        });
        let threads = (0..WRITERS)
            .map(|_| {
                let sh = shared.clone();
                std::thread::spawn(move || work(&sh, false))
            })
            .collect();
        PageWriter {
            dir: dir.to_path_buf(),
            shared,
            threads,
            next_id: 0,
            maps: Vec::new(),
        }
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

    /// Queues the memory of `pid` for copying; returns its pages id.
    pub fn submit(&mut self, pid: i32, runs: Vec<Run>) -> Result<u32> {
        let pages_id = self.next_id();
        let mut pm = ImageBuilder::new("PAGEMAP")?;
        pm.entry(&pb::PagemapHead { pages_id });
        let mut batches = Vec::new();
        let mut cur = Batch {
            job: self.maps.len(),
            pieces: Vec::new(),
            offset: 0,
            len: 0,
        };
        let mut offset = 0u64;
        let mut pages = 0u64;
        for r in &runs {
            pm.entry(&pb::PagemapEntry {
                vaddr: r.vaddr,
                compat_nr_pages: 0,
                in_parent: None,
                flags: Some(r.flags),
                nr_pages: Some(r.nr_pages),
            });
            pages += r.nr_pages;
            let mut addr = r.vaddr;
            let mut left = (r.nr_pages * PAGE_SIZE) as usize;
            while left > 0 {
                let n = left.min(BATCH - cur.len);
                cur.pieces.push((addr, n));
                cur.len += n;
                addr += n as u64;
                left -= n;
                offset += n as u64;
                if cur.len == BATCH {
                    let next = Batch {
                        job: cur.job,
                        pieces: Vec::new(),
                        offset,
                        len: 0,
                    };
                    batches.push(std::mem::replace(&mut cur, next));
                }
            }
        }
        if cur.len > 0 {
            batches.push(cur);
        }
        let mut stream = Stream::create(&self.dir.join(format!("pages-{pages_id}.img")))?;
        stream.add_bytes(offset);
        self.shared
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(JobFile {
                pid,
                stream,
                writing: Mutex::new(()),
            }));
        self.maps.push((pm, pages));
        let mut q = self.shared.q.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = q.error.take() {
            return Err(e);
        }
        q.batches.extend(batches);
        self.shared
            .count
            .queued
            .fetch_add(offset, Ordering::Relaxed);
        self.shared.cv.notify_all();
        Ok(pages_id)
    }

    /// Lends the calling thread to the copying until no batch is left
    /// (the main thread, once it has read everything else).
    pub fn help(&self) {
        work(&self.shared, true);
    }

    /// Waits for every queued copy; returns the copies and the time spent
    /// reading memory and writing it (summed over the writers).
    pub fn finish(&mut self) -> Result<(Vec<Done>, (Duration, Duration))> {
        {
            let mut q = self.shared.q.lock().unwrap_or_else(|e| e.into_inner());
            q.closed = true;
            self.shared.cv.notify_all();
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
            out.push(Done {
                pid: j.pid,
                stream: j.stream,
                pagemap,
                pages,
            });
        }
        Ok((out, times))
    }
}

impl Drop for PageWriter {
    fn drop(&mut self) {
        // A dump that failed: stop copying; uncommitted files vanish.
        self.shared.cancel.store(true, Ordering::Relaxed);
        self.shared.cv.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
