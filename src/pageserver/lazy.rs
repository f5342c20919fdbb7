//! Pages for post-copy over the network: `page-server --lazy-pages`
//! answers GET commands from the images in its directory, and `dump
//! --lazy-pages` from the memory of the tree it keeps frozen ([`Source`]);
//! a lazy-pages daemon on another machine asks with a [`Fetcher`].

use super::conn::Conn;
use super::error::PsError;
use super::server::read_full;
use super::tls::TlsOpts;
use super::wire::{self, Header, HEADER};
use crate::error::Result;
use crate::image::flags::PE_PRESENT;
use crate::image::pb;
use crate::image::typed::Mapped;
use crate::model::pagemap::{self as pm, Held, PAGE};
use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Mutex;

/// Where one task's served pages are.
enum From {
    /// A pages image: each run's pages from its offset there.
    Image(Mapped),
    /// The memory of a frozen task (its pid here).
    Memory(i32),
}

/// One task's pages: the runs it serves (address, bytes, offset in the
/// image) and where they are.
struct TaskPages {
    runs: Vec<(u64, u64, u64)>,
    from: From,
}

/// The pages to serve, by task (its pid in the images).
pub struct Source {
    pages: std::collections::HashMap<u64, TaskPages>,
}

/// A frozen task whose lazy pages a dump left in its memory.
pub struct FrozenPages {
    /// Its pid in the images (what a daemon asks for).
    pub vpid: u64,
    /// Its pid here.
    pub pid: i32,
    /// The runs left to serve: (address, bytes), in address order.
    pub runs: Vec<(u64, u64)>,
}

impl Source {
    /// Reads the tree and pagemaps of `dir`, so that a directory without
    /// images fails before the server listens.
    pub fn open(dir: &Path) -> Result<Source> {
        let tasks =
            crate::image::typed::read_all::<pb::PstreeEntry>(&dir.join("pstree.img"), "PSTREE")?;
        let images = crate::image::store::Images::open(dir)?;
        let mut pages = std::collections::HashMap::new();
        for t in &tasks {
            let name = format!("pagemap-{}.img", t.pid);
            if !images.exists(&name) {
                continue;
            }
            let (id, entries) = images.pagemap(&name)?;
            let runs = pm::runs(&entries)
                .iter()
                .filter_map(|r| match r.held {
                    Held::Here(off) => Some((r.vaddr, r.bytes(), off)),
                    _ => None,
                })
                .collect();
            let file = Mapped::open(&dir.join(format!("pages-{id}.img")))?;
            let from = From::Image(file);
            pages.insert(u64::from(t.pid), TaskPages { runs, from });
        }
        Ok(Source { pages })
    }

    /// The lazy pages `dump --lazy-pages` left in its frozen tasks.
    pub fn of_frozen(tasks: Vec<FrozenPages>) -> Source {
        let pages = tasks
            .into_iter()
            .map(|t| {
                let runs = t.runs.iter().map(|&(a, n)| (a, n, 0)).collect();
                let from = From::Memory(t.pid);
                (t.vpid, TaskPages { runs, from })
            })
            .collect();
        Source { pages }
    }

    /// Answers GETs until CLOSE (or the end of the connection); true if
    /// the daemon said CLOSE (it has every page it wanted).
    pub fn serve(&self, conn: Conn, peer: String) -> Result<bool> {
        self.serve_watched(conn, peer, &|| Ok(()))
    }

