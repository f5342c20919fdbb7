//! Carries out a [`UnixPlan`] in crit, before the tree is forked: makes
//! the sockets of each step, refills the queues, finishes the sockets and
//! hands everything to the reservoir (the tasks' share of the plan goes
//! there too).

use super::addr::{self, Addr};
use super::plan::{self, Sender, Step, TaskInfo, UnixPlan};
use super::task::{finish_socket, send_packet};
use crate::error::{Error, Result};
use crate::model::unix::{display_name, Sock};
use crate::restore::error::{FileError, FileFault, On};
use crate::restore::plan::Plan;
use crate::restore::reservoir::Reservoir;
use crate::restore::{Log, Options};
use nix::sys::socket::{self as so, AddressFamily, Backlog, SockFlag};
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Makes every unix socket of the images and puts it into the reservoir.
pub fn open_unix(plan: &Plan, opts: &Options, res: &mut Reservoir, log: &Log) -> Result<()> {
    let m = &plan.unix;
    if m.socks.is_empty() {
        return Ok(());
    }
    let inherited_fds = plan::inherited(m, &opts.inherit_fds).map_err(refused)?;
    let mut inherited: HashMap<u32, OwnedFd> = HashMap::new();
    for (n, ino) in inherited_fds {
        let fd = crate::sys::sock::dup_raw(n)
            .map_err(|source| FileError::InheritDup { fd: n, source })?;
        inherited.insert(ino, fd);
    }
    let tree: Vec<TaskInfo> = plan
        .tasks
        .iter()
        .map(|t| TaskInfo {
            pid: t.pid,
            ppid: t.ppid,
            zombie: t.zombie.is_some(),
        })
        .collect();
    let inherited_inos: HashSet<u32> = inherited.keys().copied().collect();
    let up = plan::plan(&plan::Input {
        model: m,
        tree: &tree,
        ext: &opts.ext_unix,
        inherited: &inherited_inos,
    })
    .map_err(refused)?;
    let mut x = Exec {
        plan,
        res,
        made: HashMap::new(),
        orphans: HashMap::new(),
    };
    for step in &up.steps {
        x.run(step)?;
    }
    let temps = x.replay(&up)?;
    // The other ends of orphaned connections go: their peers read EOF.
    x.orphans.clear();
    for &ino in &up.finish {
        if let Some(fd) = x.made.get(&ino) {
            let s = sock(m, ino)?;
            finish_socket(fd, &s.e, m.peer(s).map(|p| &p.e))?;
        }
    }
    for n in &up.notes {
        if n.is_warning() {
            log.warn(n.to_string());
        } else {
            log.info(n.to_string());
        }
    }
    let Exec { mut made, .. } = x;
    made.extend(inherited);
    hand_over(plan, up, made, temps, res)
}

fn refused(r: plan::Refusal) -> Error {
    crate::restore::error::RestoreError::from(r).into()
}

fn sock(m: &crate::model::unix::Model, ino: u32) -> Result<&Sock> {
    m.get(ino).ok_or_else(|| {
        FileError::Refused {
            on: On::Unix(ino),
            why: FileFault::NotInImages,
        }
        .into()
    })
}

/// A failed call on unix socket `ino`, as an error naming it.
fn on_unix(ino: u32, what: &'static str) -> impl FnOnce(nix::Error) -> Error {
    move |source| {
        FileError::Nix {
            on: On::Unix(ino),
            what,
            source,
        }
        .into()
    }
}

/// The same, with the call's argument (a path, an address, a socket).
fn on_unix_arg(
    ino: u32,
    what: &'static str,
    arg: impl std::fmt::Display,
) -> impl FnOnce(nix::Error) -> Error {
    move |source| {
        FileError::NixArg {
            on: On::Unix(ino),
            what,
            arg: arg.to_string(),
            source,
        }
        .into()
    }
}

