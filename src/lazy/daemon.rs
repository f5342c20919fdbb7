//! `crit lazy-pages`: serves the memory of a tree restored with
//! `restore --lazy-pages` from the images, on demand then in the
//! background, through the userfaultfds the restore hands over
//! ([`super::handover`]).
//!
//! Each task's lazy pages (PE_LAZY entries of its pagemap whose pages
//! the images hold) are cut at mapping edges ([`super::iovs`]). A fault
//! is served first, with the page it asks for; between faults the rest
//! goes in in growing chunks (64 KiB up to 4 MiB, as CRIU's daemon), one
//! task after another. A fault on a page the dump did not hold gets a
//! zero page. Forks (the child's descriptor and a copy of what is left),
//! mremap, munmap, madvise(DONTNEED) and exits are followed. Once the
//! restore says it is done and every page is in, the daemon closes the
//! descriptors (which drops every registration) and exits 0.

use super::handover::{self, Received, RESTORE_FINISHED};
use super::iovs::{Iov, Iovs};
use crate::error::{Error, Result};
use crate::image::pb;
use crate::image::typed::Mapped;
use crate::model::pagemap::{self as pm, Held, PAGE};
use crate::sys::uffd::{Event, Uffd};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `crit lazy-pages`'s options.
pub struct DaemonOpts {
    pub dir: PathBuf,
    pub daemon: bool,
    pub pidfile: Option<PathBuf>,
    /// Gets one zero byte once the daemon listens, then is closed.
    pub status_fd: Option<i32>,
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
const MAX_CHUNK: u64 = 4 << 20;

/// One address space being filled.
struct Space {
    pid: i32,
    /// The task exited (its address space is gone).
    gone: bool,
    uffd: Uffd,
    left: Iovs,
    pages: Arc<Mapped>,
    chunk: u64,
}

fn err<'a>(path: &'a Path, what: &'static str) -> impl Fn(std::io::Error) -> Error + 'a {
    move |source| Error::FileOp {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Listens, takes the restore's descriptors and serves them to the end.
pub fn run(opts: &DaemonOpts) -> Result<()> {
    let tasks =
        crate::image::typed::read_all::<pb::PstreeEntry>(&opts.dir.join("pstree.img"), "PSTREE")?;
    let path = opts.dir.join(handover::SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(err(&path, "listening"))?;
    if let Some(fd) = opts.status_fd {
        crate::pageserver::server::tell_listening(fd)?;
    }
    if opts.daemon {
        nix::unistd::daemon(true, false).map_err(|e| err(&path, "daemon")(e.into()))?;
    }
    if let Some(p) = &opts.pidfile {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .map_err(err(p, "writing the pidfile"))?;
    }
    let (mut sock, _) = listener
        .accept()
        .map_err(err(&path, "accepting the restore"))?;
    drop(listener);
    let _ = std::fs::remove_file(&path);
    let mut spaces = Vec::new();
    for _ in &tasks {
        if let Received::Task { pid, uffd } = handover::receive(&mut sock, &path)? {
            spaces.push(open_space(&opts.dir, pid, Uffd::adopt(uffd))?);
        }
    }
    let mut st = Stats {
        tasks: spaces.len(),
        ..Default::default()
    };
    let t = std::time::Instant::now();
    serve(spaces, sock, &path, &mut st)?;
    eprintln!("crit: {st}, in {:.3} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// The lazy pages of task `pid` in the images of `dir`.
fn open_space(dir: &Path, pid: i32, uffd: Uffd) -> Result<Space> {
    let images = crate::image::store::Images::open(dir)?;
    let (pages_id, entries) = images.pagemap(&format!("pagemap-{pid}.img"))?;
    let mm: pb::MmEntry = crate::image::typed::read_one(&dir.join(format!("mm-{pid}.img")), "MM")?;
    let mut vmas: Vec<(u64, u64)> = mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    vmas.sort_unstable();
    let lazy: Vec<(u64, u64, u64)> = pm::lazy_here(&entries)
        .iter()
        .filter_map(|r| match r.held {
            Held::Here(off) => Some((r.vaddr, r.bytes(), off)),
            _ => None,
        })
        .collect();
    let pages = Mapped::open(&dir.join(format!("pages-{pages_id}.img")))?;
    Ok(Space {
        pid,
        gone: false,
        uffd,
        left: Iovs::new(&lazy, &vmas),
        pages: Arc::new(pages),
        chunk: FIRST_CHUNK,
    })
}

/// The event loop: faults and events first, the background copy when
/// nothing waits.
fn serve(mut spaces: Vec<Space>, mut sock: UnixStream, path: &Path, st: &mut Stats) -> Result<()> {
    let mut finished = false;
    let mut sock_open = true;
    let mut turn = 0usize;
    loop {
        spaces.retain(|s| !s.gone);
        let pending = spaces.iter().any(|s| !s.left.is_empty());
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
            let timeout = if pending {
                PollTimeout::ZERO
            } else {
                PollTimeout::NONE
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
                Some(()) => finished = true,
                None => sock_open = false,
            }
        }
        let mut born = Vec::new();
        let mut busy = false;
        for (s, _) in spaces.iter_mut().zip(ready).filter(|(_, r)| *r) {
            busy = true;
            s.handle_events(&mut born, st)?;
        }
        spaces.extend(born);
        if !busy && pending {
            // One chunk for the next task with pages left.
            let n = spaces.len();
            for k in 0..n {
                let s = &mut spaces[(turn + k) % n];
                if s.background(st)? {
                    turn = (turn + k + 1) % n;
                    break;
                }
            }
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
    fn handle_events(&mut self, born: &mut Vec<Space>, st: &mut Stats) -> Result<()> {
        let evs = match self.uffd.events() {
            Ok(Some(e)) => e,
            Ok(None) => {
                self.gone = true;
                return Ok(());
            }
            Err(e) => return Err(self.fail("reading events", e)),
        };
        for ev in evs {
            match ev {
                Event::Fault(addr) => {
                    let page = addr & !(PAGE - 1);
                    self.chunk = FIRST_CHUNK;
                    match self.left.take_at(page, PAGE) {
                        Some(iov) => st.on_fault += self.copy(iov)?,
                        None => {
                            self.zero(page)?;
                            st.zero_pages += 1;
                        }
                    }
                }
                Event::Fork(fd) => {
                    st.forks += 1;
                    born.push(Space {
                        pid: self.pid,
                        gone: false,
                        uffd: Uffd::adopt(fd),
                        left: self.left.clone(),
                        pages: self.pages.clone(),
                        chunk: FIRST_CHUNK,
                    })
                }
                Event::Remap { from, to, len } => {
                    st.remaps += 1;
                    st.moved += self.left.bytes_in(from, from.saturating_add(len));
                    self.left.remap(from, to, len);
                }
                Event::Remove { start, end } => {
                    st.removes += 1;
                    self.left.remove(start, end)
                }
                Event::Unmap { start, end } => {
                    st.unmaps += 1;
                    self.left.remove(start, end)
                }
            }
        }
        Ok(())
    }

    /// Copies the next chunk of what is left; false if nothing is.
    fn background(&mut self, st: &mut Stats) -> Result<bool> {
        let Some(iov) = self.left.take_next(self.chunk) else {
            return Ok(false);
        };
        self.chunk = (self.chunk + FIRST_CHUNK).min(MAX_CHUNK);
        st.background += self.copy(iov)?;
        Ok(true)
    }

    /// Puts `iov`'s pages in. A mapping changing meanwhile (EAGAIN) puts
    /// the rest back for later, after the event that says how; one gone
    /// (ENOENT) or pages already there (EEXIST) end the copy.
    fn copy(&mut self, iov: Iov) -> Result<u64> {
        let data = self.pages.bytes();
        let mut at = iov;
        let mut done = 0;
        while !at.is_empty() {
            let src = data
                .get(at.off as usize..(at.off + at.len()) as usize)
                .ok_or_else(|| {
                    self.fail(
                        "reading pages",
                        std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                    )
                })?;
            match self.uffd.copy(at.start, src) {
                Ok(n) => {
                    let n = n.max(PAGE).min(at.len());
                    done += n;
                    at = Iov {
                        start: at.start + n,
                        end: at.end,
                        off: at.off + n,
                    };
                }
                Err(e) => match crate::sys::errno_of(&e) {
                    Some(libc::EAGAIN) => {
                        self.left.put_back(at);
                        return Ok(done);
                    }
                    // The address space is gone (a child that exited).
                    Some(libc::ESRCH) => {
                        self.gone = true;
                        return Ok(done);
                    }
                    Some(libc::ENOENT | libc::EEXIST) => {
                        // Skip one page: the rest may still be wanted.
                        at.start += PAGE;
                        at.off += PAGE;
                    }
                    _ => return Err(self.fail("copying pages in", e)),
                },
            }
        }
        Ok(done)
    }

    fn zero(&mut self, page: u64) -> Result<()> {
        match self.uffd.zero(page, PAGE) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    crate::sys::errno_of(&e),
                    Some(libc::EAGAIN | libc::ENOENT | libc::EEXIST | libc::ESRCH)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(self.fail("mapping a zero page", e)),
        }
    }

    fn fail(&self, what: &'static str, source: std::io::Error) -> Error {
        Error::Io {
            what: format!("lazy pages of pid {}: {what}", self.pid),
            source,
        }
    }
}