    /// [`Source::serve`], calling `watch` at least every 200 ms while it
    /// waits for a command; its error ends the session (a dump whose
    /// caller went away lets its tree go).
    pub fn serve_watched(
        &self,
        mut sock: Conn,
        peer: String,
        watch: &dyn Fn() -> Result<()>,
    ) -> Result<bool> {
        let _ = sock.sock().set_nodelay(true);
        let pages = &self.pages;
        let bad = |offset: u64, why: String| PsError::Protocol {
            peer: peer.clone(),
            offset,
            why,
        };
        let io = |what: &'static str| {
            let peer = peer.clone();
            move |source| PsError::Io { peer, what, source }
        };
        let mut offset = 0u64;
        let mut sent = 0u64;
        let said = |sent: u64| {
            crate::detach::say(&format!("crit: page server: sent {sent} page(s) to {peer}"))
        };
        loop {
            sock.wait_readable(watch)
                .map_err(io("waiting for a command"))??;
            let mut b = [0u8; HEADER];
            match read_full(&mut sock, &mut b).map_err(io("reading a command"))? {
                0 => {
                    said(sent);
                    return Ok(false);
                }
                HEADER => {}
                _ => return Err(bad(offset, "the connection ended inside a command".into()).into()),
            }
            let h = Header::from_bytes(&b);
            match h.cmd {
                wire::GET if h.nr_pages == 0 || h.vaddr % PAGE != 0 => {
                    let what = match h.nr_pages {
                        0 => format!("pid {}: a GET of 0 pages at {:#x}", h.dst_id, h.vaddr),
                        _ => format!(
                            "pid {}: a GET at {:#x}, not a page's start",
                            h.dst_id, h.vaddr
                        ),
                    };
                    return Err(bad(offset, what).into());
                }
                wire::GET => {
                    let t = pages
                        .get(&h.dst_id)
                        .ok_or_else(|| bad(offset, format!("no pages of pid {}", h.dst_id)))?;
                    let (n, data) = t
                        .get(h.vaddr, h.nr_pages)
                        .map_err(|source| PsError::Io {
                            peer: peer.clone(),
                            what: "reading the frozen task's pages",
                            source,
                        })?
                        .ok_or_else(|| {
                            bad(
                                offset,
                                format!("pid {}: no pages at {:#x}", h.dst_id, h.vaddr),
                            )
                        })?;
                    let reply = Header {
                        cmd: wire::ADD_F,
                        flags: PE_PRESENT,
                        nr_pages: n,
                        ..h
                    };
                    sock.write_all(&reply.to_bytes())
                        .map_err(io("answering GET"))?;
                    sock.write_all(&data).map_err(io("sending pages"))?;
                    sent += n;
                }
                wire::CLOSE | wire::FORCE_CLOSE => {
                    sock.write_all(&0i32.to_ne_bytes())
                        .map_err(io("answering CLOSE"))?;
                    sock.bye();
                    said(sent);
                    return Ok(true);
                }
                c => {
                    return Err(bad(offset, format!("command {c:#x} to a lazy page server")).into())
                }
            }
            offset += HEADER as u64;
        }
    }
}

/// Waits until `fd` can be read (or has hung up), calling `watch` every
/// 200 ms meanwhile; `watch`'s error is returned inside.
pub fn wait_readable(
    fd: &impl std::os::fd::AsFd,
    watch: &dyn Fn() -> Result<()>,
) -> std::io::Result<Result<()>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut p, PollTimeout::from(200u16)) {
            Ok(0) => {}
            Ok(_) => return Ok(Ok(())),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if let Err(e) = watch() {
            return Ok(Err(e));
        }
    }
}

impl TaskPages {
    /// Up to `nr` pages from `vaddr`, as far as one run holds them.
    fn get(&self, vaddr: u64, nr: u64) -> std::io::Result<Option<(u64, Cow<'_, [u8]>)>> {
        let i = self.runs.partition_point(|r| r.0 + r.1 <= vaddr);
        let Some(&(start, len, off)) = self.runs.get(i) else {
            return Ok(None);
        };
        // Pages only: a daemon asks from a page's start.
        if vaddr < start || nr == 0 || vaddr % PAGE != 0 {
            return Ok(None);
        }
        let n = nr.min((start + len - vaddr) / PAGE);
        let bytes = (n * PAGE) as usize;
        match &self.from {
            From::Image(file) => {
                let from = (off + vaddr - start) as usize;
                Ok(file
                    .bytes()
                    .get(from..from + bytes)
                    .map(|d| (n, Cow::Borrowed(d))))
            }
            From::Memory(pid) => {
                let mut buf = vec![0u8; bytes];
                // /proc/PID/mem also reads pages the task may not read
                // itself (PROT_NONE), as the dump did.
                crate::sys::remote::read_exact(*pid, vaddr, &mut buf)
                    .or_else(|_| crate::sys::remote::mem_read(*pid, vaddr, &mut buf))?;
                Ok(Some((n, Cow::Owned(buf))))
            }
        }
    }
}

