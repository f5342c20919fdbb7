//! crit's pretty forms for integers: flag names, value names, device
//! numbers, IP addresses and hex. The tables are crit 4.2's, so that the
//! same value prints the same way.

type Table = &'static [(&'static str, u64)];

static MMAP_PROT: Table = &[("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4)];

static MMAP_FLAGS: Table = &[
    ("MAP_SHARED", 0x1),
    ("MAP_PRIVATE", 0x2),
    ("MAP_DROPPABLE", 0x08),
    ("MAP_ANON", 0x20),
    ("MAP_GROWSDOWN", 0x0100),
];

static MMAP_STATUS: Table = &[
    ("VMA_AREA_NONE", 0),
    ("VMA_AREA_REGULAR", 1 << 0),
    ("VMA_AREA_STACK", 1 << 1),
    ("VMA_AREA_VSYSCALL", 1 << 2),
    ("VMA_AREA_VDSO", 1 << 3),
    ("VMA_AREA_HEAP", 1 << 5),
    ("VMA_FILE_PRIVATE", 1 << 6),
    ("VMA_FILE_SHARED", 1 << 7),
    ("VMA_ANON_SHARED", 1 << 8),
    ("VMA_ANON_PRIVATE", 1 << 9),
    ("VMA_AREA_SYSVIPC", 1 << 10),
    ("VMA_AREA_SOCKET", 1 << 11),
    ("VMA_AREA_VVAR", 1 << 12),
    ("VMA_AREA_AIORING", 1 << 13),
    ("VMA_AREA_MEMFD", 1 << 14),
    ("VMA_AREA_SHSTK", 1 << 15),
    ("VMA_AREA_UPROBES", 1 << 17),
    ("VMA_UNSUPP", 1 << 31),
];

static RFILE_FLAGS: Table = &[
    ("O_WRONLY", 0o1),
    ("O_RDWR", 0o2),
    ("O_CREAT", 0o100),
    ("O_EXCL", 0o200),
    ("O_NOCTTY", 0o400),
    ("O_TRUNC", 0o1000),
    ("O_APPEND", 0o2000),
    ("O_NONBLOCK", 0o4000),
    ("O_DSYNC", 0o10000),
    ("FASYNC", 0o20000),
    ("O_DIRECT", 0o40000),
    ("O_LARGEFILE", 0o100000),
    ("O_DIRECTORY", 0o200000),
    ("O_NOFOLLOW", 0o400000),
    ("O_NOATIME", 0o1000000),
    ("O_CLOEXEC", 0o2000000),
];

static SEALS_FLAGS: Table = &[
    ("F_SEAL_SEAL", 0x1),
    ("F_SEAL_SHRINK", 0x2),
    ("F_SEAL_GROW", 0x4),
    ("F_SEAL_WRITE", 0x8),
    ("F_SEAL_FUTURE_WRITE", 0x10),
];

static PMAP_FLAGS: Table = &[("PE_PARENT", 1), ("PE_LAZY", 2), ("PE_PRESENT", 4)];

pub fn flags_table(name: &str) -> Option<Table> {
    Some(match name {
        "mmap.prot" => MMAP_PROT,
        "mmap.flags" => MMAP_FLAGS,
        "mmap.status" => MMAP_STATUS,
        "rfile.flags" => RFILE_FLAGS,
        "pmap.flags" => PMAP_FLAGS,
        "seals.flags" => SEALS_FLAGS,
        _ => return None,
    })
}

/// `"A | B | 0x40"`: names of the set bits in table order, then what is left.
pub fn format_flags(value: u64, table: Table, out: &mut String) {
    let mut rest = value;
    for (name, bit) in table {
        if value & bit != 0 {
            if !out.is_empty() {
                out.push_str(" | ");
            }
            out.push_str(name);
        }
        rest &= !bit;
    }
    if rest != 0 {
        if !out.is_empty() {
            out.push_str(" | ");
        }
        out.push_str(&format!("0x{rest:x}"));
    }
}

/// The inverse of [`format_flags`]; also takes numbers in any base Python's
/// `int(x, 0)` accepts.
pub fn parse_flags(text: &str, table: Table) -> Result<u64, String> {
    if text.is_empty() {
        return Ok(0);
    }
    let mut sum: u64 = 0;
    for part in text.split('|') {
        let part = part.trim();
        let v = match table.iter().find(|(n, _)| *n == part) {
            Some((_, bit)) => *bit,
            None => parse_int(part)
                .ok()
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| format!("unknown flag {part:?}"))?,
        };
        sum = sum.checked_add(v).ok_or("flags overflow")?;
    }
    Ok(sum)
}

/// crit's value names, keyed by the field's name.
pub fn dict_name(dict: &str, field: &str, value: u64) -> Option<&'static str> {
    dict_table(dict, field)?
        .iter()
        .find(|(_, v)| *v == value)
        .map(|(n, _)| *n)
}

