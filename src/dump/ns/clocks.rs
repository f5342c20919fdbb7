//! timens-N.img: CLOCK_MONOTONIC and CLOCK_BOOTTIME as the tree reads
//! them at dump time. Restore makes a time namespace whose offsets carry
//! the clocks on from these values. For a tree in crit's time namespace
//! CRIU writes crit's clocks as timens-0.img; a tree with a time
//! namespace of its own reads crit's clocks plus its offsets
//! (/proc/PID/timens_offsets).

use crate::dump::error::DumpError;
use crate::dump::procfs;
use crate::error::Result;
use crate::image::pb;

/// Offsets (seconds, nanoseconds) of a time namespace.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub monotonic: (i64, i64),
    pub boottime: (i64, i64),
}

/// Parses /proc/PID/timens_offsets ("monotonic SEC NSEC" and
/// "boottime SEC NSEC" lines).
pub fn parse_offsets(pid: i32, text: &str) -> Result<Offsets> {
    let mut o = Offsets::default();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let bad = || DumpError::ProcParse {
            pid,
            file: "timens_offsets",
            fault: crate::dump::error::ProcFault::Line(l.to_string()),
        };
        if f.len() != 3 {
            return Err(bad().into());
        }
        let v = (
            f[1].parse::<i64>().map_err(|_| bad())?,
            f[2].parse::<i64>().map_err(|_| bad())?,
        );
        match f[0] {
            "monotonic" | "1" => o.monotonic = v,
            "boottime" | "7" => o.boottime = v,
            _ => return Err(bad().into()),
        }
    }
    Ok(o)
}

/// `clock` now, plus `off`, normalised.
fn shifted(clock: nix::time::ClockId, off: (i64, i64)) -> Result<pb::Timespec> {
    let t = nix::time::clock_gettime(clock).map_err(|e| DumpError::Call {
        what: "clock_gettime",
        source: e.into(),
    })?;
    let mut sec = t.tv_sec() + off.0;
    let mut nsec = t.tv_nsec() + off.1;
    while nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec += 1;
    }
    while nsec < 0 {
        nsec += 1_000_000_000;
        sec -= 1;
    }
    Ok(pb::Timespec {
        tv_sec: sec as u64,
        tv_nsec: nsec as u64,
    })
}

/// The clocks as a task with these offsets reads them now.
pub fn entry(off: Offsets) -> Result<pb::TimensEntry> {
    use nix::time::ClockId;
    Ok(pb::TimensEntry {
        monotonic: shifted(ClockId::CLOCK_MONOTONIC, off.monotonic)?,
        boottime: shifted(ClockId::CLOCK_BOOTTIME, off.boottime)?,
    })
}

/// The clocks of task `pid`'s time namespace.
pub fn of_task(pid: i32) -> Result<pb::TimensEntry> {
    entry(parse_offsets(
        pid,
        &procfs::read_string(pid, "timens_offsets")?,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_both_spellings() {
        let o = parse_offsets(1, "monotonic 100 5\nboottime -3 7\n").unwrap();
        assert_eq!(o.monotonic, (100, 5));
        assert_eq!(o.boottime, (-3, 7));
        assert!(parse_offsets(1, "monotonic x 5\n").is_err());
    }

    #[test]
    fn shifted_clocks_are_normalised() {
        let e = entry(Offsets {
            monotonic: (10, 999_999_999),
            boottime: (0, 0),
        })
        .unwrap();
        assert!(e.monotonic.tv_nsec < 1_000_000_000);
    }
}