/// A lazy-pages daemon's connection to a `page-server --lazy-pages`.
pub struct Fetcher {
    sock: Mutex<Conn>,
    peer: String,
}

impl Fetcher {
    /// Connects (and with `tls` shakes hands) before the daemon listens.
    pub fn connect(addr: &str, port: u16, tls: Option<&TlsOpts>) -> Result<Fetcher> {
        let cfg = tls.map(|t| t.client_config(addr)).transpose()?;
        let peer = format!("{addr}:{port}");
        let sock = TcpStream::connect((addr, port)).map_err(|source| PsError::Connect {
            peer: peer.clone(),
            source,
        })?;
        let _ = sock.set_nodelay(true);
        let conn = match cfg {
            Some(cfg) => Conn::connect_tls(sock, cfg, addr, &peer, &|| Ok(()))?,
            None => Conn::plain(sock),
        };
        Ok(Fetcher {
            sock: Mutex::new(conn),
            peer,
        })
    }

    fn io(&self, what: &'static str) -> impl Fn(std::io::Error) -> PsError + '_ {
        move |source| match crate::lazy::handover::is_closed(&source) {
            true => PsError::Closed {
                peer: self.peer.clone(),
                what,
            },
            false => PsError::Io {
                peer: self.peer.clone(),
                what,
                source,
            },
        }
    }

    /// `len` bytes of task `pid`'s pages from address `vaddr` (in the
    /// images), asked for as often as the server's runs end sooner.
    pub fn get(&self, pid: u64, vaddr: u64, len: u64) -> Result<Vec<u8>> {
        let mut out = vec![0u8; len as usize];
        let mut at = 0u64;
        let mut sock = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        while at < len {
            let ask = Header {
                cmd: wire::GET,
                flags: 0,
                nr_pages: (len - at) / PAGE,
                vaddr: vaddr + at,
                dst_id: pid,
            };
            sock.write_all(&ask.to_bytes())
                .map_err(self.io("asking for pages"))?;
            let mut b = [0u8; HEADER];
            sock.read_exact(&mut b)
                .map_err(self.io("reading the answer to GET"))?;
            let h = Header::from_bytes(&b);
            let n = h.nr_pages.saturating_mul(PAGE);
            if h.cmd != wire::ADD_F || h.vaddr != vaddr + at || n == 0 || n > len - at {
                return Err(PsError::Protocol {
                    peer: self.peer.clone(),
                    offset: 0,
                    why: format!("a GET of {:#x} answered with {h:?}", vaddr + at),
                }
                .into());
            }
            let dst = &mut out[at as usize..(at + n) as usize];
            sock.read_exact(dst).map_err(self.io("reading pages"))?;
            at += n;
        }
        Ok(out)
    }

    /// Ends the session as CRIU's daemon does (CLOSE, then its status).
    pub fn close(&self) -> Result<()> {
        let mut sock = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        sock.write_all(&Header::new(wire::CLOSE, None).to_bytes())
            .map_err(self.io("sending CLOSE"))?;
        let mut b = [0u8; 4];
        sock.read_exact(&mut b)
            .map_err(self.io("reading the answer to CLOSE"))?;
        sock.bye();
        Ok(())
    }
}
