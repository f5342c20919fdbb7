//! Page server: a dump sends task memory over TCP to another machine (or
//! process), which writes the pagemap and pages images there; CRIU 4.2's
//! protocol, so either side may be CRIU. [`wire`] is the protocol,
//! [`client`] the dump's side (`crit dump --page-server`), [`server`]
//! `crit page-server`; [`conn`] carries either plain TCP or TLS
//! ([`tls`], `--tls`, as CRIU's). How to move a task with it:
//! docs/migrate.md.

pub mod client;
pub mod conn;
pub mod error;
pub mod lazy;
pub mod server;
pub mod tls;
pub mod tlsname;
pub mod wire;
