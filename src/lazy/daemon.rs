//! `crit lazy-pages`: serves the memory of a tree restored with
//! `restore --lazy-pages` from the images (or, with `--page-server`,
//! from a `page-server --lazy-pages` on another machine:
//! [`crate::pageserver::lazy`], over TLS with `--tls`), on demand then
//! in the background,
//! through the userfaultfds the restore hands over ([`super::handover`]).
//!
//! Each task's lazy pages (PE_LAZY entries of its pagemap whose pages
//! the images hold) are cut at mapping edges ([`super::iovs`]). The event
//! loop serves faults first, with the page asked for; a fault on a page
//! the dump did not hold gets a zero page. Forks (the child's descriptor
//! and a copy of what is left), mremap, munmap, madvise(DONTNEED) and
//! exits are followed. Once the restore is done (until then the CPUs are
//! the restore's), the rest goes in in the background: helper threads
//! (one per further CPU, up to 3, at the lowest priority so that the
//! tasks and the fault service come first) in chunks growing from
//! 64 KiB to 1 MiB from the start of what is left, the event loop itself
//! in chunks of 256 KiB between events from its end (so that the two
//! never wait for each other's page table lock). A task's events wait
//! for the copies of that task in flight (its gate), so that a range
//! taken but not copied goes back before the event that moves or drops
//! it is read; so does one whose mapping the copy found gone (ENOENT:
//! moved or unmapped, which the kernel reports before it says that the
//! mappings are changing), and the task's copies wait for the event.
//! Once every page is in, the
//! daemon closes the descriptors (which drops every registration) and
//! exits 0 with one summary line.

use super::handover::{self, Received, RESTORE_FINISHED};
use super::iovs::{Iov, Iovs};
use crate::error::{Error, Result};
use crate::image::pb;
use crate::image::typed::Mapped;
use crate::model::pagemap::{self as pm, Held, PAGE};
use crate::pageserver::lazy::Fetcher;
use crate::sys::uffd::{Event, Uffd};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// `crit lazy-pages`'s options.
pub struct DaemonOpts {
    pub dir: PathBuf,
    pub daemon: bool,
    pub pidfile: Option<PathBuf>,
    /// Gets one zero byte once the daemon listens, then is closed.
    pub status_fd: Option<i32>,
    /// `--page-server`: the pages come from this `page-server
    /// --lazy-pages` (address, port) instead of the pages images.
    pub page_server: Option<(String, u16)>,
    /// `--tls`: the page server connection is TLS.
    pub tls: Option<crate::pageserver::tls::TlsOpts>,
    /// `-o`: the daemon's messages once it listens (see crate::detach).
    pub log_file: Option<PathBuf>,
}

/// Where the pages come from.
enum Pages {
    /// A task's pages image (ranges' `off`: offsets in it).
    Local(Mapped),
    /// A page server (ranges' `off`: addresses in the images).
    Remote(Arc<Fetcher>),
}

impl Pages {
    /// `len` bytes of the pages of task `pid` at `off`.
    fn get(&self, pid: i32, off: u64, len: u64) -> Result<std::borrow::Cow<'_, [u8]>> {
        match self {
            Pages::Local(m) => m
                .bytes()
                .get(off as usize..(off + len) as usize)
                .map(std::borrow::Cow::Borrowed)
                .ok_or_else(|| Error::Io {
                    what: format!("lazy pages of pid {pid}: {}", m.name),
                    source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                }),
            Pages::Remote(f) => Ok(std::borrow::Cow::Owned(f.get(pid as u64, off, len)?)),
        }
    }
}

