//! The `crit` command line: parses options and calls into the library.

#![deny(unsafe_code)]

use clap::{Parser, Subcommand};
use crit::detach::say;
use crit::error::Error;
use crit::json::image::DecodeOpts;
use std::io::Write;

#[derive(Parser)]
#[command(
    name = "crit",
    version,
    about = "Checkpoint images in CRIU's format: decode, encode, explore, edit, dump"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Convert a binary image to JSON.
    Decode {
        /// Image to read (stdin by default, or "-").
        #[arg(short = 'i', long = "in")]
        input: Option<String>,
        /// Where to write the JSON (stdout by default, or "-").
        #[arg(short = 'o', long = "out")]
        output: Option<String>,
        /// Indented, with some numbers in field-specific forms.
        #[arg(long)]
        pretty: bool,
    },
    /// Convert JSON back to a binary image.
    Encode {
        /// JSON to read (stdin by default, or "-").
        #[arg(short = 'i', long = "in")]
        input: Option<String>,
        /// Where to write the image (stdout by default, or "-").
        #[arg(short = 'o', long = "out")]
        output: Option<String>,
    },
    /// Print an image as pretty JSON.
    Show {
        #[arg(value_name = "IN")]
        input: String,
        /// Do not show entry payloads, only their size.
        #[arg(long)]
        nopl: bool,
    },
    /// Print an image's magic and entry count.
    Info {
        #[arg(value_name = "IN")]
        input: String,
    },
    /// Freeze a process tree and write its state as CRIU-format images.
    Dump(DumpArgs),
    /// Copy a running tree's memory (pagemap and pages images) and keep
    /// tracking its writes, for a later `dump --prev-images-dir`.
    PreDump(PreDumpArgs),
    /// Internal: holds the write trackers of a pre-dump (see
    /// crit::dump::track::keep).
    #[command(name = "__keep-tracking", hide = true)]
    KeepTracking { name: String },
    /// Serve CRIU's RPC protocol on the SOCK_SEQPACKET socket FD (what
    /// runc and podman run as `criu swrk FD`).
    Swrk {
        #[arg(value_name = "FD")]
        fd: i32,
    },
    /// CRIU's service mode: serve RPC clients that connect to a
    /// SOCK_SEQPACKET socket at the address, one process each.
    Service {
        /// The socket's path.
        #[arg(
            long = "address",
            value_name = "PATH",
            default_value = "./criu_service.socket"
        )]
        address: String,
        /// Run in the background once listening.
        #[arg(short = 'd', long = "daemon")]
        daemon: bool,
        /// Write the service's pid here.
        #[arg(long = "pidfile", value_name = "FILE")]
        pidfile: Option<String>,
        /// Once listening, write messages (a summary, a later error)
        /// to this file, appended, instead of stderr.
        #[arg(short = 'o', long = "log-file", value_name = "FILE")]
        log_file: Option<std::path::PathBuf>,
    },
    /// Check that this kernel and user can run the engines.
    Check,
    /// Serve the memory of a tree restored with `restore --lazy-pages`
    /// from the images in DIR, on demand and in the background.
    LazyPages {
        /// The images (the daemon listens on DIR/lazy-pages.socket).
        #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
        dir: std::path::PathBuf,
        /// Run in the background once listening.
        #[arg(short = 'd', long = "daemon")]
        daemon: bool,
        /// Write the daemon's pid here.
        #[arg(long = "pidfile", value_name = "FILE")]
        pidfile: Option<std::path::PathBuf>,
        /// Once listening, write messages (a summary, a later error)
        /// to this file, appended, instead of stderr.
        #[arg(short = 'o', long = "log-file", value_name = "FILE")]
        log_file: Option<std::path::PathBuf>,
        /// Write one zero byte to fd N once listening, then close it.
        #[arg(long = "status-fd", value_name = "N")]
        status_fd: Option<i32>,
        /// Take the pages from a `page-server --lazy-pages` at
        /// --address/--port instead of DIR's pages images.
        #[arg(long = "page-server", requires_all = ["address", "port"])]
        page_server: bool,
        /// The page server's address.
        #[arg(long = "address", value_name = "ADDR")]
        address: Option<String>,
        /// The page server's port.
        #[arg(long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
        port: Option<u16>,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Take the pages of one dump over TCP (`dump --page-server`, crit's
    /// or criu's) and write them as images into DIR.
    PageServer {
        /// Where to write the pagemap and pages images (created if
        /// missing; may be the dump's own directory).
        #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
        dir: std::path::PathBuf,
        /// Listen on this address (all IPv4 addresses by default).
        #[arg(long = "address", value_name = "ADDR")]
        address: Option<String>,
        /// Listen on this port.
        #[arg(long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// Write one zero byte to fd N once listening, then close it.
        #[arg(long = "status-fd", value_name = "N")]
        status_fd: Option<i32>,
        /// Run in the background once listening.
        #[arg(short = 'd', long = "daemon")]
        daemon: bool,
        /// Write the server's pid here.
        #[arg(long = "pidfile", value_name = "FILE")]
        pidfile: Option<std::path::PathBuf>,
        /// Once listening, write messages (a summary, a later error)
        /// to this file, appended, instead of stderr.
        #[arg(short = 'o', long = "log-file", value_name = "FILE")]
        log_file: Option<std::path::PathBuf>,
        /// The parent images of what the dump sends (relative to DIR):
        /// linked as DIR/parent, where holes must be found.
        #[arg(long = "prev-images-dir", value_name = "DIR")]
        prev_images_dir: Option<std::path::PathBuf>,
        /// Serve the pages of the images in DIR to a lazy-pages daemon
        /// (`lazy-pages --page-server`) instead of receiving a dump's.
        #[arg(long = "lazy-pages")]
        lazy_pages: bool,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Explore an images directory or a checkpoint archive (tar, tar.gz,
    /// tar.zst, as podman and CRI-O export them).
    X {
        /// Images directory or archive.
        dir: String,
        #[arg(value_parser = ["ps", "fds", "mems", "rss", "sk", "mem", "info"])]
        what: String,
        /// mem: the task whose memory to show.
        pid: Option<u32>,
        /// The same information as JSON.
        #[arg(long)]
        json: bool,
        /// ps, sk: a Graphviz graph (dot) instead of text.
        #[arg(long)]
        dot: bool,
        /// mem: dump LEN bytes from address ADDR (0x... for hex).
        #[arg(long, value_name = "ADDR", value_parser = parse_num)]
        addr: Option<u64>,
        /// mem: how many bytes --addr dumps (0x... for hex).
        #[arg(long, value_name = "LEN", value_parser = parse_num)]
        len: Option<u64>,
        /// mem: print every address where TEXT is.
        #[arg(long, value_name = "TEXT", conflicts_with = "search_hex")]
        search: Option<String>,
        /// mem: print every address where these bytes are (hex digits).
        #[arg(long = "search-hex", value_name = "HEX", value_parser = parse_hex)]
        search_hex: Option<HexBytes>,
    },
    /// Change where unix sockets connect on restore (rewrites DIR/files.img).
    Edit {
        /// Images directory.
        dir: std::path::PathBuf,
        /// Make a restore connect socket INO to PATH (/path or @abstract). INO is
        /// a socket whose peer is external, or an external entry itself.
        #[arg(long, value_name = "INO=PATH", value_parser = clap::value_parser!(std::ffi::OsString))]
        reconnect: Vec<std::ffi::OsString>,
        /// Make the connection of in-tree socket INO external: its peer becomes
        /// an outside end at PATH, or at the old peer's address.
        #[arg(long, value_name = "INO[=PATH]", value_parser = clap::value_parser!(std::ffi::OsString))]
        external: Vec<std::ffi::OsString>,
        /// Print the changes but write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Restore a process tree from an images directory.
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
struct DumpArgs {
    /// Pid of the root of the tree to dump.
    #[arg(short = 't', long = "tree", value_name = "PID")]
    tree: i32,
    /// Where to write the images (created if missing; must hold none).
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    images_dir: std::path::PathBuf,
    /// Let the tree run on after the dump instead of killing it.
    #[arg(short = 'R', long = "leave-running")]
    leave_running: bool,
    /// Dump unix sockets whose peer is outside the tree: all of them
    /// (bare), or only the listed socket inodes (=INO[,INO...]).
    #[arg(long = "ext-unix-sk", value_name = "INO[,INO...]", num_args = 0..=1,
      require_equals = true, default_missing_value = "", action = clap::ArgAction::Append)]
    ext_unix_sk: Vec<String>,
    /// An external resource: unix[INO] (the same as --ext-unix-sk=INO),
    /// net[INO]:KEY (the tree's network namespace is the manager's) or
    /// mnt[MOUNTPOINT]:KEY (a mount restore takes from outside).
    #[arg(long = "external", value_name = "RESOURCE", action = clap::ArgAction::Append)]
    external: Vec<String>,
    /// Namespaces not dumped, made empty at restore: net.
    #[arg(long = "empty-ns", value_name = "net", action = clap::ArgAction::Append)]
    empty_ns: Vec<String>,
    /// The tree is a job of the calling shell: dump its terminal.
    #[arg(long = "shell-job")]
    shell_job: bool,
    /// Dump a pty slave whose master is outside the tree (a container's
    /// console); restore makes a new pty and hands its master over.
    #[arg(long = "orphan-pts-master")]
    orphan_pts_master: bool,
    /// The tree's freezer cgroup (as runc names it): checked to hold
    /// the root; crit freezes by seizing every thread.
    #[arg(long = "freeze-cgroup", value_name = "PATH")]
    freeze_cgroup: Option<String>,
    /// Dump established TCP connections (repair mode; locked until a
    /// restore repairs them, or until the dump ends with -R).
    #[arg(long = "tcp-established")]
    tcp_established: bool,
    /// How connections are locked: iptables (default), nftables, or
    /// skip (no lock: keep the peers away yourself).
    #[arg(long = "network-lock", value_name = "METHOD", default_value = "iptables",
          value_parser = ["iptables", "nftables", "skip", "none"])]
    network_lock: String,
    /// Record established TCP connections without their state; a restore
    /// makes them closed sockets.
    #[arg(long = "tcp-close")]
    tcp_close: bool,
    /// Leave out TCP connections a listener has not accepted yet (refused
    /// without it).
    #[arg(long = "skip-in-flight")]
    skip_in_flight: bool,
    /// Dump the tree's file locks (POSIX, OFD, flock) into
    /// filelocks.img (refused without it).
    #[arg(long = "file-locks")]
    file_locks: bool,
    /// The most space a deleted file the tree holds may take to be
    /// dumped into a ghost image: bytes, or with K, M or G (as criu).
    #[arg(long = "ghost-limit", value_name = "SIZE", default_value = "1M")]
    ghost_limit: String,
    /// Record this CPU in cpuinfo.img, for `crit restore --cpu-cap`.
    #[arg(long = "cpu-cap", value_name = "CAPS", num_args = 0..=1,
      require_equals = true, default_missing_value = "")]
    cpu_cap: Option<String>,
    /// More detail on stderr (or in the log file).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Write the log to this file.
    #[arg(short = 'o', long = "log-file", value_name = "LOGFILE")]
    log_file: Option<std::path::PathBuf>,
    /// Build on this earlier pre-dump or dump (relative to the images
    /// directory, as in criu): pages not written since are left to it.
    #[arg(long = "prev-images-dir", value_name = "DIR")]
    prev_images_dir: Option<std::path::PathBuf>,
    /// With -R: keep tracking writes after the dump, for a later dump on
    /// top of this one.
    #[arg(long = "track-mem")]
    track_mem: bool,
    /// Copy memory in rounds while the tree runs, then freeze it only to
    /// copy what was written meanwhile; the images are self-contained.
    #[arg(long = "pre-copy")]
    pre_copy: bool,
    /// Post-copy migration: leave the lazy pages (private anonymous
    /// memory) in the frozen tree and serve them on --address/--port to
    /// one `lazy-pages --page-server`; the tree goes once it has them all.
    #[arg(long = "lazy-pages", requires = "port",
          conflicts_with_all = ["page_server", "pre_copy", "prev_images_dir", "track_mem"])]
    lazy_pages: bool,
    /// With --lazy-pages: write one zero byte to FD once the images are
    /// written and the pages served, then close it.
    #[arg(long = "status-fd", value_name = "FD", requires = "lazy_pages")]
    status_fd: Option<i32>,
    /// Internal: run as the worker of the `crit dump` with this pid.
    #[arg(long = "worker", hide = true, value_name = "PPID,FD")]
    worker: Option<crit::dump::guard::WorkerOf>,
    /// Run CMD (with sh -c) at each action point, as criu does:
    /// CRTOOLS_SCRIPT_ACTION names it (pre-dump, post-restore, ...).
    #[arg(long = "action-script", value_name = "CMD", action = clap::ArgAction::Append)]
    action_script: Vec<String>,
    /// Internal: tell the action points to `crit swrk` on fd N.
    #[arg(long = "notify-fd", hide = true, value_name = "N")]
    notify_fd: Option<i32>,
    #[command(flatten)]
    page_server: PageServerArgs,
}

