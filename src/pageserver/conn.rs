//! One page server connection, plain TCP or TLS ([`super::tls`]), behind
//! the calls the protocol code makes: read, write (with a "more follows"
//! hint), page data between the connection and a pipe, waiting for the
//! next command, and the goodbye. Plain connections keep their
//! zero-copy paths (splice, MSG_MORE); TLS ones pass the pages through a
//! buffer, since they must be encrypted.

use super::error::PsError;
use crate::error::Result;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

/// Most bytes moved through the TLS buffer at once.
const CHUNK: usize = 1 << 20;

pub struct Conn {
    sock: TcpStream,
    tls: Option<Box<Connection>>,
    /// TLS: page data between a pipe and the connection.
    buf: Vec<u8>,
}

/// Whether an I/O error is a socket timeout running out.
pub fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A TLS failure inside an I/O error, in words.
fn tls_io(e: rustls::Error) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("TLS: {}", super::tls::describe(&e)),
    )
}

/// An I/O error from rustls's calls, whose TLS failures become words.
fn from_rustls(e: std::io::Error) -> std::io::Error {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(t) => tls_io(t.clone()),
        None => e,
    }
}

impl Conn {
    pub fn plain(sock: TcpStream) -> Conn {
        Conn {
            sock,
            tls: None,
            buf: Vec::new(),
        }
    }

    /// TLS as the client of the page server at `address` (as written on
    /// the command line: its certificate is checked against it).
    /// `watch` runs whenever a socket timeout runs out meanwhile.
    pub fn connect_tls(
        sock: TcpStream,
        cfg: Arc<ClientConfig>,
        address: &str,
        peer: &str,
        watch: &dyn Fn() -> Result<()>,
    ) -> Result<Conn> {
        let c = ClientConnection::new(cfg, super::tls::server_name(address))
            .map_err(|e| PsError::TlsSetup(super::tls::describe(&e)))?;
        Conn::handshake(sock, Connection::Client(c), peer, watch)
    }

    /// TLS as the server of an accepted connection.
    pub fn accept_tls(
        sock: TcpStream,
        cfg: Arc<ServerConfig>,
        peer: &str,
        watch: &dyn Fn() -> Result<()>,
    ) -> Result<Conn> {
        let c =
            ServerConnection::new(cfg).map_err(|e| PsError::TlsSetup(super::tls::describe(&e)))?;
        Conn::handshake(sock, Connection::Server(c), peer, watch)
    }

