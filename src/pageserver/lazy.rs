//! Pages for post-copy over the network: `page-server --lazy-pages`
//! answers GET commands from the images in its directory ([`serve`]), and
//! a lazy-pages daemon on another machine asks with a [`Fetcher`].

use super::error::PsError;
use super::server::{read_full, send_all};
use super::wire::{self, Header, HEADER};
use crate::error::Result;
use crate::image::flags::PE_PRESENT;
use crate::image::pb;
use crate::image::typed::Mapped;
use crate::model::pagemap::{self as pm, Held, PAGE};
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Mutex;

/// One task's pages: its present runs (address, bytes, offset) and file.
struct TaskPages {
    runs: Vec<(u64, u64, u64)>,
    file: Mapped,
}

/// The pages of an images directory, by task, ready to be served.
pub struct Source {
    pages: std::collections::HashMap<u64, TaskPages>,
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
            pages.insert(u64::from(t.pid), TaskPages { runs, file });
        }
        Ok(Source { pages })
    }

    /// Answers GETs until CLOSE (or the end of the connection).
    pub fn serve(&self, mut sock: TcpStream, peer: String) -> Result<()> {
        let _ = sock.set_nodelay(true);
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
            let mut b = [0u8; HEADER];
            match read_full(&mut sock, &mut b).map_err(io("reading a command"))? {
                0 => {
                    said(sent);
                    return Ok(());
                }
                HEADER => {}
                _ => return Err(bad(offset, "the connection ended inside a command".into()).into()),
            }
            let h = Header::from_bytes(&b);
            match h.cmd {
                wire::GET => {
                    let t = pages
                        .get(&h.dst_id)
                        .ok_or_else(|| bad(offset, format!("no pages of pid {}", h.dst_id)))?;
                    let (n, data) = t.get(h.vaddr, h.nr_pages).ok_or_else(|| {
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
                    send_all(&sock, &reply.to_bytes()).map_err(io("answering GET"))?;
                    send_all(&sock, data).map_err(io("sending pages"))?;
                    sent += n;
                }
                wire::CLOSE | wire::FORCE_CLOSE => {
                    send_all(&sock, &0i32.to_ne_bytes()).map_err(io("answering CLOSE"))?;
                    said(sent);
                    return Ok(());
                }
                c => {
                    return Err(bad(offset, format!("command {c:#x} to a lazy page server")).into())
                }
            }
            offset += HEADER as u64;
        }
    }
}

impl TaskPages {
    /// Up to `nr` pages from `vaddr`, as far as one run holds them.
    fn get(&self, vaddr: u64, nr: u64) -> Option<(u64, &[u8])> {
        let i = self.runs.partition_point(|r| r.0 + r.1 <= vaddr);
        let &(start, len, off) = self.runs.get(i)?;
        if vaddr < start || nr == 0 {
            return None;
        }
        let n = nr.min((start + len - vaddr) / PAGE);
        let from = (off + vaddr - start) as usize;
        let data = self.file.bytes().get(from..from + (n * PAGE) as usize)?;
        Some((n, data))
    }
}

/// A lazy-pages daemon's connection to a `page-server --lazy-pages`.
pub struct Fetcher {
    sock: Mutex<TcpStream>,
    peer: String,
}

impl Fetcher {
    pub fn connect(addr: &str, port: u16) -> Result<Fetcher> {
        let peer = format!("{addr}:{port}");
        let sock = TcpStream::connect((addr, port)).map_err(|source| PsError::Connect {
            peer: peer.clone(),
            source,
        })?;
        let _ = sock.set_nodelay(true);
        Ok(Fetcher {
            sock: Mutex::new(sock),
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
            send_all(&sock, &ask.to_bytes()).map_err(self.io("asking for pages"))?;
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
        send_all(&sock, &Header::new(wire::CLOSE, None).to_bytes())
            .map_err(self.io("sending CLOSE"))?;
        let mut b = [0u8; 4];
        sock.read_exact(&mut b)
            .map_err(self.io("reading the answer to CLOSE"))?;
        Ok(())
    }
}