/// Where a dump sends its pages instead of the images directory.
#[derive(clap::Args)]
struct PageServerArgs {
    /// Send the pages to a page server (crit page-server, or criu's).
    #[arg(long = "page-server", requires_all = ["address", "port"])]
    page_server: bool,
    /// The page server's address (IPv4, IPv6 or a host name).
    #[arg(long = "address", value_name = "ADDR")]
    address: Option<String>,
    /// The page server's port.
    #[arg(long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    #[command(flatten)]
    tls: TlsArgs,
}

impl PageServerArgs {
    fn get(&self) -> crit::error::Result<Option<crit::dump::PageServer>> {
        Ok(match (self.page_server, &self.address, self.port) {
            (true, Some(a), Some(p)) => Some(crit::dump::PageServer {
                address: a.clone(),
                port: p,
                tls: self.tls.get(),
            }),
            _ => None,
        })
    }
}

/// CRIU's TLS options for page server connections; the files default to
/// CRIU's (/etc/pki/...). Without --tls the others change nothing, as
/// in CRIU.
#[derive(clap::Args)]
struct TlsArgs {
    /// Encrypt the page server connection with TLS; both sides present
    /// a certificate and check the other's.
    #[arg(long = "tls")]
    tls: bool,
    /// Trust only certificates signed by these CAs (PEM; default: the
    /// system's CAs and /etc/pki/CA/cacert.pem).
    #[arg(long = "tls-cacert", value_name = "FILE")]
    tls_cacert: Option<std::path::PathBuf>,
    /// Certificate revocation list (PEM; default /etc/pki/CA/cacrl.pem if
    /// it can be read).
    #[arg(long = "tls-cacrl", value_name = "FILE")]
    tls_cacrl: Option<std::path::PathBuf>,
    /// This side's certificate (PEM; default /etc/pki/criu/cert.pem).
    #[arg(long = "tls-cert", value_name = "FILE")]
    tls_cert: Option<std::path::PathBuf>,
    /// This side's private key (PEM; default
    /// /etc/pki/criu/private/key.pem).
    #[arg(long = "tls-key", value_name = "FILE")]
    tls_key: Option<std::path::PathBuf>,
    /// Do not check that the peer's certificate names --address (its
    /// chain is still checked).
    #[arg(long = "tls-no-cn-verify")]
    tls_no_cn_verify: bool,
}