    fn handshake(
        mut sock: TcpStream,
        mut c: Connection,
        peer: &str,
        watch: &dyn Fn() -> Result<()>,
    ) -> Result<Conn> {
        let fail = |e: std::io::Error| {
            let why = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(t) => super::tls::describe(t),
                None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    "the peer closed the connection during the handshake (does it use --tls?)"
                        .into()
                }
                None => format!("handshake: {e} (does the peer use --tls?)"),
            };
            PsError::Tls {
                peer: peer.to_string(),
                why,
            }
        };
        while c.is_handshaking() || c.wants_write() {
            match c.complete_io(&mut sock) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => watch()?,
                Err(e) => {
                    // The alert that says why, if rustls made one, and
                    // time for the peer to read it: closed at once with
                    // its data unread here, the socket would reset the
                    // connection and the peer might see only that.
                    let _ = c.write_tls(&mut sock);
                    linger(&mut sock);
                    return Err(fail(e).into());
                }
            }
        }
        Ok(Conn {
            sock,
            tls: Some(Box::new(c)),
            buf: Vec::new(),
        })
    }

    pub fn sock(&self) -> &TcpStream {
        &self.sock
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    fn flush_tls(&mut self) -> std::io::Result<()> {
        match self.tls.as_deref_mut() {
            Some(c) => flush(c, &mut self.sock),
            None => Ok(()),
        }
    }

    /// Sends some of `b`; `more`: more follows at once (MSG_MORE, or for
    /// TLS no flush yet).
    pub fn send(&mut self, b: &[u8], more: bool) -> std::io::Result<usize> {
        let Some(c) = self.tls.as_deref_mut() else {
            let flags = match more {
                true => libc::MSG_MORE | libc::MSG_NOSIGNAL,
                false => libc::MSG_NOSIGNAL,
            };
            let flags = nix::sys::socket::MsgFlags::from_bits_retain(flags);
            return nix::sys::socket::send(std::os::fd::AsRawFd::as_raw_fd(&self.sock), b, flags)
                .map_err(std::io::Error::from);
        };
        // What was encrypted before goes first: a timeout there has not
        // taken any of `b` yet.
        flush(c, &mut self.sock)?;
        let n = c.writer().write(b)?;
        if !more {
            // An error here shows again on the next call; `b` is taken.
            let _ = flush(c, &mut self.sock);
        }
        Ok(n)
    }

    /// Receives up to `max` bytes of page data into the empty pipe
    /// `pipe` (which holds at least `max`); 0: the connection ended.
    pub fn recv_to_pipe(&mut self, pipe: &impl AsFd, max: usize) -> std::io::Result<usize> {
        if self.tls.is_none() {
            loop {
                match nix::fcntl::splice(
                    self.sock.as_fd(),
                    None,
                    pipe.as_fd(),
                    None,
                    max,
                    nix::fcntl::SpliceFFlags::SPLICE_F_MOVE,
                ) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    r => return r.map_err(std::io::Error::from),
                }
            }
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(max.min(CHUNK), 0);
        let r = self.read(&mut buf).and_then(|n| {
            let mut at = 0;
            while at < n {
                match nix::unistd::write(pipe.as_fd(), &buf[at..n]) {
                    Ok(w) => at += w,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(n)
        });
        self.buf = buf;
        r
    }

    /// Waits until a command can be read (or the peer hung up), calling
    /// `watch` every 200 ms meanwhile; `watch`'s error is returned inside.
    pub fn wait_readable(&mut self, watch: &dyn Fn() -> Result<()>) -> std::io::Result<Result<()>> {
        if let Some(c) = self.tls.as_mut() {
            // rustls may hold decrypted bytes the socket no longer shows.
            let state = c.process_new_packets().map_err(tls_io)?;
            if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() {
                return Ok(Ok(()));
            }
        }
        super::lazy::wait_readable(&self.sock, watch)
    }

    /// Ends the session: TLS sends its close_notify and waits a little
    /// for the peer's (GnuTLS's bye, which CRIU's side waits on too).
    pub fn bye(&mut self) {
        let Some(c) = self.tls.as_mut() else {
            return;
        };
        c.send_close_notify();
        if self.flush_tls().is_err() {
            return;
        }
        let _ = self
            .sock
            .set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let mut b = [0u8; 64];
        // Until the peer's close_notify (0), its hang-up or an error.
        while let Ok(n) = self.read(&mut b) {
            if n == 0 {
                break;
            }
        }
    }
}

/// Ends our half and reads what the peer still sends until it closes
/// too (a second at most).
fn linger(sock: &mut TcpStream) {
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_millis(100)));
    let mut b = [0u8; 4096];
    while std::time::Instant::now() < until {
        match sock.read(&mut b) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if timed_out(&e) || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Sends what rustls holds encrypted; a timeout leaves the rest for the
/// next call.
fn flush(c: &mut Connection, sock: &mut TcpStream) -> std::io::Result<()> {
    while c.wants_write() {
        c.write_tls(sock)?;
    }
    Ok(())
}

impl Read for Conn {
    /// 0: the peer closed; for TLS also when it hung up without a
    /// close_notify (the protocol's CLOSE says whether it was done).
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let Some(c) = self.tls.as_deref_mut() else {
            return self.sock.read(b);
        };
        loop {
            match c.reader().read(b) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(from_rustls(e)),
            }
            // What we still owe the peer goes first (it may be waiting
            // for it before it answers).
            flush(c, &mut self.sock)?;
            // 0 (the peer hung up) shows as the reader's end above.
            c.read_tls(&mut self.sock)?;
            if let Err(e) = c.process_new_packets() {
                // Tell the peer why (the alert rustls queued).
                let _ = c.write_tls(&mut self.sock);
                return Err(tls_io(e));
            }
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self.tls {
            None => self.sock.write(b),
            Some(_) => self.send(b, false),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_tls()
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