pub fn dict_value(dict: &str, field: &str, name: &str) -> Option<u64> {
    dict_table(dict, field)?
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
}

fn dict_table(dict: &str, field: &str) -> Option<Table> {
    Some(match (dict, field) {
        ("gen", "task_state") => &[("Alive", 1), ("Zombie", 3), ("Stopped", 6)],
        ("sk", "family") => &[
            ("UNIX", 1),
            ("INET", 2),
            ("INET6", 10),
            ("NETLINK", 16),
            ("PACKET", 17),
        ],
        ("sk", "type") => &[
            ("STREAM", 1),
            ("DGRAM", 2),
            ("RAW", 3),
            ("SEQPACKET", 5),
            ("PACKET", 10),
        ],
        ("sk", "state") => &[
            ("ESTABLISHED", 1),
            ("SYN_SENT", 2),
            ("SYN_RECV", 3),
            ("FIN_WAIT1", 4),
            ("FIN_WAIT2", 5),
            ("TIME_WAIT", 6),
            ("CLOSE", 7),
            ("CLOSE_WAIT", 8),
            ("LAST_ACK", 9),
            ("LISTEN", 10),
        ],
        ("sk", "proto") => &[("IP", 0), ("TCP", 6), ("UDP", 17), ("UDPLITE", 136)],
        _ => return None,
    })
}

/// Device numbers: the kernel's `major << 20 | minor`, or with `odev`
/// glibc's `makedev` encoding.
pub fn format_dev(value: u64, odev: bool) -> String {
    let (major, minor) = if odev {
        (
            ((value >> 8) & 0xfff) | ((value >> 32) & !0xfff),
            (value & 0xff) | ((value >> 12) & !0xff),
        )
    } else {
        (value >> 20, value & ((1 << 20) - 1))
    };
    format!("{major}:{minor}")
}

pub fn parse_dev(text: &str, odev: bool) -> Result<u64, String> {
    let bad = || format!("bad device number {text:?} (want \"major:minor\")");
    let (a, b) = text.split_once(':').ok_or_else(bad)?;
    let major: u64 = a.trim().parse().map_err(|_| bad())?;
    let minor: u64 = b.trim().parse().map_err(|_| bad())?;
    Ok(if odev {
        (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
    } else {
        (major << 20) | minor
    })
}

/// Python's `int(text, 0)`: optional sign, `0x`/`0o`/`0b` prefixes,
/// underscores between digits, surrounding whitespace.
pub fn parse_int(text: &str) -> Result<i128, String> {
    let bad = || format!("not an integer: {text:?}");
    let t = text.trim();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = t.get(..2).map(|p| p.to_ascii_lowercase());
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &t[2..]),
        Some("0o") => (8, &t[2..]),
        Some("0b") => (2, &t[2..]),
        _ => (10, t),
    };
    let digits = digits
        .strip_prefix('_')
        .filter(|_| radix != 10)
        .unwrap_or(digits);
    if digits.is_empty()
        || !digits
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return Err(bad());
    }
    // Python rejects leading zeros in decimal ("010"), except for zero itself.
    if radix == 10
        && digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().any(|b| b != b'0' && b != b'_')
    {
        return Err(bad());
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    let v = i128::from_str_radix(&clean, radix).map_err(|_| bad())?;
    Ok(if neg { -v } else { v })
}

