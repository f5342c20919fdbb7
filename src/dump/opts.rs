//! Options of `crit dump`, as the CLI passes them in.

use super::error::DumpError;
use crate::error::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Consent to dump unix sockets whose peer is outside the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtUnix {
    /// `--ext-unix-sk` without a list: every such socket.
    pub all: bool,
    /// `--ext-unix-sk=INO,...` and `--external unix[INO]`.
    pub inodes: BTreeSet<u64>,
}

impl ExtUnix {
    pub fn allows(&self, ino: u64) -> bool {
        self.all || self.inodes.contains(&ino)
    }

    /// Adds the value of one `--ext-unix-sk` option ("" for the bare form).
    pub fn add_list(&mut self, v: &str) -> Result<()> {
        if v.is_empty() {
            self.all = true;
            return Ok(());
        }
        for p in v.split(',') {
            let ino = p
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&i| i != 0)
                .ok_or_else(|| DumpError::ExtUnixSkArg {
                    value: p.to_string(),
                })?;
            self.inodes.insert(ino);
        }
        Ok(())
    }

    /// Adds a `--external unix[INO]` option.
    pub fn add_external(&mut self, v: &str) -> Result<()> {
        let ino = v
            .strip_prefix("unix[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| DumpError::ExternalArg {
                value: v.to_string(),
            })?;
        self.inodes.insert(ino);
        Ok(())
    }
}

