//! `dump --lazy-pages`: post-copy migration from the source. The dump
//! writes every image but the pages of lazy runs (private anonymous
//! memory), which it leaves in the tree, frozen; then it serves them, as
//! CRIU's dump does, to one lazy-pages daemon (`crit lazy-pages
//! --page-server`, or CRIU's) with CRIU's page server protocol, from the
//! tasks' memory. Once the daemon says CLOSE (it has every page) the tree
//! goes as after any dump; if the daemon leaves without it, the dump
//! fails and the tree is resumed (CRIU's choice too). With `--tls` the
//! daemon's connection is TLS, its certificate checked as CRIU's server
//! checks it (crate::pageserver::tls); the files are read before the
//! tree is frozen.

use super::error::DumpError;
use super::opts::LazyServe;
use crate::error::Result;
use crate::pageserver::conn::Conn;
use crate::pageserver::lazy::{FrozenPages, Source};
use std::net::TcpListener;
use std::sync::Arc;

/// Where the dump serves: its socket, and with `--tls` what the
/// handshake needs.
pub struct Listening {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Listens where `--address`/`--port` say, before the tree is frozen: a
/// port in use, or a `--tls-*` file that cannot be read, fails the dump
/// while the tree still runs untouched.
pub fn listen(l: &LazyServe) -> Result<Listening> {
    let tls = l
        .tls
        .as_ref()
        .map(|t| t.server_config(l.address.as_deref()))
        .transpose()?;
    let addr = l.address.clone().unwrap_or_else(|| "0.0.0.0".into());
    let listener =
        TcpListener::bind((addr.as_str(), l.port)).map_err(|source| DumpError::LazyListen {
            addr,
            port: l.port,
            source,
        })?;
    Ok(Listening { listener, tls })
}

/// Serves `tasks`' lazy pages on `listener` to one daemon until its
/// CLOSE. Once the images are all written, the status-ready action point
/// is told (`notify`: runc waits for it) and `status_fd` gets its byte,
/// as CRIU does.
pub fn serve(
    Listening { listener, tls }: Listening,
    tasks: Vec<FrozenPages>,
    status_fd: Option<i32>,
    notify: &crate::action::Notifier,
    log: &super::progress::Log,
) -> Result<()> {
    let at = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let bytes: u64 = tasks.iter().flat_map(|t| &t.runs).map(|r| r.1).sum();
    // The images are complete now: the caller may copy them away.
    log.step(&format!(
        "images written; serving {:.1} MiB of lazy pages on {at}",
        bytes as f64 / (1 << 20) as f64
    ));
    notify.tell(crate::action::Script::StatusReady, None)?;
    crate::detach::ready(&crate::detach::Ready {
        daemon: false,
        pidfile: None,
        status_fd,
        log_file: None,
    })?;
    // Waiting, the dump still notices a `crit dump` killed meanwhile
    // (super::guard) and lets the tree go.
    let fail = |source| DumpError::LazyListen {
        addr: at.clone(),
        port: 0,
        source,
    };
    crate::pageserver::lazy::wait_readable(&listener, &super::guard::check).map_err(fail)??;
    let (sock, peer) = listener.accept().map_err(fail)?;
    drop(listener);
    let peer = peer.to_string();
    let conn = match tls {
        Some(cfg) => {
            // Timeouts only so that a stalled handshake still lets the
            // dump notice it should stop; serving waits with poll.
            let wait = Some(std::time::Duration::from_millis(200));
            let io = |source| crate::pageserver::error::PsError::Io {
                peer: peer.clone(),
                what: "socket timeouts",
                source,
            };
            sock.set_read_timeout(wait)
                .and_then(|()| sock.set_write_timeout(wait))
                .map_err(io)?;
            let conn = Conn::accept_tls(sock, cfg, &peer, &super::guard::check)?;
            conn.sock()
                .set_read_timeout(None)
                .and_then(|()| conn.sock().set_write_timeout(None))
                .map_err(io)?;
            conn
        }
        None => Conn::plain(sock),
    };
    match Source::of_frozen(tasks).serve_watched(conn, peer.clone(), &super::guard::check)? {
        true => Ok(()),
        false => Err(DumpError::LazyUnfinished { peer }.into()),
    }
}