/// Python's `"0x%x" % v`.
pub fn format_hex(v: i128) -> String {
    if v < 0 {
        format!("-0x{:x}", v.unsigned_abs())
    } else {
        format!("0x{v:x}")
    }
}

/// An address kept as u32 words in network byte order: one word is IPv4,
/// four are IPv6. Printed the way Python's `ipaddress` prints them.
pub fn format_ip(words: &[u32]) -> Option<String> {
    match words {
        [a] => Some(std::net::Ipv4Addr::from(u32::from_be(*a)).to_string()),
        [a, b, c, d] => {
            let mut groups = [0u16; 8];
            for (i, w) in [a, b, c, d].iter().enumerate() {
                let h = u32::from_be(**w);
                groups[2 * i] = (h >> 16) as u16;
                groups[2 * i + 1] = h as u16;
            }
            Some(format_ipv6(&groups))
        }
        _ => None,
    }
}

/// Python 3.11's `IPv6Address.compressed`: the longest run (leftmost on a
/// tie) of two or more zero groups becomes `::`; IPv4-mapped addresses get
/// no special form.
fn format_ipv6(g: &[u16; 8]) -> String {
    let (mut best, mut best_len) = (usize::MAX, 0);
    let mut i = 0;
    while i < 8 {
        if g[i] == 0 {
            let start = i;
            while i < 8 && g[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                best = start;
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    let hex = |s: &[u16]| {
        s.iter()
            .map(|x| format!("{x:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if best_len < 2 {
        return hex(g);
    }
    format!("{}::{}", hex(&g[..best]), hex(&g[best + best_len..]))
}

/// The inverse of [`format_ip`].
pub fn parse_ip(text: &str) -> Result<Vec<u32>, String> {
    if let Ok(v4) = text.parse::<std::net::Ipv4Addr>() {
        return Ok(vec![u32::from(v4).to_be()]);
    }
    let v6: std::net::Ipv6Addr = text
        .parse()
        .map_err(|_| format!("bad IP address {text:?}"))?;
    let o = v6.octets();
    Ok((0..4)
        .map(|i| u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]).to_be())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip() {
        let t = flags_table("mmap.status").unwrap();
        let mut s = String::new();
        format_flags(0x201 | 0x40000, t, &mut s);
        assert_eq!(s, "VMA_AREA_REGULAR | VMA_ANON_PRIVATE | 0x40000");
        assert_eq!(parse_flags(&s, t).unwrap(), 0x201 | 0x40000);
        let mut z = String::new();
        format_flags(0, t, &mut z);
        assert_eq!(z, "");
        assert_eq!(parse_flags("", t).unwrap(), 0);
    }

    #[test]
    fn ints_parse_like_python() {
        assert_eq!(parse_int("0x1f").unwrap(), 31);
        assert_eq!(parse_int(" -0o17 ").unwrap(), -15);
        assert_eq!(parse_int("1_000").unwrap(), 1000);
        assert_eq!(parse_int("0").unwrap(), 0);
        assert!(parse_int("010").is_err());
        assert!(parse_int("0x").is_err());
        assert!(parse_int("abc").is_err());
        assert!(parse_int("--5").is_err());
        assert!(parse_int("0x+5").is_err());
        assert_eq!(format_hex(-5), "-0x5");
    }

    #[test]
    fn devices() {
        assert_eq!(format_dev((8 << 20) | 1, false), "8:1");
        assert_eq!(parse_dev("8:1", false).unwrap(), (8 << 20) | 1);
        let od = parse_dev("259:70000", true).unwrap();
        assert_eq!(format_dev(od, true), "259:70000");
    }

    #[test]
    fn addresses() {
        let lo = parse_ip("127.0.0.1").unwrap();
        assert_eq!(format_ip(&lo).unwrap(), "127.0.0.1");
        for a in [
            "::1",
            "::",
            "fe80::1:2",
            "1:0:0:2::3",
            "1:2:3:4:5:6:7:8",
            "::ffff:102:304",
        ] {
            let w = parse_ip(a).unwrap();
            assert_eq!(format_ip(&w).unwrap(), a);
        }
    }
}
