//! The nftables lock, CRIU 4.2's `--network-lock nftables`, through the
//! `nft` command: one table `inet CRIU-<run id>` per dump.
//! * A tree in crit's network namespace: the table's `input` and `output`
//!   chains accept marked packets and drop those of the connections in
//!   its sets `conns4` and `conns6` (each connection in both directions:
//!   peer to us, us to peer), as CRIU builds it.
//! * A tree with a namespace of its own: the same table in that
//!   namespace, whose chains drop every unmarked packet.
//!
//! Unlocking deletes the table. Each change is one `nft -f` batch, which
//! the kernel applies whole or not at all.

use super::{Conn, MARK};
use std::io;
use std::net::IpAddr;

/// The table of the dump with this run id, as CRIU 4.2 names it: in a
/// buffer of 32 bytes, so cut to 31 ("inet CRIU-" and the first 21
/// characters of the run id).
pub fn table(run_id: &str) -> String {
    let mut t = format!("inet CRIU-{run_id}");
    let mut end = t.len().min(31);
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    t.truncate(end);
    t
}

/// Runs one batch of nft commands.
fn nft(script: &str) -> io::Result<()> {
    super::feed("nft", &["-f", "-"], script)
}

/// The commands that make the per-connection table (`create`: fails if
/// it is there already).
fn setup(table: &str) -> String {
    let mut s = format!("create table {table}\n");
    for (chain, hook) in [("output", "output"), ("input", "input")] {
        s += &format!(
            "add chain {table} {chain} {{ type filter hook {hook} priority 0; }}\n\
             add rule {table} {chain} meta mark {MARK} accept\n"
        );
    }
    for (set, ty, ip) in [
        ("conns4", "ipv4_addr", "ip"),
        ("conns6", "ipv6_addr", "ip6"),
    ] {
        s += &format!(
            "add set {table} {set} {{ type {ty} . inet_service . {ty} . inet_service; }}\n"
        );
        for chain in ["output", "input"] {
            s += &format!(
                "add rule {table} {chain} {ip} saddr . tcp sport . {ip} daddr . tcp dport @{set} drop\n"
            );
        }
    }
    s
}

/// The elements of `conns`, both directions of each.
fn elements(table: &str, conns: &[Conn]) -> String {
    let mut s = String::new();
    for c in conns.iter().map(|c| c.plain()) {
        let set = match c.src {
            IpAddr::V4(_) => "conns4",
            IpAddr::V6(_) => "conns6",
        };
        s += &format!(
            "add element {table} {set} {{ {} . {} . {} . {}, {} . {} . {} . {} }}\n",
            c.dst, c.dport, c.src, c.sport, c.src, c.sport, c.dst, c.dport
        );
    }
    s
}

/// Locks `conns`; `first` makes the table too.
pub fn lock(table: &str, conns: &[Conn], first: bool) -> io::Result<()> {
    let mut s = if first { setup(table) } else { String::new() };
    s += &elements(table, conns);
    if s.is_empty() {
        return Ok(());
    }
    nft(&s)
}

/// Makes the table again with `conns` if it is gone, or adds what is
/// missing of them (adding an element that is there changes nothing).
pub fn relock(table: &str, conns: &[Conn]) -> io::Result<()> {
    lock(table, conns, true).or_else(|_| lock(table, conns, false))
}

/// Locks the calling thread's network namespace whole.
pub fn lock_ns(table: &str) -> io::Result<()> {
    let mut s = format!("create table {table}\n");
    for chain in ["output", "input"] {
        s += &format!(
            "add chain {table} {chain} {{ type filter hook {chain} priority 0; policy drop; }}\n\
             add rule {table} {chain} meta mark {MARK} accept\n"
        );
    }
    nft(&s)
}

/// Lifts either lock: the table goes.
pub fn unlock(table: &str) -> io::Result<()> {
    nft(&format!("delete table {table}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_criu_s() {
        let t = table("5e1c0a3e-0000-4000-8000-000000000001");
        assert_eq!(t, "inet CRIU-5e1c0a3e-0000-4000-80");
        assert_eq!(table("1234"), "inet CRIU-1234");
        let s = setup(&t);
        assert!(s.starts_with(&format!("create table {t}\n")));
        assert!(s.contains(&format!("add rule {t} input meta mark 0xC114 accept")));
        assert!(s.contains(&format!(
            "add rule {t} output ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop"
        )));
        let c = Conn {
            src: "::ffff:127.0.0.1".parse().unwrap(),
            sport: 40000,
            dst: "::ffff:127.0.0.2".parse().unwrap(),
            dport: 80,
        };
        assert_eq!(
            elements(&t, &[c]),
            format!("add element {t} conns4 {{ 127.0.0.2 . 80 . 127.0.0.1 . 40000, 127.0.0.1 . 40000 . 127.0.0.2 . 80 }}\n")
        );
    }
}
