//! The network lock of TCP connections: while a connection is dumped, and
//! from a dump that kills its tree until the restore has repaired it, no
//! packet of it may reach a stack that would answer with a reset; packets
//! with CRIU's mark 0xC114 (the restore's forged ones) pass. A dump picks
//! the method, as CRIU's `--network-lock` does, and records it in
//! inventory.img with its run id; the restore lifts the lock the images
//! name, so either tool's restore unlocks the other's dump:
//! * [`iptables`] (the default): two rules per connection of a tree in
//!   crit's network namespace, a `CRIU` chain in a namespace of the tree's
//!   own;
//! * [`nftables`]: a table `inet CRIU-<run id>`, with the connections in
//!   its sets (or dropping all unmarked packets of a namespace of the
//!   tree's own);
//! * `skip`: no lock; whoever runs crit keeps the peers away.

mod iptables;
mod nftables;

use std::io;
use std::net::IpAddr;

/// The mark that lets packets through the lock (SOCCR_MARK).
pub const MARK: &str = "0xC114";

/// A TCP connection as seen from its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conn {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

/// An address of an image (`inet_sk_entry.src_addr`): one word for IPv4,
/// four for IPv6, in network byte order as the kernel keeps them.
pub fn addr_of(family: u32, words: &[u32]) -> Option<IpAddr> {
    match family {
        2 => Some(IpAddr::from(u32::from_be(*words.first()?).to_be_bytes())),
        10 => {
            let mut b = [0u8; 16];
            for (k, w) in words.iter().take(4).enumerate() {
                b[k * 4..k * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

impl Conn {
    /// The connection of an image's socket, or `None` for an unknown
    /// family.
    pub fn of_entry(e: &crate::image::pb::InetSkEntry) -> Option<Conn> {
        Some(Conn {
            src: addr_of(e.family, &e.src_addr)?,
            sport: e.src_port as u16,
            dst: addr_of(e.family, &e.dst_addr)?,
            dport: e.dst_port as u16,
        })
    }

    /// IPv4-mapped IPv6 addresses are locked as IPv4 ones, as CRIU does.
    pub(super) fn plain(self) -> Conn {
        let v4 = |a: IpAddr| match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
            a => a,
        };
        if matches!(self.dst, IpAddr::V6(d) if d.to_ipv4_mapped().is_some()) {
            Conn {
                src: v4(self.src),
                dst: v4(self.dst),
                ..self
            }
        } else {
            self
        }
    }
}

/// Runs `prog` with `args`, `input` on its stdin; its first line of
/// stderr makes the error.
fn feed(prog: &str, args: &[&str], input: &str) -> io::Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{prog}: {e}")))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(io::Error::other(format!(
        "{prog}: {}",
        err.lines().next().unwrap_or("failed")
    )))
}

/// How connections are locked (`--network-lock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Method {
    #[default]
    Iptables,
    Nftables,
    Skip,
}

impl Method {
    /// CRIU's number for it in inventory.img's `network_lock_method`
    /// (its own enum, one less than the RPC's).
    pub fn number(self) -> u32 {
        match self {
            Method::Iptables => 0,
            Method::Nftables => 1,
            Method::Skip => 2,
        }
    }

    pub fn of_number(n: u32) -> Option<Method> {
        [Method::Iptables, Method::Nftables, Method::Skip]
            .into_iter()
            .find(|m| m.number() == n)
    }

    /// `--network-lock`'s words, CRIU's ("none" is its other name for
    /// skip).
    pub fn of_name(s: &str) -> Option<Method> {
        match s {
            "iptables" => Some(Method::Iptables),
            "nftables" => Some(Method::Nftables),
            "skip" | "none" => Some(Method::Skip),
            _ => None,
        }
    }
}

/// The lock of one dump: its method and the dump's run id (which names
/// the nftables table).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lock {
    pub method: Method,
    pub run_id: String,
}

impl Lock {
    pub fn new(method: Method, run_id: &str) -> Lock {
        Lock {
            method,
            run_id: run_id.to_string(),
        }
    }

    fn table(&self) -> String {
        nftables::table(&self.run_id)
    }

    /// Drops the packets of `conns` both ways. `first`: this lock holds no
    /// connection yet (nftables then makes its table). On failure none of
    /// `conns` is locked.
    pub fn lock(&self, conns: &[Conn], first: bool) -> io::Result<()> {
        match self.method {
            Method::Iptables => {
                for (k, c) in conns.iter().enumerate() {
                    if let Err(e) = iptables::lock(c) {
                        for done in &conns[..k] {
                            let _ = iptables::unlock(done);
                        }
                        return Err(e);
                    }
                }
                Ok(())
            }
            Method::Nftables => nftables::lock(&self.table(), conns, first),
            Method::Skip => Ok(()),
        }
    }

    /// Lets the packets of `conns` through again: with nftables the whole
    /// table goes, which holds the dump's connections only. Every step is
    /// tried; what failed comes back, for the log.
    pub fn unlock(&self, conns: &[Conn]) -> Vec<String> {
        match self.method {
            Method::Iptables => conns
                .iter()
                .filter_map(|c| {
                    iptables::unlock(c)
                        .err()
                        .map(|e| format!("unlocking {c:?}: {e}"))
                })
                .collect(),
            Method::Nftables => nftables::unlock(&self.table())
                .err()
                .map(|e| format!("unlocking: {e}"))
                .into_iter()
                .collect(),
            Method::Skip => Vec::new(),
        }
    }

    /// Locks `conns` again after [`Lock::unlock`] began, adding only what
    /// is missing (one iptables rule twice would outlast the next unlock).
    pub fn relock(&self, conns: &[Conn]) -> io::Result<()> {
        match self.method {
            Method::Iptables => conns.iter().try_for_each(iptables::relock),
            Method::Nftables => nftables::relock(&self.table(), conns),
            Method::Skip => Ok(()),
        }
    }

    /// Locks the calling thread's network namespace whole (IPv4 and
    /// IPv6): only packets with the mark pass.
    pub fn lock_ns(&self) -> io::Result<()> {
        match self.method {
            Method::Iptables => iptables::lock_ns(),
            Method::Nftables => nftables::lock_ns(&self.table()),
            Method::Skip => Ok(()),
        }
    }

    /// Lifts [`Lock::lock_ns`] (a dump's, crit's or CRIU's); every step is
    /// tried.
    pub fn unlock_ns(&self) -> io::Result<()> {
        match self.method {
            Method::Iptables => iptables::unlock_ns(),
            Method::Nftables => nftables::unlock(&self.table()),
            Method::Skip => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_images() {
        let v4 = u32::from_ne_bytes([127, 0, 0, 1]);
        assert_eq!(addr_of(2, &[v4]), Some("127.0.0.1".parse().unwrap()));
        let one = u32::from_ne_bytes([0, 0, 0, 1]);
        assert_eq!(addr_of(10, &[0, 0, 0, one]), Some("::1".parse().unwrap()));
        assert_eq!(addr_of(7, &[1]), None);
    }

    #[test]
    fn methods_are_numbered_as_criu_s_inventory() {
        for (name, n) in [("iptables", 0), ("nftables", 1), ("skip", 2)] {
            let m = Method::of_name(name).unwrap();
            assert_eq!(m.number(), n);
            assert_eq!(Method::of_number(n), Some(m));
        }
        assert_eq!(Method::of_name("none"), Some(Method::Skip));
        assert_eq!(Method::of_name("pf"), None);
        assert_eq!(Method::of_number(3), None);
    }
}