impl TlsArgs {
    fn get(&self) -> Option<crit::pageserver::tls::TlsOpts> {
        self.tls.then(|| crit::pageserver::tls::TlsOpts {
            cacert: self.tls_cacert.clone(),
            cacrl: self.tls_cacrl.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            no_cn_verify: self.tls_no_cn_verify,
        })
    }
}

#[derive(clap::Args)]
struct PreDumpArgs {
    /// Pid of the root of the tree.
    #[arg(short = 't', long = "tree", value_name = "PID")]
    tree: i32,
    /// Where to write the images (created if missing; must hold none).
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    images_dir: std::path::PathBuf,
    /// Build on this earlier pre-dump (relative to the images directory).
    #[arg(long = "prev-images-dir", value_name = "DIR")]
    prev_images_dir: Option<std::path::PathBuf>,
    /// Accepted for criu compatibility: a pre-dump always tracks writes.
    #[arg(long = "track-mem")]
    track_mem: bool,
    /// Accepted for criu compatibility: a pre-dump copies memory only;
    /// the dump on top of it records the locks.
    #[arg(long = "file-locks")]
    file_locks: bool,
    /// Accepted for criu compatibility: a pre-dump copies memory only;
    /// the dump on top of it records deleted files.
    #[arg(long = "ghost-limit", value_name = "SIZE")]
    ghost_limit: Option<String>,
    /// More detail on stderr (or in the log file).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Write the log to this file.
    #[arg(short = 'o', long = "log-file", value_name = "LOGFILE")]
    log_file: Option<std::path::PathBuf>,
    /// Internal: run as the worker of the `crit pre-dump` with this pid.
    #[arg(long = "worker", hide = true, value_name = "PPID,FD")]
    worker: Option<crit::dump::guard::WorkerOf>,
    #[command(flatten)]
    page_server: PageServerArgs,
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// Images directory.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    dir: String,
    /// Return once the tree runs instead of waiting for its root.
    #[arg(short = 'd', long = "restore-detached")]
    detached: bool,
    /// Write the root's pid to this file.
    #[arg(long, value_name = "FILE")]
    pidfile: Option<String>,
    /// Allow reconnecting unix sockets to peers outside the images:
    /// bare for all, INO for one, INO=PATH to reconnect to PATH (@name
    /// for an abstract name).
    #[arg(long = "ext-unix-sk", value_name = "INO[=PATH]", num_args = 0..=1, default_missing_value = "", require_equals = true, action = clap::ArgAction::Append)]
    ext_unix_sk: Vec<String>,
    /// Use crit's fd N for an image resource: socket:[INO], pipe:[INO]
    /// or a file path.
    #[arg(long = "inherit-fd", value_name = "fd[N]:RESOURCE")]
    inherit_fd: Vec<String>,
    /// The root stays in crit's session and process group.
    #[arg(long = "shell-job", short = 'j')]
    shell_job: bool,
    /// The root file system of a tree with its own mount namespace.
    #[arg(short = 'r', long = "root", value_name = "DIR")]
    root: Option<String>,
    /// An external resource: mnt[KEY]:PATH (the mount dumped as KEY is
    /// bound from PATH).
    #[arg(long = "external", value_name = "RESOURCE", action = clap::ArgAction::Append)]
    external: Vec<String>,
    /// Cgroups: soft (default; also full, strict, props: tasks join
    /// their dumped cgroups, made if missing) or none/ignore (they stay
    /// in crit's).
    #[arg(long = "manage-cgroups", value_name = "MODE", num_args = 0..=1,
          require_equals = true, default_missing_value = "soft")]
    manage_cgroups: Option<String>,
    /// The root task's cgroup becomes PATH (its tree's cgroups keep their
    /// places below it): [CONTROLLER:]/PATH, for one controller's
    /// hierarchy or, without one, for all others. Repeatable.
    #[arg(long = "cgroup-root", value_name = "[CONTROLLER:]/PATH", action = clap::ArgAction::Append)]
    cgroup_root: Vec<String>,
    /// Restore established TCP connections (accepted for compatibility
    /// with criu: a connection in the images is restored with or without it).
    #[arg(long = "tcp-established")]
    tcp_established: bool,
    /// Restore established TCP connections closed, and unlock them.
    #[arg(long = "tcp-close")]
    tcp_close: bool,
    /// Accepted as CRIU has it, and ignored as CRIU ignores it: the
    /// restore lifts the lock the dump recorded in inventory.img.
    #[arg(long = "network-lock", value_name = "METHOD",
          value_parser = ["iptables", "nftables", "skip", "none"])]
    network_lock: Option<String>,
    /// Take the file locks of filelocks.img again (images holding
    /// locks are refused without it).
    #[arg(long = "file-locks")]
    file_locks: bool,
    /// CPU checks: fpu, ins, cpu, all or none, "^" to negate (bare:
    /// all, against cpuinfo.img). Without it, only the xsave state the
    /// threads use must fit this CPU; none drops what does not fit.
    #[arg(long = "cpu-cap", value_name = "CAPS", num_args = 0..=1,
          require_equals = true, default_missing_value = "")]
    cpu_cap: Option<String>,
    /// More messages (repeat for more).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Also write messages to this file.
    #[arg(short = 'o', long = "log-file", value_name = "LOGFILE")]
    log_file: Option<String>,
    /// Where the master of a pty made anew goes (a pty slave dumped with
    /// --orphan-pts-master): a unix socket, sent as runc's console
    /// socket protocol has it (one message, the fd as SCM_RIGHTS).
    #[arg(long = "console-socket", value_name = "PATH")]
    console_socket: Option<String>,
    /// Run CMD (with sh -c) at each action point, as criu does:
    /// CRTOOLS_SCRIPT_ACTION names it (pre-dump, post-restore, ...).
    #[arg(long = "action-script", value_name = "CMD", action = clap::ArgAction::Append)]
    action_script: Vec<String>,
    /// Internal: tell the action points to `crit swrk` on fd N.
    #[arg(long = "notify-fd", hide = true, value_name = "N")]
    notify_fd: Option<i32>,
    /// Leave private anonymous memory to a lazy-pages daemon (crit
    /// lazy-pages or criu's) listening in the images directory: the tree
    /// runs at once, its pages come on demand and in the background.
    #[arg(long = "lazy-pages")]
    lazy_pages: bool,
    /// Bring the dumped vDSO back as a proxy that leads to this kernel's,
    /// as on another kernel, even where it is this kernel's own.
    #[arg(long = "force-vdso-proxy")]
    force_vdso_proxy: bool,
    /// Restore into an existing namespace instead of a new one: uts, ipc
    /// or net, given by a task's pid or a namespace file (repeatable).
    #[arg(long = "join-ns", value_name = "NS:PID|NS_FILE", action = clap::ArgAction::Append)]
    join_ns: Vec<String>,
}