/// Puts every socket into the reservoir: held ones by file id, the rest
/// kept alive until the tree runs; and the tasks' share of the plan.
fn hand_over(
    plan: &Plan,
    up: UnixPlan,
    mut made: HashMap<u32, OwnedFd>,
    temps: Vec<OwnedFd>,
    res: &mut Reservoir,
) -> Result<()> {
    let in_flight = plan.in_flight_only();
    for s in &plan.unix.socks {
        if let Some(fd) = made.remove(&s.ino()) {
            // One only in flight, for the tasks that send its message.
            if s.is_held() || in_flight.binary_search(&s.id).is_ok() {
                res.by_id.insert(s.id, fd);
            } else {
                res.keep.push(fd);
            }
        }
    }
    res.keep.extend(temps);
    res.task_pairs = up.task_pairs;
    res.task_conns = up.task_conns;
    for x in up.ext_connects {
        let a = addr::of(&x.target, x.ino)?;
        res.ext_connects
            .push(crate::restore::reservoir::ExtConnect {
                id: x.id,
                ino: x.ino,
                addr: a.addr,
            });
    }
    Ok(())
}

struct Exec<'a> {
    plan: &'a Plan,
    res: &'a mut Reservoir,
    made: HashMap<u32, OwnedFd>,
    /// The other end of each orphaned connection, by the socket's inode.
    orphans: HashMap<u32, OwnedFd>,
}

