//! crit's own limit of open files.

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use std::os::fd::{AsRawFd, RawFd};

/// Slots crit's descriptor table is grown to at start (see
/// [`grow_table`]): a dump's pipes in flight (up to 4,096) and the rest
/// it holds at once.
const TABLE: u64 = 8192;

/// Lets crit hold as many open files as it may (a tree may have tens of
/// thousands of sockets, and a dump holds a pipe per MiB of memory in
/// flight): as root up to the system's ceiling (fs.nr_open), else, or
/// without CAP_SYS_RESOURCE, up to the hard limit. Then grows crit's
/// descriptor table ahead ([`grow_table`]).
pub fn raise() {
    raise_limit();
    grow_table();
}

fn raise_limit() {
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(c) = ceiling {
        if setrlimit(Resource::RLIMIT_NOFILE, c, c).is_ok() {
            return;
        }
    }
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The soft limit now (1024 if it cannot be read).
pub fn soft() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(s, _)| s)
}

/// Grows crit's descriptor table to [`TABLE`] slots (or the soft limit)
/// at once. Why: the kernel grows a table that threads share only after
/// an RCU grace period, one per doubling (about 10 ms each on these
/// machines); a dump taking a pipe per MiB of memory while its page
/// writers run paid five of them, 50 ms, for a task of 1 GiB. Called
/// while crit has one thread, the growth waits for nothing, and a table
/// never shrinks. Best effort: a failure only costs that time again.
fn grow_table() {
    let top = soft().min(TABLE).saturating_sub(1) as RawFd;
    let Ok(root) = std::fs::File::open("/") else {
        return;
    };
    if let Ok(fd) = super::fdops::dup_at_least(root.as_raw_fd(), top) {
        let _ = super::fdops::close(fd);
    }
}