fn run(cli: Cli) -> crit::error::Result<()> {
    match cli.cmd {
        Cmd::Decode {
            input,
            output,
            pretty,
        } => crit::toolkit::decode(
            input.as_deref(),
            output.as_deref(),
            DecodeOpts {
                pretty,
                nopl: false,
            },
        ),
        Cmd::Encode { input, output } => crit::toolkit::encode(input.as_deref(), output.as_deref()),
        Cmd::Show { input, nopl } => {
            crit::toolkit::decode(Some(&input), None, DecodeOpts { pretty: true, nopl })
        }
        Cmd::Info { input } => crit::toolkit::info(&input),
        Cmd::Dump(a) => dump(a),
        Cmd::PreDump(a) => pre_dump(a),
        Cmd::KeepTracking { name } => std::process::exit(crit::dump::track::keep::serve(&name)),
        Cmd::X {
            dir,
            what,
            pid,
            json,
            dot,
            addr,
            len,
            search,
            search_hex,
        } => {
            let opts = crit::explore::Opts {
                json,
                dot,
                pid,
                addr,
                len,
                search: search.map(String::into_bytes).or(search_hex.map(|h| h.0)),
            };
            crit::explore::run(std::path::Path::new(&dir), &what, &opts)
        }
        Cmd::Edit {
            dir,
            reconnect,
            external,
            dry_run,
        } => crit::edit::run(&dir, &reconnect, &external, dry_run),
        Cmd::Restore(a) => restore(a),
        Cmd::Swrk { fd } => crit::rpc::swrk(fd),
        Cmd::Service {
            address,
            daemon,
            pidfile,
            log_file,
        } => crit::rpc::service::serve(
            std::path::Path::new(&address),
            daemon,
            pidfile.as_deref().map(std::path::Path::new),
            log_file.as_deref(),
        ),
        Cmd::LazyPages {
            dir,
            daemon,
            pidfile,
            status_fd,
            page_server,
            address,
            port,
            log_file,
            tls,
        } => crit::lazy::daemon::run(&crit::lazy::daemon::DaemonOpts {
            tls: tls.get(),
            dir,
            daemon,
            pidfile,
            status_fd,
            log_file,
            page_server: match (page_server, address, port) {
                (true, Some(a), Some(p)) => Some((a, p)),
                _ => None,
            },
        }),
        Cmd::PageServer {
            dir,
            address,
            port,
            status_fd,
            daemon,
            pidfile,
            prev_images_dir,
            lazy_pages,
            tls,
            log_file,
        } => crit::pageserver::server::run(&crit::pageserver::server::ServerOpts {
            tls: tls.get(),
            dir,
            address,
            port,
            status_fd,
            daemon,
            pidfile,
            prev_images_dir,
            lazy: lazy_pages,
            log_file,
        }),
        Cmd::Check => match crit::rpc::check() {
            Ok(()) => {
                let _ = writeln!(std::io::stdout(), "Looks good.");
                Ok(())
            }
            Err(missing) => Err(Error::Missing(missing)),
        },
    }
}