/// What the daemon did, for its last line.
#[derive(Default)]
struct Stats {
    tasks: usize,
    /// Bytes copied in for faults, and in the background.
    on_fault: u64,
    background: u64,
    zero_pages: u64,
    forks: u64,
    remaps: u64,
    removes: u64,
    unmaps: u64,
    /// Bytes still to come that an mremap moved.
    moved: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / 1048576.0;
        write!(
            f,
            "lazy pages of {} task(s) in: {:.1} MiB on fault, {:.1} MiB in the background, \
             {} zero page(s); events: {} fork(s), {} mremap(s) ({:.1} MiB still to come moved), \
             {} madvise(s), {} munmap(s)",
            self.tasks,
            mib(self.on_fault),
            mib(self.background),
            self.zero_pages,
            self.forks,
            self.remaps,
            mib(self.moved),
            self.removes,
            self.unmaps
        )
    }
}

const FIRST_CHUNK: u64 = 64 << 10;
/// The event loop's own background copies stay this small, so that a
/// fault never waits long behind one (helper threads copy the big ones).
const LOOP_CHUNK: u64 = 256 << 10;
const MAX_CHUNK: u64 = 1 << 20;

/// One address space being filled.
struct Space {
    pid: i32,
    uffd: Uffd,
    /// The task exited (its address space is gone).
    gone: AtomicBool,
    /// Held for reading while pages are copied in, for writing while the
    /// task's events are read and followed: a range taken but not copied
    /// (EAGAIN: the mappings are changing) goes back before the event
    /// that says how is read.
    gate: RwLock<()>,
    /// The event loop waits for the gate: no new copy starts.
    events_waiting: AtomicBool,
    left: Mutex<Iovs>,
    pages: Arc<Pages>,
    /// Bytes of the next background copy (back to the first size at
    /// each fault).
    chunk: AtomicU64,
    /// Faulted pages the dump did not hold, whose zero page could not
    /// be mapped yet (the mappings were changing): retried after the
    /// next events, since nothing else would wake their waiters.
    zero_later: Mutex<Vec<u64>>,
    /// Since when a copy found no mapping where a range left was
    /// (ENOENT): the task moved or unmapped it and the event that says
    /// so is on its way. No background copy of this task until then.
    stale: Mutex<Option<Instant>>,
}

/// How long a range may wait for the event that explains why its
/// mapping is gone; then it is taken to be gone for good.
const STALE_MAX: Duration = Duration::from_secs(2);