impl Exec<'_> {
    fn sock(&self, ino: u32) -> Result<&Sock> {
        sock(&self.plan.unix, ino)
    }

    fn new_sock(&self, ino: u32) -> Result<OwnedFd> {
        let t = self.sock(ino)?.e.r#type;
        so::socket(
            AddressFamily::Unix,
            addr::sock_type(t),
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(on_unix(ino, "socket"))
    }

    fn pair(&self, ino: u32, with: Option<u32>) -> Result<(OwnedFd, OwnedFd)> {
        let t = self.sock(ino)?.e.r#type;
        so::socketpair(
            AddressFamily::Unix,
            addr::sock_type(t),
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|err| match with {
            Some(p) => on_unix_arg(ino, "socketpair with", p)(err),
            None => on_unix(ino, "socketpair")(err),
        })
    }

    fn addr(&self, ino: u32) -> Result<Addr> {
        let e = &self.sock(ino)?.e;
        let t = plan::target(&e.name, e.name_dir.as_deref(), ino).map_err(refused)?;
        addr::of(&t, ino)
    }

    /// Binds `fd` to socket `ino`'s name (a stale socket file from the
    /// dumped run is removed first) and sets the file's mode and owner; a
    /// socket deleted at dump is unlinked again at once.
    fn bind(&mut self, fd: &OwnedFd, ino: u32) -> Result<()> {
        let a = self.addr(ino)?;
        let e = self.sock(ino)?.e.clone();
        let Some(full) = a.full_path() else {
            return so::bind(fd.as_raw_fd(), &a.addr).map_err(on_unix_arg(
                ino,
                "bind",
                display_name(&e.name),
            ));
        };
        let deleted = e.deleted == Some(true);
        // Whatever is at a deleted socket's path now is not the socket's
        // (another file, another socket): it is moved aside for the bind
        // and put back, as CRIU 4.2 does, never removed.
        let aside = if deleted {
            Self::move_aside(&full, ino)?
        } else {
            self.clear_stale(&full, &a, ino)?;
            None
        };
        // (What was moved aside, its note covers: the name may hold it
        // again by the time the janitor looks.)
        if aside.is_none() {
            crate::restore::janitor::note_binding(&full);
        }
        let bound = addr::in_dir(a.dir.as_deref(), || so::bind(fd.as_raw_fd(), &a.addr));
        // A deleted socket's file goes at once; what was moved aside comes
        // back whatever happened, before any error is passed on.
        let unlinked = match (&bound, deleted) {
            (Ok(Ok(())), true) => std::fs::remove_file(&full),
            _ => Ok(()),
        };
        if let Some(tmp) = aside {
            std::fs::rename(&tmp, &full).map_err(|source| FileError::IoArg {
                on: On::Unix(ino),
                what: "move back",
                arg: tmp.display().to_string(),
                source,
            })?;
        }
        bound?.map_err(on_unix_arg(ino, "bind", full.display()))?;
        unlinked.map_err(|source| FileError::IoArg {
            on: On::Unix(ino),
            what: "unlink",
            arg: full.display().to_string(),
            source,
        })?;
        if deleted {
            return Ok(());
        }
        if let Some(perm) = &e.file_perms {
            let _ = std::fs::set_permissions(
                &full,
                std::os::unix::fs::PermissionsExt::from_mode(perm.mode & 0o7777),
            );
            let _ = std::os::unix::fs::lchown(&full, Some(perm.uid), Some(perm.gid));
        }
        let bound =
            crate::restore::made::Entry::record(&full).map_err(|source| FileError::Path {
                on: On::Unix(ino),
                path: full.clone(),
                source,
            })?;
        crate::restore::janitor::note_file(&bound);
        self.res.created_paths.push(bound);
        Ok(())
    }

    /// Renames what is at `path` (if anything) to a name of its own in the
    /// same directory, which it returns.
    fn move_aside(path: &std::path::Path, ino: u32) -> Result<Option<std::path::PathBuf>> {
        if std::fs::symlink_metadata(path).is_err() {
            return Ok(None);
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".crit-aside-{ino}-{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        crate::restore::janitor::note_aside(path, &tmp);
        std::fs::rename(path, &tmp).map_err(|source| FileError::IoArg {
            on: On::Unix(ino),
            what: "move aside the file at the deleted socket's path",
            arg: path.display().to_string(),
            source,
        })?;
        Ok(Some(tmp))
    }

    /// A socket file left at `path` by the dumped run is in the way and
    /// goes; one a live socket is bound to (another process, or another
    /// restore of the same images) is a refusal, never a takeover.
    /// Whether it is live is asked of the socket file itself (a connect
    /// that sends nothing), not of sock_diag, which shows only crit's
    /// network namespace: a live socket of the host reached through a
    /// container's bind mount is seen too.
    fn clear_stale(&mut self, path: &std::path::Path, a: &Addr, ino: u32) -> Result<()> {
        let Ok(m) = std::fs::symlink_metadata(path) else {
            return Ok(());
        };
        if !std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) {
            return Ok(());
        }
        if self.is_live(a, ino)? {
            return Err(FileError::Refused {
                on: On::Unix(ino),
                why: FileFault::BoundByLive(path.to_path_buf()),
            }
            .into());
        }
        let (dev, file) = (
            std::os::unix::fs::MetadataExt::dev(&m),
            std::os::unix::fs::MetadataExt::ino(&m),
        );
        // Only the file checked: not one bound there since.
        let same = std::fs::symlink_metadata(path).is_ok_and(|n| {
            std::os::unix::fs::MetadataExt::ino(&n) == file
                && std::os::unix::fs::MetadataExt::dev(&n) == dev
        });
        if same {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    /// Whether a socket is bound to the file at `a` ([`addr::bound_at`]).
    fn is_live(&self, a: &Addr, ino: u32) -> Result<bool> {
        addr::in_dir(a.dir.as_deref(), || addr::bound_at(&a.addr))?.map_err(on_unix(ino, "socket"))
    }

    fn connect(fd: &OwnedFd, a: &Addr, ino: u32) -> Result<()> {
        addr::in_dir(a.dir.as_deref(), || so::connect(fd.as_raw_fd(), &a.addr))?
            .map_err(on_unix_arg(ino, "connect to", a.addr))
    }

    fn run(&mut self, step: &Step) -> Result<()> {
        match *step {
            Step::Listen { ino } => {
                let fd = self.new_sock(ino)?;
                let e = self.sock(ino)?.e.clone();
                if !e.name.is_empty() {
                    self.bind(&fd, ino)?;
                }
                let backlog =
                    Backlog::new(e.backlog.min(i32::MAX as u32) as i32).unwrap_or(Backlog::MAXCONN);
                so::listen(&fd, backlog).map_err(on_unix(ino, "listen"))?;
                self.made.insert(ino, fd);
            }
            Step::Bind { ino } => {
                let fd = self.new_sock(ino)?;
                self.bind(&fd, ino)?;
                self.made.insert(ino, fd);
            }
            Step::Connect { ino, ref to } => {
                let a = addr::of(to, ino)?;
                let fd = self.made.get(&ino).ok_or(FileError::Refused {
                    on: On::Unix(ino),
                    why: FileFault::SenderNotMade,
                })?;
                Self::connect(fd, &a, ino)?;
            }
            Step::Pair { a, b } => {
                let (x, y) = self.pair(a, Some(b))?;
                self.made.insert(a, x);
                self.made.insert(b, y);
            }
            Step::Client { ino } => {
                // Non-blocking until the acceptor sets its flags: the
                // connector then sees a full backlog as EAGAIN.
                let c = self.new_sock(ino)?;
                crate::sys::fdops::set_status_flags(c.as_raw_fd(), libc::O_NONBLOCK).map_err(
                    |source| FileError::Io {
                        on: On::Unix(ino),
                        what: "set flags",
                        source,
                    },
                )?;
                self.made.insert(ino, c);
            }
            Step::ConnectAccept { cli, acc, listener } => {
                let c = self.new_sock(cli)?;
                Self::connect(&c, &self.addr(acc)?, cli)?;
                let l =
                    self.made
                        .get(&listener)
                        .map(|f| f.as_raw_fd())
                        .ok_or(FileError::Refused {
                            on: On::Unix(acc),
                            why: FileFault::ListenerNotMade(listener),
                        })?;
                let a = crate::sys::sock::accept(l).map_err(|source| FileError::IoArg {
                    on: On::Unix(acc),
                    what: "accept on",
                    arg: listener.to_string(),
                    source,
                })?;
                self.made.insert(cli, c);
                self.made.insert(acc, a);
            }
            Step::Orphan { ino } => {
                let (a, b) = self.pair(ino, None)?;
                self.orphans.insert(ino, b);
                self.made.insert(ino, a);
            }
            Step::Single {
                ino,
                bind,
                ref connect,
            } => {
                let fd = self.new_sock(ino)?;
                if bind {
                    self.bind(&fd, ino)?;
                }
                if let Some(t) = connect {
                    Self::connect(&fd, &addr::of(t, ino)?, ino)?;
                }
                self.made.insert(ino, fd);
            }
        }
        Ok(())
    }

    /// Sends every queued packet crit refills, in image order, from the
    /// socket the plan names. Returns the temporary senders (kept alive
    /// until the tree runs, as the queued datagrams name them).
    fn replay(&mut self, up: &UnixPlan) -> Result<Vec<OwnedFd>> {
        let m = &self.plan.unix;
        let mut temps: HashMap<u32, OwnedFd> = HashMap::new();
        for pkt in &self.plan.packets {
            let Some(s) = m.by_id(pkt.id_for) else {
                return Err(FileError::QueueNotUnix { id: pkt.id_for }.into());
            };
            let ino = s.ino();
            let from: RawFd = match up.senders.get(&ino) {
                None => continue,
                Some(Sender::Made(x)) => self.made.get(x).map(|f| f.as_raw_fd()),
                Some(Sender::Orphan) => self.orphans.get(&ino).map(|f| f.as_raw_fd()),
                Some(Sender::Temp) => match temps.entry(ino) {
                    std::collections::hash_map::Entry::Occupied(o) => Some(o.get().as_raw_fd()),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let t = self.new_sock(ino)?;
                        Self::connect(&t, &self.addr(ino)?, ino)?;
                        Some(v.insert(t).as_raw_fd())
                    }
                },
            }
            .ok_or(FileError::Refused {
                on: On::Unix(ino),
                why: FileFault::SenderNotMade,
            })?;
            let (res, made) = (&*self.res, &self.made);
            let fd_of = |id: u32| {
                res.raw(id).or_else(|| {
                    m.by_id(id)
                        .and_then(|x| made.get(&x.ino()))
                        .map(|f| f.as_raw_fd())
                })
            };
            send_packet(from, pkt, ino, &fd_of)?;
        }
        Ok(temps.into_values().collect())
    }
}
