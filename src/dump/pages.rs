//! The page writer: a thread that copies task memory (process_vm_readv,
//! which needs no tracer) into pages-N.img while the main thread goes on
//! reading descriptors and sockets of the frozen tree. Jobs are numbered
//! (pages ids) in the order they are submitted; nothing is committed until
//! the main thread takes the results, so a failed dump leaves no pages.

use super::imgdir::Stream;
use super::pagemap::Run;
use crate::error::{Error, Result};
use crate::image::typed::ImageBuilder;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

struct Job {
    pid: i32,
    pages_id: u32,
    runs: Vec<Run>,
}

/// One task's copied memory, ready to commit.
pub struct Done {
    pub pid: i32,
    pub stream: Stream,
    pub pagemap: ImageBuilder,
    pub pages: u64,
    /// Time spent reading memory and writing it.
    pub times: (std::time::Duration, std::time::Duration),
}

pub struct PageWriter {
    tx: Option<Sender<Job>>,
    handle: Option<JoinHandle<Result<Vec<Done>>>>,
    cancel: Arc<AtomicBool>,
    next_id: u32,
}

impl PageWriter {
    pub fn new(dir: &Path) -> PageWriter {
        let (tx, rx) = channel::<Job>();
        let cancel = Arc::new(AtomicBool::new(false));
        let c2 = cancel.clone();
        let dir: PathBuf = dir.to_path_buf();
        let handle = std::thread::spawn(move || -> Result<Vec<Done>> {
            let mut out = Vec::new();
            for job in rx {
                let mut stream = Stream::create(&dir.join(format!("pages-{}.img", job.pages_id)))?;
                let read = |p: i32, pieces: &[(u64, usize)], buf: &mut [u8]| {
                    super::freeze::read_mem(p, pieces, buf)
                };
                let (pagemap, pages, times) = super::mm::copy_pages(
                    &mut stream,
                    job.pages_id,
                    job.pid,
                    &job.runs,
                    0,
                    &read,
                    &|| c2.load(Ordering::Relaxed),
                )?;
                out.push(Done {
                    pid: job.pid,
                    stream,
                    pagemap,
                    pages,
                    times,
                });
            }
            Ok(out)
        });
        PageWriter {
            tx: Some(tx),
            handle: Some(handle),
            cancel,
            next_id: 0,
        }
    }

    /// The next pages id (for images written outside the thread).
    pub fn next_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Queues the memory of `pid` for copying; returns its pages id.
    pub fn submit(&mut self, pid: i32, runs: Vec<Run>) -> Result<u32> {
        let pages_id = self.next_id();
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::msg("page writer already finished"))?;
        if tx
            .send(Job {
                pid,
                pages_id,
                runs,
            })
            .is_err()
        {
            // The thread stopped on an error: finish() reports it.
            return self
                .finish()
                .and_then(|_| Err(Error::msg("page writer stopped")));
        }
        Ok(pages_id)
    }

    /// Waits for every queued copy.
    pub fn finish(&mut self) -> Result<Vec<Done>> {
        self.tx = None;
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| Error::msg("the page writer thread panicked"))?,
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for PageWriter {
    fn drop(&mut self) {
        // A dump that failed: stop copying and drop the uncommitted files.
        self.cancel.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