/// A `--ghost-limit` value as CRIU reads it: a number of bytes, or of
/// KiB, MiB or GiB with a K, M or G after it.
pub fn parse_size(value: &str) -> Result<u64> {
    let bad = || DumpError::GhostLimitArg {
        value: value.to_string(),
    };
    let v = value.trim();
    let (digits, unit) = match v.char_indices().last() {
        Some((i, 'K' | 'k')) => (&v[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&v[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    Ok(n.checked_mul(unit).ok_or_else(bad)?)
}

/// What to do with the tree's namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsOpts {
    /// `--empty-ns net`: the network namespace is not dumped; restore
    /// makes an empty one (the manager configures it, as runc does).
    pub empty_net: bool,
    /// `--external net[INO]:KEY`: the network namespace with inode INO is
    /// the manager's; restore is handed one for KEY with --inherit-fd.
    pub ext_net: Option<(u64, String)>,
    /// `--external mnt[MOUNTPOINT]:KEY`: mounts restore takes from
    /// outside (`--external mnt[KEY]:PATH` there), by mountpoint.
    pub ext_mnt: BTreeMap<String, String>,
}

impl NsOpts {
    /// Adds the value of one `--empty-ns` option.
    pub fn add_empty(&mut self, v: &str) -> Result<()> {
        for k in v.split(',') {
            match k {
                "net" => self.empty_net = true,
                _ => {
                    return Err(DumpError::EmptyNsArg {
                        value: v.to_string(),
                    }
                    .into())
                }
            }
        }
        Ok(())
    }

    /// Adds a `--external net[INO]:KEY` or `mnt[MOUNTPOINT]:KEY` option;
    /// false when `v` is neither.
    pub fn add_external(&mut self, v: &str) -> Result<bool> {
        let bad = || DumpError::ExternalArg {
            value: v.to_string(),
        };
        let parse = |kind: &str| -> Option<(String, String)> {
            let rest = v.strip_prefix(kind)?.strip_prefix('[')?;
            let (inner, key) = rest.split_once("]:")?;
            Some((inner.to_string(), key.to_string()))
        };
        if let Some((ino, key)) = parse("net") {
            let ino = ino.parse::<u64>().map_err(|_| bad())?;
            if key.is_empty() {
                return Err(bad().into());
            }
            self.ext_net = Some((ino, key));
            return Ok(true);
        }
        if let Some((mp, key)) = parse("mnt") {
            if !mp.starts_with('/') || key.is_empty() {
                return Err(bad().into());
            }
            self.ext_mnt.insert(mp, key);
            return Ok(true);
        }
        Ok(false)
    }
}

#[derive(Debug, Clone, Default)]
pub struct DumpOpts {
    pub pid: i32,
    pub dir: PathBuf,
    pub leave_running: bool,
    pub ext_unix: ExtUnix,
    pub shell_job: bool,
    /// `--orphan-pts-master`: a pty slave whose master is outside the
    /// tree is dumped (a container's console).
    pub orphan_pts_master: bool,
    /// `--freeze-cgroup PATH`: the tree's freezer cgroup (checked to hold
    /// the root; crit freezes with ptrace).
    pub freeze_cgroup: Option<std::path::PathBuf>,
    /// `--notify-fd N`: the action points go to `crit swrk` on fd N.
    pub notify_fd: Option<i32>,
    /// `--action-script CMD`, run at each action point.
    pub action_scripts: Vec<String>,
    pub tcp_established: bool,
    /// `--network-lock`: how connections are locked (and so unlocked by
    /// the restore, which reads it from inventory.img).
    pub network_lock: crate::model::netlock::Method,
    /// `--tcp-close`: connections are recorded without their state (no
    /// repair, no lock); the restore makes them closed sockets.
    pub tcp_close: bool,
    /// `--skip-in-flight`: connections not accepted yet by a listener are
    /// left out instead of refused.
    pub skip_in_flight: bool,
    /// `--file-locks`: the tree's file locks go into filelocks.img
    /// (refused without it).
    pub file_locks: bool,
    /// `--ghost-limit`: the most space a deleted file the tree holds may
    /// take to be dumped (CRIU's default, 1 MiB, is [`super::files::GHOST_LIMIT`]).
    pub ghost_limit: u64,
    pub verbose: u8,
    pub log_file: Option<PathBuf>,
    /// Namespaces: left empty, external.
    pub ns: NsOpts,
    /// `--cpu-cap`: with it, `cpuinfo.img` is written.
    pub cpu_caps: crate::model::cpu::CpuCaps,
    /// `--prev-images-dir`: the dump this one builds on (relative to
    /// `dir`, as in CRIU); pages not written since are left to it.
    pub prev_images_dir: Option<PathBuf>,
    /// `--track-mem`: with `--leave-running`, keep tracking writes after
    /// the dump, for a later dump on top of this one.
    pub track_mem: bool,
    /// `--pre-copy`: copy memory in rounds while the tree runs, then
    /// freeze it for the last pages only.
    pub pre_copy: bool,
    /// Set in the worker process: the `crit dump` that waits, and the
    /// pipe it signals through (see [`super::guard`]).
    pub worker_of: Option<super::guard::WorkerOf>,
    /// `--page-server --address A --port P`: pages go to this page
    /// server instead of the images directory.
    pub page_server: Option<PageServer>,
    /// `--lazy-pages`: leave the lazy pages in the frozen tree and serve
    /// them from there to one lazy-pages daemon.
    pub lazy_pages: Option<LazyServe>,
    /// `--status-fd`: with `--lazy-pages`, gets one zero byte once the
    /// images are written and the pages served, then is closed.
    pub status_fd: Option<i32>,
}

/// Where `dump --lazy-pages` listens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LazyServe {
    /// All IPv4 addresses when None.
    pub address: Option<String>,
    pub port: u16,
    /// `--tls`: the daemon connects with TLS.
    pub tls: Option<crate::pageserver::tls::TlsOpts>,
}

/// Where a page server listens.
#[derive(Clone, Debug, Default)]
pub struct PageServer {
    pub address: String,
    pub port: u16,
    /// `--tls`: the connection is TLS.
    pub tls: Option<crate::pageserver::tls::TlsOpts>,
}

/// What a dump did, for the summary line.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub tasks: usize,
    pub threads: usize,
    pub fds: usize,
    pub sockets: usize,
    pub bytes: u64,
    /// Bytes of pages sent to a page server.
    pub sent: u64,
    pub pages: u64,
    pub frozen: std::time::Duration,
    /// Resuming, or killing and waiting for the tasks to exit.
    pub release: std::time::Duration,
    pub total: std::time::Duration,
    /// The root (pid, session) when it leads no session and the dump was
    /// made without --shell-job: the restore will want that option.
    pub session_outside: Option<(i32, i32)>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dumped {} task(s) ({} thread(s)), {} fd(s), {} socket(s), {:.1} MiB written{}, frozen {:.3} s (release {:.3} s, total {:.3} s)",
            self.tasks,
            self.threads,
            self.fds,
            self.sockets,
            self.bytes as f64 / (1024.0 * 1024.0),
            match self.sent {
                0 => String::new(),
                n => format!(" ({:.1} MiB of pages sent to the page server)", n as f64 / 1048576.0),
            },
            self.frozen.as_secs_f64(),
            self.release.as_secs_f64(),
            self.total.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn ext_unix_forms() {
        let mut e = ExtUnix::default();
        e.add_list("12,34").unwrap();
        e.add_external("unix[56]").unwrap();
        assert!(e.allows(12) && e.allows(34) && e.allows(56) && !e.allows(7));
        assert!(matches!(
            e.add_external("tcp[1]"),
            Err(Error::Dump(DumpError::ExternalArg { value })) if value == "tcp[1]"
        ));
        assert!(matches!(
            e.add_list("x"),
            Err(Error::Dump(DumpError::ExtUnixSkArg { value })) if value == "x"
        ));
        e.add_list("").unwrap();
        assert!(e.allows(7));
    }

    #[test]
    fn ghost_limit_sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("16K").unwrap(), 16 << 10);
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        for bad in ["", "M", "1.5M", "-1", "10T", "99999999999999999999G"] {
            assert!(
                matches!(
                    parse_size(bad),
                    Err(Error::Dump(DumpError::GhostLimitArg { .. }))
                ),
                "{bad:?}"
            );
        }
    }
}
