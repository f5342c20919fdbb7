//! `dump --lazy-pages`: post-copy migration from the source. The dump
//! writes every image but the pages of lazy runs (private anonymous
//! memory), which it leaves in the tree, frozen; then it serves them, as
//! CRIU's dump does, to one lazy-pages daemon (`crit lazy-pages
//! --page-server`, or CRIU's) with CRIU's page server protocol, from the
//! tasks' memory. Once the daemon says CLOSE (it has every page) the tree
//! goes as after any dump; if the daemon leaves without it, the dump
//! fails and the tree is resumed (CRIU's choice too).

use super::error::DumpError;
use super::opts::LazyServe;
use crate::error::Result;
use crate::pageserver::lazy::{FrozenPages, Source};
use std::net::TcpListener;

/// Listens where `--address`/`--port` say, before the tree is frozen: a
/// port in use fails the dump while the tree still runs untouched.
pub fn listen(l: &LazyServe) -> Result<TcpListener> {
    let addr = l.address.clone().unwrap_or_else(|| "0.0.0.0".into());
    TcpListener::bind((addr.as_str(), l.port)).map_err(|source| {
        DumpError::LazyListen {
            addr,
            port: l.port,
            source,
        }
        .into()
    })
}

/// Serves `tasks`' lazy pages on `listener` to one daemon until its
/// CLOSE. Once the images are all written, the status-ready action point
/// is told (`notify`: runc waits for it) and `status_fd` gets its byte,
/// as CRIU does.
pub fn serve(
    listener: TcpListener,
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
    match Source::of_frozen(tasks).serve_watched(sock, peer.clone(), &super::guard::check)? {
        true => Ok(()),
        false => Err(DumpError::LazyUnfinished { peer }.into()),
    }
}
