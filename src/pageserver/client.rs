//! The dump's side of a page server connection (`--page-server`): pages
//! go over TCP instead of into pages files, one pagemap after another,
//! each opened with OPEN2 and filled with ADD_F commands, then CLOSE,
//! whose answer says the server has everything. With `--tls` the
//! connection is TLS ([`super::conn`]) and pages go through a buffer.

use super::conn::{timed_out, Conn};
use super::error::PsError;
use super::tls::TlsOpts;
use super::wire::{self, Dst, Header};
use crate::error::Result;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;

pub struct Client {
    conn: Conn,
    peer: String,
    /// TLS: pages read from a pipe on their way out.
    buf: Vec<u8>,
}

/// How long one send or receive waits before the dump looks whether it
/// should stop ([`crate::dump::guard::check`]): a server that stalls
/// must not keep the tree frozen after `crit dump` was killed.
const WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Most bytes of a pipe sent through TLS at once.
const TLS_CHUNK: usize = 1 << 20;

impl Client {
    /// Connects to the page server at `addr`:`port` (an IPv4 or IPv6
    /// address, or a host name); with `tls`, the handshake is done here
    /// too, so that a refused certificate fails the dump before it
    /// freezes anything.
    pub fn connect(addr: &str, port: u16, tls: Option<&TlsOpts>) -> Result<Client> {
        // Bad files fail before any connection is made.
        let cfg = tls.map(|t| t.client_config(addr)).transpose()?;
        let peer = format!("{addr}:{port}");
        let sock = TcpStream::connect((addr, port)).map_err(|source| PsError::Connect {
            peer: peer.clone(),
            source,
        })?;
        // Headers go out with MSG_MORE; what waits for an answer must
        // not wait for more data first.
        sock.set_nodelay(true).map_err(|source| PsError::Io {
            peer: peer.clone(),
            what: "TCP_NODELAY",
            source,
        })?;
        sock.set_write_timeout(Some(WAIT))
            .and_then(|()| sock.set_read_timeout(Some(WAIT)))
            .map_err(|source| PsError::Io {
                peer: peer.clone(),
                what: "socket timeouts",
                source,
            })?;
        let conn = match cfg {
            Some(cfg) => Conn::connect_tls(sock, cfg, addr, &peer, &crate::dump::guard::check)?,
            None => Conn::plain(sock),
        };
        Ok(Client {
            conn,
            peer,
            buf: Vec::new(),
        })
    }

    /// Fills `b` from the server, looking between waits whether the dump
    /// should stop.
    fn read_all(&mut self, b: &mut [u8], what: &'static str) -> Result<()> {
        let mut at = 0;
        while at < b.len() {
            match self.conn.read(&mut b[at..]) {
                Ok(0) => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    );
                    return Err(self.err(what)(e).into());
                }
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => crate::dump::guard::check()?,
                Err(e) => return Err(self.err(what)(e).into()),
            }
        }
        Ok(())
    }

    fn err(&self, what: &'static str) -> impl Fn(std::io::Error) -> PsError + '_ {
        move |source| PsError::Io {
            peer: self.peer.clone(),
            what,
            source,
        }
    }

    /// Opens pagemap `dst` on the server; true if the server holds that
    /// pagemap in its parent images.
    pub fn open(&mut self, dst: Dst) -> Result<bool> {
        self.header(Header::new(wire::OPEN2, Some(dst)), false)?;
        let mut b = [0u8; 1];
        self.read_all(&mut b, "reading the answer to OPEN2")?;
        match b[0] {
            0 | 1 => Ok(b[0] != 0),
            // A TLS alert record (0x15): a server with --tls refusing
            // what it took for a handshake.
            0x15 if !self.conn.is_tls() => Err(PsError::SpeaksTls {
                peer: self.peer.clone(),
            }
            .into()),
            v => Err(PsError::Status {
                peer: self.peer.clone(),
                status: v.into(),
            }
            .into()),
        }
    }

    /// Whether the server holds pagemap `dst` in its parent images.
    pub fn has_parent(&mut self, dst: Dst) -> Result<bool> {
        self.header(Header::new(wire::PARENT, Some(dst)), false)?;
        Ok(self.read_i32("reading the answer to PARENT")? != 0)
    }

    /// Sends one header; `more`: data or another header follows at once.
    pub fn header(&mut self, h: Header, more: bool) -> Result<()> {
        let b = h.to_bytes();
        let mut at = 0;
        while at < b.len() {
            match self.conn.send(&b[at..], more) {
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => crate::dump::guard::check()?,
                Err(e) => return Err(self.err("sending a command")(e).into()),
            }
        }
        Ok(())
    }

    /// Sends page data from memory.
    pub fn data(&mut self, b: &[u8]) -> Result<()> {
        let mut at = 0;
        while at < b.len() {
            match self.conn.write(&b[at..]) {
                Ok(0) => {
                    let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                    return Err(self.err("sending pages")(e).into());
                }
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => crate::dump::guard::check()?,
                Err(e) => return Err(self.err("sending pages")(e).into()),
            }
        }
        Ok(())
    }

    /// Sends `len` bytes of page data from `pipe` (splice: no copy
    /// through crit's memory; TLS: through a buffer, to be encrypted).
    pub fn data_from_pipe(&mut self, pipe: &impl AsFd, len: usize) -> Result<()> {
        if self.conn.is_tls() {
            return self.tls_data_from_pipe(pipe, len);
        }
        let mut left = len;
        while left > 0 {
            let n = nix::fcntl::splice(
                pipe.as_fd(),
                None,
                self.conn.sock().as_fd(),
                None,
                left,
                nix::fcntl::SpliceFFlags::SPLICE_F_MOVE,
            );
            match n {
                Ok(0) => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the pipe ended {left} bytes short"),
                    );
                    return Err(self.err("sending pages")(e).into());
                }
                Ok(n) => left -= n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => crate::dump::guard::check()?,
                Err(e) => return Err(self.err("sending pages")(e.into()).into()),
            }
        }
        Ok(())
    }

    fn tls_data_from_pipe(&mut self, pipe: &impl AsFd, len: usize) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(len.min(TLS_CHUNK), 0);
        let mut left = len;
        let mut r = Ok(());
        while left > 0 && r.is_ok() {
            let want = left.min(buf.len());
            r = match nix::unistd::read(pipe.as_fd(), &mut buf[..want]) {
                Ok(0) => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the pipe ended {left} bytes short"),
                    );
                    Err(self.err("sending pages")(e).into())
                }
                Ok(n) => {
                    left -= n;
                    self.data(&buf[..n])
                }
                Err(nix::errno::Errno::EINTR) => Ok(()),
                Err(e) => Err(self.err("sending pages")(e.into()).into()),
            };
        }
        self.buf = buf;
        r
    }

    fn read_i32(&mut self, what: &'static str) -> Result<i32> {
        let mut b = [0u8; 4];
        self.read_all(&mut b, what)?;
        Ok(i32::from_ne_bytes(b))
    }

    /// Ends the session: the server answers once it has every page.
    pub fn close(mut self) -> Result<()> {
        self.header(Header::new(wire::CLOSE, None), false)?;
        let status = self.read_i32("reading the answer to CLOSE")?;
        self.conn.bye();
        if status != 0 {
            return Err(PsError::Status {
                peer: self.peer,
                status,
            }
            .into());
        }
        Ok(())
    }
}
