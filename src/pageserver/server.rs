//! `crit page-server`: takes one dump's pages over TCP and writes them
//! as that dump would have (pagemap-ID.img and pages-N.img), CRIU's
//! protocol ([`super::wire`]), so that CRIU's dump can send to it too.
//!
//! What it writes is kept only if the dump closes the session (CLOSE):
//! every file is a temporary one until then, so a dump that fails or
//! dies leaves nothing half-written here. Pages ids start at 0x10001, as
//! CRIU's server numbers them, so that the server may share the dump's
//! images directory. A hole (PE_PARENT) must be covered by the parent
//! images (`--prev-images-dir`, a `parent` link as the dump makes).
//!
//! With `--lazy-pages` it serves instead: a lazy-pages daemon on another
//! machine asks for pages (GET: the task's pid in the images, an address
//! and a page count) and gets them from the images in its directory
//! (ADD_F with PE_PRESENT and the pages, fewer when the run ends
//! sooner), until CLOSE.
//!
//! With `--tls` the connection is TLS ([`super::tls`]): the dump's
//! certificate is checked once accepted, and pages pass through a
//! buffer instead of a splice.

use super::conn::Conn;
use super::error::PsError;
use super::tls::TlsOpts;
use super::wire::{self, Dst, Header, HEADER};
use crate::error::Result;
use crate::image::flags::{PE_PARENT, PE_PRESENT};
use crate::image::pb;
use crate::image::typed::{AtomicFile, ImageBuilder};
use crate::model::pagemap::{self as pm, Held, PAGE};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// `crit page-server`'s options.
pub struct ServerOpts {
    pub dir: PathBuf,
    /// Listen here (all IPv4 addresses by default).
    pub address: Option<String>,
    pub port: u16,
    /// Gets one zero byte once the server listens, then is closed.
    pub status_fd: Option<i32>,
    pub daemon: bool,
    pub pidfile: Option<PathBuf>,
    /// The parent images, linked from the images directory as `parent`.
    pub prev_images_dir: Option<PathBuf>,
    /// Serve the pages of the images to a lazy-pages daemon.
    pub lazy: bool,
    /// `-o`: the server's messages once it listens (see crate::detach).
    pub log_file: Option<PathBuf>,
    /// `--tls` and its files.
    pub tls: Option<TlsOpts>,
}

/// The first pages id the server gives (CRIU's page server's base).
const FIRST_PAGES_ID: u32 = 0x10001;

/// Listens, takes one connection and serves it to its end.
pub fn run(opts: &ServerOpts) -> Result<()> {
    // A lazy server only reads its directory; a receiving one makes it,
    // once it listens: a server that cannot leaves no directory behind.
    let source = match opts.lazy {
        true => Some(super::lazy::Source::open(&opts.dir)?),
        false => None,
    };
    // As CRIU's server: the dump's certificate must name the address
    // this server was told to listen on, if it was told one.
    let tls = opts
        .tls
        .as_ref()
        .map(|t| t.server_config(opts.address.as_deref()))
        .transpose()?;
    let addr = opts.address.clone().unwrap_or_else(|| "0.0.0.0".into());
    let listener =
        TcpListener::bind((addr.as_str(), opts.port)).map_err(|source| PsError::Listen {
            addr: addr.clone(),
            port: opts.port,
            source,
        })?;
    let made = match opts.lazy {
        true => None,
        false => prepare_dir(opts)?,
    };
    let ready = crate::detach::ready(&crate::detach::Ready {
        daemon: opts.daemon,
        pidfile: opts.pidfile.as_deref(),
        status_fd: opts.status_fd,
        log_file: opts.log_file.as_deref(),
    });
    if let Err(e) = ready {
        // Its -o or pidfile failed: a server that never served leaves
        // no -D either (a daemon's caller waits for this process's end).
        if let Some(top) = made {
            let _ = std::fs::remove_dir_all(top);
        }
        return Err(e);
    }
    let (sock, peer) = listener.accept().map_err(|source| PsError::Listen {
        addr,
        port: opts.port,
        source,
    })?;
    drop(listener);
    let peer = peer.to_string();
    let conn = match tls {
        Some(cfg) => Conn::accept_tls(sock, cfg, &peer, &|| Ok(())),
        None => Ok(Conn::plain(sock)),
    };
    // A failed handshake keeps nothing either.
    let conn = conn.inspect_err(|_| {
        if let Some(top) = &made {
            let _ = std::fs::remove_dir_all(top);
        }
    })?;
    match source {
        Some(source) => source.serve(conn, peer).map(|_| ()),
        None => Session::new(&opts.dir, peer)?.serve(conn),
    }
}