/// Run through a symlink named `criu` (a container manager's engine),
/// `criu --version` answers as CRIU 4.2 does, so version checks pass.
fn as_criu_version() {
    let me = std::env::args().next().unwrap_or_default();
    let named_criu = std::path::Path::new(&me)
        .file_name()
        .is_some_and(|n| n == "criu");
    let first = std::env::args().nth(1);
    if named_criu && matches!(first.as_deref(), Some("--version" | "-V")) {
        let _ = writeln!(std::io::stdout(), "Version: 4.2");
        std::process::exit(0);
    }
}

/// Runs this command again as a worker process and exits with its
/// status (see crit::dump::guard).
fn in_worker(what: &str, tree: i32, images_dir: &std::path::Path) -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(crit::dump::guard::run_in_worker(
        &args, what, tree, images_dir,
    ))
}

/// `crit dump`: in a worker process, so that killing this one never
/// leaves the tree frozen (see crit::dump::guard).
fn dump(a: DumpArgs) -> crit::error::Result<()> {
    if a.worker.is_none() {
        in_worker("dump", a.tree, &a.images_dir);
    }
    let mut ext = crit::dump::ExtUnix::default();
    for v in &a.ext_unix_sk {
        ext.add_list(v)?;
    }
    let mut ns = crit::dump::NsOpts::default();
    for v in &a.empty_ns {
        ns.add_empty(v)?;
    }
    for v in &a.external {
        if !ns.add_external(v)? {
            ext.add_external(v)?;
        }
    }
    let opts = crit::dump::DumpOpts {
        ns,
        pid: a.tree,
        dir: a.images_dir,
        leave_running: a.leave_running,
        ext_unix: ext,
        shell_job: a.shell_job,
        orphan_pts_master: a.orphan_pts_master,
        tcp_established: a.tcp_established,
        network_lock: crit::model::netlock::Method::of_name(&a.network_lock).unwrap_or_default(),
        tcp_close: a.tcp_close,
        skip_in_flight: a.skip_in_flight,
        file_locks: a.file_locks,
        ghost_limit: crit::dump::parse_size(&a.ghost_limit)?,
        cpu_caps: cpu_caps(a.cpu_cap.as_deref())?,
        verbose: a.verbose,
        log_file: a.log_file,
        worker_of: a.worker,
        prev_images_dir: a.prev_images_dir,
        track_mem: a.track_mem,
        pre_copy: a.pre_copy,
        notify_fd: a.notify_fd,
        action_scripts: a.action_script,
        freeze_cgroup: a.freeze_cgroup.map(Into::into),
        lazy_pages: a.lazy_pages.then(|| crit::dump::LazyServe {
            address: a.page_server.address.clone(),
            port: a.page_server.port.unwrap_or_default(),
            tls: a.page_server.tls.get(),
        }),
        status_fd: a.status_fd,
        page_server: a.page_server.get()?,
    };
    let summary = crit::dump::dump(&opts)?;
    // As CRIU would refuse the dump, say so before the restore refuses.
    if let Some((pid, sid)) = summary.session_outside {
        say(&format!(
            "crit: note: pid {pid} leads no session (its session {sid} is outside the tree): restore it with --shell-job"
        ));
    }
    say(&format!("crit: {summary}"));
    Ok(())
}

