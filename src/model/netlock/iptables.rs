//! The iptables lock, CRIU 4.2's default: each connection of a tree in
//! crit's network namespace gets two rules (INPUT and OUTPUT) that drop
//! its packets unless they carry the mark; a tree with a network
//! namespace of its own gets the whole namespace locked instead (a `CRIU`
//! chain that drops all unmarked packets, [`lock_ns`]). The rules are
//! CRIU's own, word for word, so CRIU's restore unlocks what crit's dump
//! locked and the other way round.

use super::{Conn, MARK};
use std::io;
use std::process::{Command, Stdio};

/// What an iptables command does with a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `-I`
    Add,
    /// `-D`
    Remove,
    /// `-C`: succeeds only if the rule is there.
    Check,
}

/// The iptables command of one rule: INPUT drops what comes from the peer
/// to us, OUTPUT what we send to it.
pub fn rule(c: &Conn, input: bool, op: Op) -> (&'static str, Vec<String>) {
    let c = c.plain();
    let prog = if c.dst.is_ipv4() {
        "iptables"
    } else {
        "ip6tables"
    };
    let (from, fport, to, tport) = if input {
        (c.dst, c.dport, c.src, c.sport)
    } else {
        (c.src, c.sport, c.dst, c.dport)
    };
    let args = [
        "-w",
        "-t",
        "filter",
        match op {
            Op::Add => "-I",
            Op::Remove => "-D",
            Op::Check => "-C",
        },
        if input { "INPUT" } else { "OUTPUT" },
        "--protocol",
        "tcp",
        "-m",
        "mark",
        "!",
        "--mark",
        MARK,
        "--source",
        &from.to_string(),
        "--sport",
        &fport.to_string(),
        "--destination",
        &to.to_string(),
        "--dport",
        &tport.to_string(),
        "-j",
        "DROP",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    (prog, args)
}

fn run(c: &Conn, input: bool, op: Op) -> io::Result<()> {
    let (prog, args) = rule(c, input, op);
    let out = Command::new(prog)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{prog}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(io::Error::other(format!(
        "{prog} {}: {}",
        args.join(" "),
        err.lines().next().unwrap_or("failed")
    )))
}

/// Drops the connection's packets both ways.
pub fn lock(c: &Conn) -> io::Result<()> {
    run(c, true, Op::Add)?;
    if let Err(e) = run(c, false, Op::Add) {
        let _ = run(c, true, Op::Remove);
        return Err(e);
    }
    Ok(())
}

/// Lets the connection's packets through again; both rules are tried.
pub fn unlock(c: &Conn) -> io::Result<()> {
    let a = run(c, true, Op::Remove);
    let b = run(c, false, Op::Remove);
    a.and(b)
}

/// Locks the connection again after [`unlock`] began: adds each of its
/// two rules that is not there (one rule twice would outlast the next
/// unlock).
pub fn relock(c: &Conn) -> io::Result<()> {
    for input in [true, false] {
        if run(c, input, Op::Check).is_err() {
            run(c, input, Op::Add)?;
        }
    }
    Ok(())
}

/// CRIU's lock of a whole network namespace (iptables-restore input).
pub const NS_LOCK: &str = "*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n-A CRIU -m mark --mark 0xC114 -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n";
/// Its undoing: the jumps, then the chain.
const NS_UNLOCK: [&str; 2] = [
    "*filter\n:CRIU - [0:0]\n-D INPUT -j CRIU\n-D OUTPUT -j CRIU\nCOMMIT\n",
    "*filter\n:CRIU - [0:0]\n-X CRIU\nCOMMIT\n",
];

fn restore_rules(prog: &str, conf: &str) -> io::Result<()> {
    super::feed(prog, &["-w", "--noflush"], conf)
}

/// Locks the calling thread's network namespace as CRIU does (IPv4 and
/// IPv6): only packets with the mark pass.
pub fn lock_ns() -> io::Result<()> {
    restore_rules("iptables-restore", NS_LOCK)?;
    if let Err(e) = restore_rules("ip6tables-restore", NS_LOCK) {
        let _ = unlock_ns();
        return Err(e);
    }
    Ok(())
}

/// Lifts CRIU's lock of the calling thread's network namespace; every
/// step is tried.
pub fn unlock_ns() -> io::Result<()> {
    let mut r = Ok(());
    for conf in NS_UNLOCK {
        for prog in ["iptables-restore", "ip6tables-restore"] {
            if let Err(e) = restore_rules(prog, conf) {
                r = Err(e);
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_criu_s() {
        let c = Conn {
            src: "127.0.0.1".parse().unwrap(),
            sport: 40000,
            dst: "127.0.0.2".parse().unwrap(),
            dport: 6379,
        };
        let (p, a) = rule(&c, true, Op::Add);
        assert_eq!(p, "iptables");
        assert_eq!(
            a.join(" "),
            "-w -t filter -I INPUT --protocol tcp -m mark ! --mark 0xC114 --source 127.0.0.2 --sport 6379 --destination 127.0.0.1 --dport 40000 -j DROP"
        );
        let (_, a) = rule(&c, false, Op::Remove);
        assert_eq!(
            a.join(" "),
            "-w -t filter -D OUTPUT --protocol tcp -m mark ! --mark 0xC114 --source 127.0.0.1 --sport 40000 --destination 127.0.0.2 --dport 6379 -j DROP"
        );
        let m = Conn {
            src: "::ffff:10.0.0.1".parse().unwrap(),
            sport: 1,
            dst: "::ffff:10.0.0.2".parse().unwrap(),
            dport: 2,
        };
        let (p, a) = rule(&m, true, Op::Check);
        assert_eq!(p, "iptables");
        assert!(a.join(" ").contains("--source 10.0.0.2 --sport 2"), "{a:?}");
        assert!(a.join(" ").contains(" -C INPUT "), "{a:?}");
        let v6 = Conn {
            src: "::1".parse().unwrap(),
            ..m
        };
        assert_eq!(
            rule(
                &Conn {
                    dst: "::1".parse().unwrap(),
                    ..v6
                },
                true,
                Op::Add
            )
            .0,
            "ip6tables"
        );
    }
}