/// Makes the images directory (private) and its `parent` link. Returns
/// the topmost directory it made, if any (removed if the server cannot
/// start after all).
fn prepare_dir(opts: &ServerOpts) -> Result<Option<PathBuf>> {
    let dir = &opts.dir;
    let made = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .last()
        .map(Path::to_path_buf);
    crate::image::typed::create_images_dir(dir).map_err(|source| PsError::File {
        path: dir.clone(),
        what: "create images directory",
        source,
    })?;
    if let Some(prev) = &opts.prev_images_dir {
        let link = dir.join("parent");
        if std::fs::read_link(&link).ok().as_deref() != Some(prev.as_path()) {
            if let Err(source) = std::os::unix::fs::symlink(prev, &link) {
                if let Some(top) = &made {
                    let _ = std::fs::remove_dir_all(top);
                }
                return Err(PsError::File {
                    path: link,
                    what: "link to the previous images",
                    source,
                }
                .into());
            }
        }
    }
    Ok(made)
}

/// One pagemap being received.
struct Open {
    dst: Dst,
    pagemap: ImageBuilder,
    pages: AtomicFile,
    pages_len: u64,
    /// What the parent images hold of this pagemap (None: no parent).
    parent: Option<Vec<(u64, u64)>>,
}

struct Session {
    dir: PathBuf,
    peer: String,
    next_pages_id: u32,
    cur: Option<Open>,
    /// Received, kept once the session closes.
    done: Vec<Open>,
    /// Socket to file: the pages pass through here (splice, one copy).
    pipe: (OwnedFd, OwnedFd),
    pipe_size: usize,
    /// Bytes read from the connection (for errors).
    offset: u64,
}

