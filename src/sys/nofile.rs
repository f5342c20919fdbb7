//! crit's own limit of open files.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Lets crit hold as many open files as it may (a tree may have tens of
/// thousands of sockets, and a dump holds a pipe per MiB of memory in
/// flight): as root up to the system's ceiling (fs.nr_open), else, or
/// without CAP_SYS_RESOURCE, up to the hard limit.
pub fn raise() {
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
