//! What can go wrong between a dump and a page server, on either side.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PsError {
    #[error("page server {peer}: cannot connect: {source}")]
    Connect {
        peer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("page server {peer}: {what}: {source}")]
    Io {
        peer: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A lazy-pages daemon's page server went away.
    #[error("lazy-pages: page server at {peer} closed the connection ({what})")]
    Closed { peer: String, what: &'static str },
    #[error("page server {peer}: it answered with status {status}")]
    Status { peer: String, status: i32 },
    #[error("page server {peer}: it answered with a TLS record (does it use --tls?)")]
    SpeaksTls { peer: String },
    #[error("page server: cannot listen on {addr} port {port}: {source}")]
    Listen {
        addr: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("page server: {peer}: at byte {offset} of the stream: {why}")]
    Protocol {
        peer: String,
        offset: u64,
        why: String,
    },
    #[error(
        "page server: {peer}: the dump went away before it closed the session; \
         nothing of it was kept"
    )]
    NotFlushed { peer: String },
    #[error("{}: {what}: {source}", path.display())]
    File {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed, or the peer's certificate.
    #[error("page server {peer}: TLS: {why}")]
    Tls { peer: String, why: String },
    /// A file of `--tls-*` (given, or CRIU's default).
    #[error("{opt} {}: {why}", path.display())]
    TlsFile {
        opt: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("page server: TLS: {0}")]
    TlsSetup(String),
    #[error("{what} is not supported by crit's page server yet")]
    Unsupported { what: &'static str },
}

impl From<PsError> for crate::error::Error {
    fn from(e: PsError) -> Self {
        crate::error::Error::PageServer(Box::new(e))
    }
}