impl Session {
    fn new(dir: &Path, peer: String) -> Result<Session> {
        let pipe = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| PsError::Io {
            peer: peer.clone(),
            what: "pipe",
            source: e.into(),
        })?;
        let want = crate::dump::vmsplice::PIPE_BYTES as i32;
        let pipe_size = nix::fcntl::fcntl(&pipe.0, nix::fcntl::FcntlArg::F_SETPIPE_SZ(want))
            .or_else(|_| nix::fcntl::fcntl(&pipe.0, nix::fcntl::FcntlArg::F_GETPIPE_SZ))
            .unwrap_or(65536)
            .max(4096) as usize;
        Ok(Session {
            dir: dir.to_path_buf(),
            peer,
            next_pages_id: FIRST_PAGES_ID,
            cur: None,
            done: Vec::new(),
            pipe,
            pipe_size,
            offset: 0,
        })
    }

    fn bad(&self, why: String) -> PsError {
        PsError::Protocol {
            peer: self.peer.clone(),
            offset: self.offset,
            why,
        }
    }

    fn io(&self, what: &'static str) -> impl Fn(std::io::Error) -> PsError + '_ {
        move |source| PsError::Io {
            peer: self.peer.clone(),
            what,
            source,
        }
    }

    /// Commands until CLOSE, then the end of the connection.
    fn serve(mut self, mut sock: Conn) -> Result<()> {
        let _ = sock.sock().set_nodelay(true);
        loop {
            let mut b = [0u8; HEADER];
            match read_full(&mut sock, &mut b).map_err(self.io("reading a command"))? {
                0 => return Err(PsError::NotFlushed { peer: self.peer }.into()),
                HEADER => {}
                _ => {
                    return Err(self
                        .bad("the connection ended inside a command".into())
                        .into())
                }
            }
            let h = Header::from_bytes(&b);
            self.offset += HEADER as u64;
            match h.cmd {
                wire::OPEN2 | wire::OPEN => {
                    let has_parent = self.open(self.dst(&h)?)?;
                    if h.cmd == wire::OPEN2 {
                        sock.write_all(&[u8::from(has_parent)])
                            .map_err(self.io("answering OPEN2"))?;
                    }
                }
                wire::PARENT => {
                    let dst = self.dst(&h)?;
                    let has = i32::from(self.parent_pagemap(dst).is_file());
                    sock.write_all(&has.to_ne_bytes())
                        .map_err(self.io("answering PARENT"))?;
                }
                wire::ADD_F | wire::ADD | wire::HOLE => {
                    let flags = match h.cmd {
                        wire::ADD_F => h.flags,
                        wire::ADD => PE_PRESENT,
                        _ => PE_PARENT,
                    };
                    self.add(&mut sock, &h, flags)?;
                }
                wire::CLOSE | wire::FORCE_CLOSE => return self.close(sock),
                wire::GET => {
                    return Err(PsError::Unsupported {
                        what: "lazy pages (GET)",
                    }
                    .into())
                }
                c => return Err(self.bad(format!("unknown command {c:#x}")).into()),
            }
        }
    }

    fn dst(&self, h: &Header) -> Result<Dst> {
        Ok(Dst::decode(h.dst_id)
            .ok_or_else(|| self.bad(format!("unknown pagemap id {:#x}", h.dst_id)))?)
    }

    fn parent_pagemap(&self, dst: Dst) -> PathBuf {
        self.dir.join("parent").join(dst.pagemap_name())
    }

    /// Starts pagemap `dst`; returns whether the parent images hold it.
    fn open(&mut self, dst: Dst) -> Result<bool> {
        if let Some(o) = self.cur.take() {
            self.done.push(o);
        }
        let pages_id = self.next_pages_id;
        self.next_pages_id += 1;
        let mut pagemap = ImageBuilder::new("PAGEMAP")?;
        pagemap.entry(&pb::PagemapHead { pages_id });
        let pages = AtomicFile::create(&self.dir.join(format!("pages-{pages_id}.img")))?;
        let parent = self.parent_ranges(dst)?;
        let has = parent.is_some();
        self.cur = Some(Open {
            dst,
            pagemap,
            pages,
            pages_len: 0,
            parent,
        });
        Ok(has)
    }

    /// The address ranges the parent images hold of `dst` (themselves or
    /// through their own parents), if there is a parent pagemap.
    fn parent_ranges(&self, dst: Dst) -> Result<Option<Vec<(u64, u64)>>> {
        let parent = self.dir.join("parent");
        if !self.parent_pagemap(dst).is_file() {
            return Ok(None);
        }
        let images = crate::image::store::Images::open(&parent)?;
        let (_, entries) = images.pagemap(&dst.pagemap_name())?;
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut runs = pm::runs(&entries);
        runs.sort_by_key(|r| r.vaddr);
        for r in runs {
            if matches!(r.held, Held::Here(_) | Held::Parent) {
                match out.last_mut() {
                    Some(l) if l.1 >= r.vaddr => l.1 = l.1.max(r.end()),
                    _ => out.push((r.vaddr, r.end())),
                }
            }
        }
        Ok(Some(out))
    }

    /// One pagemap entry, and its pages if they are present.
    fn add(&mut self, sock: &mut Conn, h: &Header, flags: u32) -> Result<()> {
        let dst = self.dst(h)?;
        if self.cur.as_ref().is_none_or(|o| o.dst != dst) {
            // Old CRIUs send without opening first.
            self.open(dst)?;
        }
        let len = h
            .nr_pages
            .checked_mul(PAGE)
            .filter(|l| h.vaddr.checked_add(*l).is_some())
            .ok_or_else(|| self.bad(format!("{} pages at {:#x}", h.nr_pages, h.vaddr)))?;
        let end = h.vaddr + len;
        if flags & PE_PARENT != 0 {
            let covered = match self.cur.as_ref().and_then(|o| o.parent.as_ref()) {
                Some(held) => covers(held, h.vaddr, end),
                None => false,
            };
            if !covered {
                let why = format!(
                    "{}: pages {:#x}-{end:#x} are left to the parent images, which do not hold them",
                    dst.pagemap_name(),
                    h.vaddr
                );
                return Err(self.bad(why).into());
            }
        }
        let Some(o) = self.cur.as_mut() else {
            return Err(self.bad("no pagemap open".into()).into());
        };
        o.pagemap.entry(&pb::PagemapEntry {
            vaddr: h.vaddr,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(flags),
            nr_pages: Some(h.nr_pages),
        });
        if flags & PE_PRESENT != 0 {
            self.receive(sock, len)?;
        }
        Ok(())
    }

    /// Moves `len` bytes of pages from the connection to the end of the
    /// open pages file.
    fn receive(&mut self, sock: &mut Conn, len: u64) -> Result<()> {
        let mut left = len;
        while left > 0 {
            let chunk = left.min(self.pipe_size as u64) as usize;
            let n = sock
                .recv_to_pipe(&self.pipe.1, chunk)
                .map_err(self.io("receiving pages"))?;
            if n == 0 {
                return Err(self
                    .bad(format!("the connection ended {left} bytes into pages"))
                    .into());
            }
            let o = self.cur.as_mut().ok_or_else(|| PsError::NotFlushed {
                peer: self.peer.clone(),
            })?;
            o.pages.splice_at(&self.pipe.0, o.pages_len, n)?;
            o.pages_len += n as u64;
            self.offset += n as u64;
            left -= n as u64;
        }
        Ok(())
    }

    /// CLOSE: keep every pagemap and pages file, answer, and wait for
    /// the dump to hang up.
    fn close(mut self, mut sock: Conn) -> Result<()> {
        if let Some(o) = self.cur.take() {
            self.done.push(o);
        }
        let (pagemaps, mut bytes) = (self.done.len(), 0);
        for o in std::mem::take(&mut self.done) {
            bytes += o.pages_len;
            o.pages.commit()?;
            let name = self.dir.join(o.dst.pagemap_name());
            crate::image::typed::write_atomic(&name, &o.pagemap.bytes)?;
        }
        sock.write_all(&0i32.to_ne_bytes())
            .map_err(self.io("answering CLOSE"))?;
        sock.bye();
        let mut b = [0u8; 1];
        match sock.read(&mut b) {
            Ok(0) | Err(_) => {
                crate::detach::say(&format!(
                    "crit: page server: kept {pagemaps} pagemap(s) and {:.1} MiB of pages from {} in {}",
                    bytes as f64 / (1 << 20) as f64,
                    self.peer,
                    self.dir.display()
                ));
                Ok(())
            }
            Ok(_) => Err(self.bad("data after CLOSE".into()).into()),
        }
    }
}

/// Whether the sorted, merged `held` ranges cover [start, end).
fn covers(held: &[(u64, u64)], start: u64, end: u64) -> bool {
    let i = held.partition_point(|r| r.1 <= start);
    held.get(i).is_some_and(|&(s, e)| s <= start && e >= end)
}

/// Reads until `b` is full or the connection ends; returns what it got.
pub fn read_full(sock: &mut impl Read, b: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < b.len() {
        match sock.read(&mut b[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn a_hole_must_lie_inside_one_held_range() {
        let held = [(0x1000, 0x5000), (0x8000, 0x9000)];
        assert!(covers(&held, 0x1000, 0x5000));
        assert!(covers(&held, 0x2000, 0x3000));
        assert!(!covers(&held, 0x4000, 0x6000));
        assert!(!covers(&held, 0x6000, 0x7000));
        assert!(covers(&held, 0x8000, 0x9000));
        assert!(!covers(&[], 0, 0x1000));
    }
}