fn err<'a>(path: &'a Path, what: &'static str) -> impl Fn(std::io::Error) -> Error + 'a {
    move |source| Error::FileOp {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Removes the daemon's socket when it ends, whichever way: a socket
/// nobody listens on would only make the next restore's error obscure.
struct Unlink<'a>(&'a Path);

impl Drop for Unlink<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Listens, takes the restore's descriptors and serves them to the end.
pub fn run(opts: &DaemonOpts) -> Result<()> {
    let tasks =
        crate::image::typed::read_all::<pb::PstreeEntry>(&opts.dir.join("pstree.img"), "PSTREE")?;
    if opts.page_server.is_none() {
        all_in_images(&opts.dir, &tasks)?;
    }
    let path = opts.dir.join(handover::SOCKET);
    // Before the socket file is replaced: it may be another daemon's.
    let claim = handover::claim(&opts.dir)?;
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(err(&path, "listening"))?;
    let socket = Unlink(&path);
    // Before detaching: a page server that is not there is the
    // command's error, not a daemon's lost one.
    let fetcher = match &opts.page_server {
        Some((a, p)) => Some(Arc::new(Fetcher::connect(a, *p, opts.tls.as_ref())?)),
        None => None,
    };
    crate::detach::ready(&crate::detach::Ready {
        daemon: opts.daemon,
        pidfile: opts.pidfile.as_deref(),
        status_fd: opts.status_fd,
        log_file: opts.log_file.as_deref(),
    })?;
    let (mut sock, _) = listener
        .accept()
        .map_err(err(&path, "accepting the restore"))?;
    drop(listener);
    drop(socket);
    // Its restore has come: another may have a daemon of its own.
    drop(claim);
    let mut spaces = Vec::new();
    for _ in &tasks {
        if let Received::Task { pid, uffd } = handover::receive(&mut sock, &path)? {
            let s = open_space(&opts.dir, pid, Uffd::adopt(uffd), fetcher.clone())?;
            spaces.push(Arc::new(s));
        }
    }
    let sh = Shared {
        stats: Mutex::new(Stats {
            tasks: spaces.len(),
            ..Default::default()
        }),
        spaces: RwLock::new(spaces),
        stop: AtomicBool::new(false),
        restored: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        error: Mutex::new(None),
    };
    let t = std::time::Instant::now();
    let helpers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        - 1;
    let r = std::thread::scope(|scope| {
        for _ in 0..helpers {
            // Only helpers: without them the daemon serves alone.
            let _ = crate::sys::thread::scoped(scope, || sh.help());
        }
        let r = serve(&sh, sock, &path);
        sh.stop.store(true, Ordering::SeqCst);
        r
    });
    r?;
    if let Some(e) = lock(&sh.error).take() {
        return Err(e);
    }
    if let Some(f) = fetcher {
        f.close()?;
    }
    crate::detach::say(&format!(
        "crit: {}, in {:.3} s",
        lock(&sh.stats),
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Refuses, before the restore starts, images whose lazy pages were left
/// in the dumped task (`dump --lazy-pages`) when no page server is
/// given: the daemon could not serve them.
fn all_in_images(dir: &Path, tasks: &[pb::PstreeEntry]) -> Result<()> {
    let images = crate::image::store::Images::open(dir)?;
    for t in tasks {
        let name = format!("pagemap-{}.img", t.pid);
        // A zombie has none.
        if !dir.join(&name).exists() {
            continue;
        }
        let (_, entries) = images.pagemap(&name)?;
        if let Some(r) = pm::lazy_runs(&entries)
            .into_iter()
            .find(|r| matches!(r.held, Held::Lazy))
        {
            return Err(Error::Images {
                file: dir.join(name),
                why: crate::error::ImagesFault::LeftInTask(r.vaddr),
            });
        }
    }
    Ok(())
}

/// The lazy pages of task `pid` in the images of `dir`, read from there
/// or fetched from a page server.
fn open_space(dir: &Path, pid: i32, uffd: Uffd, remote: Option<Arc<Fetcher>>) -> Result<Space> {
    let images = crate::image::store::Images::open(dir)?;
    let (pages_id, entries) = images.pagemap(&format!("pagemap-{pid}.img"))?;
    let mm: pb::MmEntry = crate::image::typed::read_one(&dir.join(format!("mm-{pid}.img")), "MM")?;
    // Guard entries (VMA_AREA_GUARD) lie within mappings: not edges.
    let mut vmas: Vec<(u64, u64)> = mm
        .vmas
        .iter()
        .filter(|v| v.status & crate::image::flags::VMA_AREA_GUARD == 0)
        .map(|v| (v.start, v.end))
        .collect();
    vmas.sort_unstable();
    let remote_src = remote.is_some();
    let mut lazy: Vec<(u64, u64, u64)> = Vec::new();
    for r in pm::lazy_runs(&entries) {
        match r.held {
            Held::Here(_) | Held::Lazy if remote_src => lazy.push((r.vaddr, r.bytes(), r.vaddr)),
            Held::Here(off) => lazy.push((r.vaddr, r.bytes(), off)),
            // `dump --lazy-pages` left them in the dumped task.
            _ => {
                return Err(Error::Images {
                    file: dir.join(format!("pagemap-{pid}.img")),
                    why: crate::error::ImagesFault::LeftInTask(r.vaddr),
                })
            }
        }
    }
    let pages = match remote {
        Some(f) => Pages::Remote(f),
        None => Pages::Local(Mapped::open(&dir.join(format!("pages-{pages_id}.img")))?),
    };
    Ok(Space::new(
        pid,
        uffd,
        Iovs::new(&lazy, &vmas),
        Arc::new(pages),
    ))
}

/// What the daemon's threads share.
struct Shared {
    spaces: RwLock<Vec<Arc<Space>>>,
    stats: Mutex<Stats>,
    /// The end: helpers stop.
    stop: AtomicBool,
    /// The restore is done: background copies may start (until then
    /// only faults are served, leaving the CPUs to the restore).
    restored: AtomicBool,
    /// Ranges taken for copying and not yet copied or put back.
    in_flight: AtomicUsize,
    /// A helper's failure.
    error: Mutex<Option<Error>>,
}

impl Shared {
    /// A helper thread: background copies until the end.
    fn help(&self) {
        // The tasks' own work and the fault service come first; a
        // helper takes what CPU they leave.
        let _ = crate::sys::task::yield_to_others();
        let mut turn = 0;
        while !self.stop.load(Ordering::SeqCst) {
            if !self.restored.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_micros(500));
                continue;
            }
            match self.copy_some(&mut turn, MAX_CHUNK, false) {
                Ok(true) => {}
                Ok(false) => std::thread::sleep(std::time::Duration::from_micros(500)),
                Err(e) => {
                    lock(&self.error).get_or_insert(e);
                    self.stop.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// One background chunk (at most `max` bytes, from the end of what
    /// is left with `from_end`) of the next task (from `turn`) with pages
    /// left; false if none has any.
    fn copy_some(&self, turn: &mut usize, max: u64, from_end: bool) -> Result<bool> {
        let spaces: Vec<Arc<Space>> = self
            .spaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let n = spaces.len();
        for k in 0..n {
            let s = &spaces[(*turn + k) % n];
            if s.gone.load(Ordering::SeqCst)
                || s.events_waiting.load(Ordering::SeqCst)
                || s.waits_for_event()
            {
                continue;
            }
            let _copying = s.gate.read().unwrap_or_else(|e| e.into_inner());
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let r = s.background(max, from_end);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if let Some(bytes) = r? {
                lock(&self.stats).background += bytes;
                *turn = (*turn + k + 1) % n;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether any task has pages left (or some are being copied).
    fn pending(&self) -> bool {
        let spaces = self.spaces.read().unwrap_or_else(|e| e.into_inner());
        spaces.iter().any(|s| !lock(&s.left).is_empty())
            || self.in_flight.load(Ordering::SeqCst) > 0
    }

    /// Whether a background copy could start now: a task with pages left
    /// that waits for no event.
    fn copyable(&self) -> bool {
        let spaces = self.spaces.read().unwrap_or_else(|e| e.into_inner());
        spaces
            .iter()
            .any(|s| !s.waits_for_event() && !lock(&s.left).is_empty())
    }
}

/// The event loop: faults and events first, background copies (with the
/// helper threads) when nothing waits.
fn serve(sh: &Shared, mut sock: UnixStream, path: &Path) -> Result<()> {
    let mut finished = false;
    let mut sock_open = true;
    let mut turn = 0usize;
    loop {
        if let Some(e) = lock(&sh.error).take() {
            return Err(e);
        }
        let spaces: Vec<Arc<Space>> = {
            let mut all = sh.spaces.write().unwrap_or_else(|e| e.into_inner());
            all.retain(|s| !s.gone.load(Ordering::SeqCst));
            all.clone()
        };
        let pending = sh.pending();
        if finished && !pending {
            return Ok(());
        }
        if !sock_open && !finished {
            return Err(err(path, "the restore went away before it finished")(
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            ));
        }
        let (ready, sock_ready) = {
            let mut fds: Vec<PollFd> = spaces
                .iter()
                .map(|s| PollFd::new(s.uffd.fd(), PollFlags::POLLIN))
                .collect();
            if sock_open {
                fds.push(PollFd::new(sock.as_fd(), PollFlags::POLLIN));
            }
            // Never wait long while pages are left: the helpers may end
            // their copies meanwhile.
            let timeout = if pending && finished && sh.copyable() {
                PollTimeout::ZERO
            } else if pending && finished {
                // Only ranges waiting for their event: it wakes the poll.
                PollTimeout::from(10u8)
            } else {
                PollTimeout::from(100u8)
            };
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(err(path, "poll")(e.into())),
            }
            let hit = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let ready: Vec<bool> = fds[..spaces.len()].iter().map(hit).collect();
            let sock_ready = sock_open && fds.last().is_some_and(hit);
            (ready, sock_ready)
        };
        if sock_ready {
            match read_finished(&mut sock, path)? {
                Some(()) => {
                    finished = true;
                    sh.restored.store(true, Ordering::SeqCst);
                }
                None => sock_open = false,
            }
        }
        let mut born = Vec::new();
        let mut busy = false;
        for (s, _) in spaces.iter().zip(ready).filter(|(_, r)| *r) {
            busy = true;
            // Helpers take no new chunk of this task meanwhile: the
            // events wait for one chunk at most.
            s.events_waiting.store(true, Ordering::SeqCst);
            let _following = s.gate.write().unwrap_or_else(|e| e.into_inner());
            s.events_waiting.store(false, Ordering::SeqCst);
            s.handle_events(&mut born, &mut lock(&sh.stats))?;
        }
        if !born.is_empty() {
            let mut all = sh.spaces.write().unwrap_or_else(|e| e.into_inner());
            all.extend(born.into_iter().map(Arc::new));
        }
        if !busy && pending && finished {
            sh.copy_some(&mut turn, LOOP_CHUNK, true)?;
        }
    }
}

/// The restore's last word: Some once it finished, None at its end.
fn read_finished(sock: &mut UnixStream, path: &Path) -> Result<Option<()>> {
    let mut b = [0u8; 4];
    match sock.read(&mut b) {
        Ok(0) => Ok(None),
        Ok(n) => {
            if n < 4 {
                sock.read_exact(&mut b[n..])
                    .map_err(err(path, "reading from the restore"))?;
            }
            let w = u32::from_ne_bytes(b);
            if w != RESTORE_FINISHED {
                return Err(err(path, "reading from the restore")(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unexpected word {w:#x}"),
                )));
            }
            Ok(Some(()))
        }
        Err(e) => Err(err(path, "reading from the restore")(e)),
    }
}

impl Space {
    fn new(pid: i32, uffd: Uffd, left: Iovs, pages: Arc<Pages>) -> Space {
        Space {
            pid,
            uffd,
            gone: AtomicBool::new(false),
            gate: RwLock::new(()),
            events_waiting: AtomicBool::new(false),
            left: Mutex::new(left),
            pages,
            chunk: AtomicU64::new(FIRST_CHUNK),
            zero_later: Mutex::new(Vec::new()),
            stale: Mutex::new(None),
        }
    }

    /// Reads and follows the task's messages (with the gate held for
    /// writing): faults first-hand, forks as new spaces in `born`.
    fn handle_events(&self, born: &mut Vec<Space>, st: &mut Stats) -> Result<()> {
        let evs = match self.uffd.events() {
            Ok(Some(e)) => e,
            Ok(None) => {
                self.gone.store(true, Ordering::SeqCst);
                return Ok(());
            }
            Err(e) => return Err(self.fail("reading events", e)),
        };
        *lock(&self.stale) = None;
        let retry = std::mem::take(&mut *lock(&self.zero_later));
        for page in retry {
            self.zero(page)?;
        }
        for ev in evs {
            match ev {
                Event::Fault(addr) => {
                    let page = addr & !(PAGE - 1);
                    self.chunk.store(FIRST_CHUNK, Ordering::Relaxed);
                    let got = lock(&self.left).take_at(page, PAGE);
                    match got {
                        Some(iov) => st.on_fault += self.copy(iov)?,
                        None => {
                            self.zero(page)?;
                            st.zero_pages += 1;
                        }
                    }
                }
                Event::Fork(fd) => {
                    st.forks += 1;
                    let left = lock(&self.left).clone();
                    born.push(Space::new(
                        self.pid,
                        Uffd::adopt(fd),
                        left,
                        self.pages.clone(),
                    ));
                }
                Event::Remap { from, to, len } => {
                    st.remaps += 1;
                    let mut left = lock(&self.left);
                    st.moved += left.bytes_in(from, from.saturating_add(len));
                    left.remap(from, to, len);
                }
                Event::Remove { start, end } => {
                    st.removes += 1;
                    lock(&self.left).remove(start, end)
                }
                Event::Unmap { start, end } => {
                    st.unmaps += 1;
                    lock(&self.left).remove(start, end)
                }
            }
        }
        Ok(())
    }

    /// Copies the next chunk of what is left (with the gate held for
    /// reading), from the end for the event loop (`from_end`), from the
    /// start for helpers; the bytes copied, or None if nothing is left.
    fn background(&self, max: u64, from_end: bool) -> Result<Option<u64>> {
        let chunk = self.chunk.load(Ordering::Relaxed);
        let mut left = lock(&self.left);
        let got = match from_end {
            true => left.take_last(chunk.min(max)),
            false => left.take_next(chunk.min(max)),
        };
        drop(left);
        let Some(iov) = got else {
            return Ok(None);
        };
        self.chunk
            .store((chunk + FIRST_CHUNK).min(MAX_CHUNK), Ordering::Relaxed);
        self.copy(iov).map(Some)
    }

    /// Puts `iov`'s pages in; returns the bytes copied. A mapping
    /// changing meanwhile (EAGAIN), or gone from there (ENOENT: moved or
    /// unmapped, which the kernel reports before that a change is under
    /// way), puts the rest back for later, after the event that says
    /// how; a page already there (EEXIST) is skipped, and so is one whose
    /// mapping stayed gone with no event for [`STALE_MAX`]; an address
    /// space gone (ESRCH: a task that exited) ends the task.
    fn copy(&self, iov: Iov) -> Result<u64> {
        let data = self.pages.get(self.pid, iov.off, iov.len())?;
        let mut at = iov;
        let mut done = 0;
        while !at.is_empty() {
            let src = &data[(at.start - iov.start) as usize..];
            let step = match self.uffd.copy(at.start, src) {
                Ok(n) => {
                    let n = n.max(PAGE).min(at.len());
                    done += n;
                    n
                }
                Err(e) => match crate::sys::errno_of(&e) {
                    Some(libc::EAGAIN) => {
                        lock(&self.left).put_back(at);
                        return Ok(done);
                    }
                    Some(libc::ESRCH) => {
                        self.gone.store(true, Ordering::SeqCst);
                        return Ok(done);
                    }
                    Some(libc::ENOENT) if !self.stale_too_long() => {
                        lock(&self.left).put_back(at);
                        lock(&self.stale).get_or_insert_with(Instant::now);
                        return Ok(done);
                    }
                    Some(libc::ENOENT | libc::EEXIST) => PAGE,
                    _ => return Err(self.fail("copying pages in", e)),
                },
            };
            at = Iov {
                start: at.start + step,
                end: at.end,
                off: at.off + step,
            };
        }
        Ok(done)
    }

    /// Whether a copy found a range's mapping gone and the event that
    /// explains it has not been read yet.
    fn waits_for_event(&self) -> bool {
        lock(&self.stale).is_some_and(|t| t.elapsed() < STALE_MAX)
    }

    /// Whether a range's mapping has been gone for longer than an event
    /// takes to come.
    fn stale_too_long(&self) -> bool {
        lock(&self.stale).is_some_and(|t| t.elapsed() >= STALE_MAX)
    }

    fn zero(&self, page: u64) -> Result<()> {
        match self.uffd.zero(page, PAGE) {
            Ok(_) => Ok(()),
            Err(e) => match crate::sys::errno_of(&e) {
                Some(libc::EAGAIN) => {
                    lock(&self.zero_later).push(page);
                    Ok(())
                }
                Some(libc::ENOENT | libc::EEXIST | libc::ESRCH) => Ok(()),
                _ => Err(self.fail("mapping a zero page", e)),
            },
        }
    }

    fn fail(&self, what: &'static str, source: std::io::Error) -> Error {
        Error::Io {
            what: format!("lazy pages of pid {}: {what}", self.pid),
            source,
        }
    }
}