/// `crit pre-dump`: in a worker process, as `crit dump`.
fn pre_dump(a: PreDumpArgs) -> crit::error::Result<()> {
    if a.worker.is_none() {
        in_worker("pre-dump", a.tree, &a.images_dir);
    }
    let _ = (a.track_mem, a.file_locks);
    if let Some(v) = &a.ghost_limit {
        crit::dump::parse_size(v)?;
    }
    let opts = crit::dump::DumpOpts {
        pid: a.tree,
        dir: a.images_dir,
        leave_running: true,
        verbose: a.verbose,
        log_file: a.log_file,
        worker_of: a.worker,
        prev_images_dir: a.prev_images_dir,
        track_mem: true,
        page_server: a.page_server.get()?,
        ghost_limit: crit::dump::GHOST_LIMIT,
        ..Default::default()
    };
    let r = crit::dump::predump::pre_dump(&opts)?;
    say(&format!("crit: pre-dumped {r}"));
    Ok(())
}

/// `crit restore`: exits with the root's status (0 when detached).
fn restore(a: RestoreArgs) -> crit::error::Result<()> {
    if a.network_lock.is_some() {
        say("crit: --network-lock is ignored by restore: the lock the dump recorded in inventory.img is lifted");
    }
    let mut o = crit::restore::Options {
        dir: a.dir.into(),
        detached: a.detached,
        pidfile: a.pidfile.map(Into::into),
        shell_job: a.shell_job,
        tcp_established: a.tcp_established,
        tcp_close: a.tcp_close,
        file_locks: a.file_locks,
        cpu_caps: cpu_caps(a.cpu_cap.as_deref())?,
        verbose: a.verbose,
        log_file: a.log_file.map(Into::into),
        console_socket: a.console_socket.map(Into::into),
        lazy_pages: a.lazy_pages,
        force_vdso_proxy: a.force_vdso_proxy,
        notify_fd: a.notify_fd,
        action_scripts: a.action_script,
        ..Default::default()
    };
    for v in &a.ext_unix_sk {
        o.ext_unix.add(v)?;
    }
    for v in &a.inherit_fd {
        o.inherit_fds.push(crit::restore::parse_inherit_fd(v)?);
    }
    for v in &a.join_ns {
        o.join_ns.push(crit::restore::ns::join::JoinNs::parse(v)?);
    }
    o.root = a.root.map(Into::into);
    for v in &a.cgroup_root {
        o.cgroup_roots.push(crit::restore::parse_cgroup_root(v)?);
    }
    if let Some(m) = &a.manage_cgroups {
        o.manage_cgroups = crit::restore::CgMode::parse(m)?;
    }
    for v in &a.external {
        let (key, path) = crit::restore::parse_ext_mount(v)?;
        o.ext_mnt.insert(key, path);
    }
    std::process::exit(crit::restore::restore(&o)?);
}

