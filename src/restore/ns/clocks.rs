//! A new time namespace for the tree, whose offsets carry its clocks on
//! from the dumped values: offset = dumped - now, for CLOCK_MONOTONIC
//! (1) and CLOCK_BOOTTIME (7). The offsets can only be set before any
//! task is in the namespace, so crit's main thread (the thread group
//! leader, whose /proc/self/timens_offsets it is) unshares it for its
//! children just before it clones the root task.

use super::error::NsError;
use crate::error::Result;
use crate::image::pb;
use crate::model::ns::Kind;

/// `dumped` minus `now`, normalised (nanoseconds in 0..1e9).
pub fn offset(dumped: &pb::Timespec, now: nix::sys::time::TimeSpec) -> (i64, i64) {
    let mut sec = dumped.tv_sec as i64 - now.tv_sec();
    let mut nsec = dumped.tv_nsec as i64 - now.tv_nsec();
    while nsec < 0 {
        nsec += 1_000_000_000;
        sec -= 1;
    }
    while nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec += 1;
    }
    (sec, nsec)
}

fn fail(what: &'static str) -> impl FnOnce(std::io::Error) -> crate::error::Error {
    move |source| {
        NsError::Call {
            ns: Kind::Time,
            what,
            source,
        }
        .into()
    }
}

/// Makes the new time namespace crit's next children are born in.
pub fn new_time_ns(t: &pb::TimensEntry) -> Result<()> {
    use nix::time::{clock_gettime, ClockId};
    // crit's clocks are those of its own time namespace (offsets 0 in
    // the host's); the new offsets are relative to the host's clocks.
    // Read before unsharing: the file shows the namespace for children.
    let (m0, b0) = own_offsets();
    crate::sys::ns::unshare(libc::CLONE_NEWTIME as u64).map_err(fail("unshare"))?;
    let now = |c| clock_gettime(c).map_err(|e| fail("clock_gettime")(e.into()));
    let mut m = offset(&t.monotonic, now(ClockId::CLOCK_MONOTONIC)?);
    let mut b = offset(&t.boottime, now(ClockId::CLOCK_BOOTTIME)?);
    m.0 += m0;
    b.0 += b0;
    let text = format!("1 {} {}\n7 {} {}\n", m.0, m.1, b.0, b.1);
    std::fs::write("/proc/self/timens_offsets", text).map_err(fail("setting the clock offsets"))
}

/// The whole seconds of crit's own time namespace offsets (0 and 0 in
/// the host's).
fn own_offsets() -> (i64, i64) {
    let text = std::fs::read_to_string("/proc/self/timens_offsets").unwrap_or_default();
    let mut m = 0;
    let mut b = 0;
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 3 {
            let v = f[1].parse::<i64>().unwrap_or(0);
            match f[0] {
                "monotonic" | "1" => m = v,
                "boottime" | "7" => b = v,
                _ => {}
            }
        }
    }
    (m, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_normalised() {
        let d = pb::Timespec {
            tv_sec: 100,
            tv_nsec: 100,
        };
        let now = nix::sys::time::TimeSpec::new(40, 200);
        assert_eq!(offset(&d, now), (59, 999_999_900));
        let now = nix::sys::time::TimeSpec::new(400, 0);
        assert_eq!(offset(&d, now), (-300, 100));
    }
}