/// `--cpu-cap[=CAPS]`, or CRIU's default without the option.
fn cpu_caps(v: Option<&str>) -> crit::error::Result<crit::model::cpu::CpuCaps> {
    use crit::model::cpu::CpuCaps;
    v.map_or(Ok(CpuCaps::default()), CpuCaps::parse)
}

fn main() {
    as_criu_version();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            // clap's message spans several lines: the error, what it names
            // (missing arguments, one per line), then usage and tips. Keep
            // the first two on one line.
            let text = e.to_string();
            let head: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
                .map(str::trim)
                .collect();
            let line = head.join(" ");
            let line = line.strip_prefix("error: ").unwrap_or(&line);
            let line = if line.is_empty() {
                "bad arguments"
            } else {
                line
            };
            say(&format!("crit: {line} (see crit --help)"));
            std::process::exit(1);
        }
    };
    match run(cli) {
        Ok(()) => {}
        // A reader that went away (`crit show x.img | head`) is a normal end.
        Err(e) if e.is_broken_pipe() => {}
        Err(e) => {
            // Not eprintln!: stderr may be a server's -o file that cannot
            // be written, and the status must still be 1, not a panic's.
            say(&format!("crit: {}", one_line(&e)));
            std::process::exit(1);
        }
    }
}

fn one_line(e: &Error) -> String {
    e.to_string().replace('\n', " ")
}

/// A number in decimal, or in hex after `0x`.
fn parse_num(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not a number (decimal, or hex after 0x)"))
}

/// Bytes given as hex digits (one value for clap, not a list of u8).
#[derive(Clone)]
struct HexBytes(Vec<u8>);

/// Bytes as hex digits, spaces allowed between them.
fn parse_hex(s: &str) -> Result<HexBytes, String> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return Err(format!("{s:?}: an odd number of hex digits"));
    }
    digits
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("{s:?} is not hex"))
        })
        .collect::<Result<_, _>>()
        .map(HexBytes)
}
