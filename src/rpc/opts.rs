//! A request's `criu_opts` as the command line of `crit dump` or `crit
//! restore`. Every field a client set is either carried over or refused
//! by name: none is silently dropped.

use crate::image::rpc_pb::{CriuCgMode, CriuOpts};
use std::path::{Path, PathBuf};

/// Why a request cannot be served as asked.
#[derive(Debug, thiserror::Error)]
pub enum OptsError {
    #[error("criu_opts.{0} is not supported by crit")]
    Unsupported(&'static str),
    #[error("criu_opts.{field}: {why}")]
    Bad { field: &'static str, why: String },
}

/// Where the client's fds and files are: its pid (SO_PEERCRED) and the
/// images and work directories as crit reaches them.
pub struct Dirs {
    pub images: PathBuf,
    pub work: PathBuf,
}

/// Refuses, on a DUMP or PRE_DUMP, what only a RESTORE takes.
fn restore_only(o: &CriuOpts) -> Result<(), OptsError> {
    if !o.join_ns.is_empty() {
        return Err(OptsError::Bad {
            field: "join_ns",
            why: "for a RESTORE only".into(),
        });
    }
    Ok(())
}

/// Refuses every set field crit does not honour.
fn refuse_unsupported(o: &CriuOpts) -> Result<(), OptsError> {
    let set: [(&'static str, bool); 16] = [
        (
            "ps.fd (a page server connection handed in)",
            o.ps.as_ref().is_some_and(|p| p.fd.is_some()),
        ),
        ("auto_dedup", o.auto_dedup == Some(true)),
        ("veths", !o.veths.is_empty()),
        ("exec_cmd", !o.exec_cmd.is_empty()),
        ("auto_ext_mnt", o.auto_ext_mnt == Some(true)),
        ("ext_sharing", o.ext_sharing == Some(true)),
        ("ext_masters", o.ext_masters == Some(true)),
        ("skip_mnt", !o.skip_mnt.is_empty()),
        ("enable_fs", !o.enable_fs.is_empty()),
        ("cgroup_props", o.cgroup_props.is_some()),
        ("cgroup_props_file", o.cgroup_props_file.is_some()),
        (
            "cgroup_dump_controller",
            !o.cgroup_dump_controller.is_empty(),
        ),
        ("lsm_profile", o.lsm_profile.is_some()),
        ("cgroup_yard", o.cgroup_yard.is_some()),
        ("lsm_mount_context", o.lsm_mount_context.is_some()),
        ("unprivileged", o.unprivileged == Some(true)),
    ];
    if let Some((name, _)) = set.iter().find(|(_, on)| *on) {
        return Err(OptsError::Unsupported(name));
    }
    // orphan_pts_master (runc always sets it): a pty slave whose master
    // is outside the tree is dumped; at restore a new pty's master goes
    // to the client with the orphan-pts-master notification (which needs
    // notify_scripts, as in CRIU).
    // Accepted because they change nothing crit does: evasive_devices
    // (crit opens device files by path anyway), link_remap, force_irmap,
    // irmap_scan_paths, weak_sysctls, timeout,
    // skip_file_rwx_check, mntns_compat_mode, pre_dump_mode,
    // display_stats, log_to_stderr, network_lock on a PRE_DUMP or
    // RESTORE (a DUMP passes it on; a restore lifts the dump's lock),
    // pidfd_store_sk (pid reuse between pre-dumps, which crit refuses).
    // freeze_cgroup: crit freezes the tree by seizing every thread with
    // ptrace (catching forks that race it), which is what the freezer
    // cgroup is for; the path must exist, and a dump checks that it
    // holds the tree's root (`--freeze-cgroup`).
    if let Some(p) = &o.freeze_cgroup {
        if !Path::new(p).is_dir() {
            return Err(OptsError::Bad {
                field: "freeze_cgroup",
                why: format!("{p} is not a cgroup directory"),
            });
        }
    }
    // config_file: runc names /etc/criu/runc.conf whether or not it
    // exists; options in one are not read, so one that has any is refused.
    if let Some(c) = &o.config_file {
        let text = std::fs::read_to_string(c).unwrap_or_default();
        if text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        {
            return Err(OptsError::Bad {
                field: "config_file",
                why: format!("{c} holds options, which crit does not read"),
            });
        }
    }
    for r in &o.cg_root {
        check_cg_root(r.ctrl.as_deref(), &r.path)?;
    }
    if o.leave_stopped == Some(true) {
        return Err(OptsError::Unsupported("leave_stopped"));
    }
    Ok(())
}

/// `cg_root`: restored tasks stay in crit's own cgroups (the manager
/// moves its engine into the container's before a restore), so a root
/// is honoured when crit is in it, and refused otherwise.
fn check_cg_root(ctrl: Option<&str>, path: &str) -> Result<(), OptsError> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let want = path.trim_end_matches('/');
    for l in own.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, at) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let named = ctrl.is_none_or(|c| c.split(',').all(|p| ctrls.split(',').any(|x| x == p)));
        // Only hierarchies with controllers (v1) or the v2 one in use.
        if !named || (ctrls.is_empty() && at == "/") {
            continue;
        }
        if !(at == want || at.starts_with(&format!("{want}/"))) {
            return Err(OptsError::Bad {
                field: "cg_root",
                why: format!(
                    "{path}: crit leaves restored tasks in its own cgroups, and it is in {at} ({ctrls})"
                ),
            });
        }
    }
    Ok(())
}

fn common(o: &CriuOpts, d: &Dirs, log: &str, args: &mut Vec<String>) {
    args.push("-D".into());
    args.push(d.images.display().to_string());
    if o.shell_job == Some(true) {
        args.push("--shell-job".into());
    }
    if o.tcp_established == Some(true) {
        args.push("--tcp-established".into());
    }
    if o.tcp_close == Some(true) {
        args.push("--tcp-close".into());
    }
    if o.file_locks == Some(true) {
        args.push("--file-locks".into());
    }
    log_args(o, d, log, args);
}

/// Verbosity and the log file in the work directory.
fn log_args(o: &CriuOpts, d: &Dirs, log: &str, args: &mut Vec<String>) {
    if o.log_level.unwrap_or(2) >= 4 {
        args.push("-vv".into());
    } else if o.log_level.unwrap_or(2) >= 3 {
        args.push("-v".into());
    }
    let file = o.log_file.clone().unwrap_or_else(|| log.to_string());
    args.push("-o".into());
    args.push(d.work.join(file).display().to_string());
}

/// `--prev-images-dir` for `parent_img` (relative to the images
/// directory, as in CRIU).
fn parent_args(o: &CriuOpts, a: &mut Vec<String>) {
    if let Some(p) = &o.parent_img {
        a.push("--prev-images-dir".into());
        a.push(p.clone());
    }
}

/// `crit pre-dump` arguments for a PRE_DUMP request. Options about what
/// a full dump does with files, sockets and the tree's end (shell_job,
/// tcp_established, file_locks, leave_running...) concern only the DUMP
/// that follows:
/// a pre-dump copies memory, as CRIU's does.
pub fn pre_dump_args(o: &CriuOpts, d: &Dirs, client: i32) -> Result<Vec<String>, OptsError> {
    refuse_unsupported(o)?;
    restore_only(o)?;
    // As CRIU: a pre-dump's pages are local or sent, never left behind.
    only_lazy_dump_has(o, "PRE_DUMP")?;
    let pid = o.pid.unwrap_or(client);
    let mut a = vec!["pre-dump".to_string(), "-t".into(), pid.to_string()];
    a.push("-D".into());
    a.push(d.images.display().to_string());
    log_args(o, d, "dump.log", &mut a);
    parent_args(o, &mut a);
    page_server_args(o, &mut a)?;
    Ok(a)
}

/// `lazy_pages` on a DUMP (runc's `checkpoint --lazy-pages`): the dump
/// serves the pages it leaves in the tree on `ps`'s address and port;
/// `status_fd` (the client's) gets a byte once the images are written,
/// handed to the engine by the service (see super::run_dump).
fn lazy_dump_args(o: &CriuOpts, a: &mut Vec<String>) -> Result<(), OptsError> {
    let Some((addr, port)) =
        o.ps.as_ref()
            .and_then(|p| Some((p.address.as_ref()?, p.port?)))
    else {
        return Err(OptsError::Bad {
            field: "lazy_pages",
            why: "a lazy dump serves its pages on ps.address and ps.port, which are not set".into(),
        });
    };
    a.extend([
        "--lazy-pages".into(),
        "--address".into(),
        addr.clone(),
        "--port".into(),
        port.to_string(),
    ]);
    tls_args(o, a);
    Ok(())
}

/// `tls` and its files, for the page server connection (CRIU ignores
/// the files without `tls`, and so does crit).
fn tls_args(o: &CriuOpts, a: &mut Vec<String>) {
    if o.tls != Some(true) {
        return;
    }
    a.push("--tls".into());
    let files = [
        ("--tls-cacert", &o.tls_cacert),
        ("--tls-cacrl", &o.tls_cacrl),
        ("--tls-cert", &o.tls_cert),
        ("--tls-key", &o.tls_key),
    ];
    for (opt, v) in files {
        if let Some(v) = v {
            a.push(opt.into());
            a.push(v.clone());
        }
    }
    if o.tls_no_cn_verify == Some(true) {
        a.push("--tls-no-cn-verify".into());
    }
}

/// Refuses `lazy_pages` and `status_fd` on a request other than a lazy
/// DUMP (`what`); a RESTORE takes lazy_pages itself.
fn only_lazy_dump_has(o: &CriuOpts, what: &'static str) -> Result<(), OptsError> {
    let field = match (o.lazy_pages == Some(true), o.status_fd.is_some()) {
        (true, _) => "lazy_pages",
        (_, true) => "status_fd",
        _ => return Ok(()),
    };
    Err(OptsError::Bad {
        field,
        why: format!("not on a {what}"),
    })
}

/// `ps`: the pages go to a page server at address:port.
fn page_server_args(o: &CriuOpts, a: &mut Vec<String>) -> Result<(), OptsError> {
    let Some(ps) = &o.ps else {
        return Ok(());
    };
    let (Some(addr), Some(port)) = (&ps.address, ps.port) else {
        return Err(OptsError::Bad {
            field: "ps",
            why: "a page server needs its address and port".into(),
        });
    };
    a.extend([
        "--page-server".into(),
        "--address".into(),
        addr.clone(),
        "--port".into(),
        port.to_string(),
    ]);
    tls_args(o, a);
    Ok(())
}

/// `external` and the older `ext_mnt` (the same for both engines).
fn externals(o: &CriuOpts, a: &mut Vec<String>) {
    for e in &o.external {
        a.push("--external".into());
        a.push(e.clone());
    }
    for m in &o.ext_mnt {
        a.push("--external".into());
        a.push(format!("mnt[{}]:{}", m.key, m.val));
    }
}

/// `crit dump` arguments for a DUMP request.
pub fn dump_args(o: &CriuOpts, d: &Dirs, client: i32) -> Result<Vec<String>, OptsError> {
    refuse_unsupported(o)?;
    restore_only(o)?;
    let pid = o.pid.unwrap_or(client);
    let mut a = vec!["dump".to_string(), "-t".into(), pid.to_string()];
    common(o, d, "dump.log", &mut a);
    if o.leave_running == Some(true) {
        a.push("-R".into());
    }
    if o.orphan_pts_master == Some(true) {
        a.push("--orphan-pts-master".into());
    }
    if let Some(cg) = &o.freeze_cgroup {
        a.push("--freeze-cgroup".into());
        a.push(cg.clone());
    }
    parent_args(o, &mut a);
    match o.lazy_pages == Some(true) {
        true => lazy_dump_args(o, &mut a)?,
        false => {
            only_lazy_dump_has(o, "DUMP without lazy_pages")?;
            page_server_args(o, &mut a)?;
        }
    }
    if o.track_mem == Some(true) {
        a.push("--track-mem".into());
    }
    if o.tcp_skip_in_flight == Some(true) {
        a.push("--skip-in-flight".into());
    }
    // criu_network_lock_method: IPTABLES 1, NFTABLES 2, SKIP 3.
    match o.network_lock {
        None | Some(1) => {}
        Some(2) => a.extend(["--network-lock".into(), "nftables".into()]),
        Some(3) => a.extend(["--network-lock".into(), "skip".into()]),
        Some(n) => {
            return Err(OptsError::Bad {
                field: "network_lock",
                why: format!("{n} is no criu_network_lock_method"),
            })
        }
    }
    // Unset, it is CRIU's default and crit's (1 MiB).
    if let Some(n) = o.ghost_limit {
        a.push(format!("--ghost-limit={n}"));
    }
    if o.ext_unix_sk == Some(true) {
        a.push("--ext-unix-sk".into());
    }
    for u in &o.unix_sk_ino {
        a.push(format!("--ext-unix-sk={}", u.inode));
    }
    externals(o, &mut a);
    if let Some(ns) = o.empty_ns {
        // CLONE_NEWNET is the only one crit leaves empty.
        if ns & !(libc::CLONE_NEWNET as u32) != 0 {
            return Err(OptsError::Bad {
                field: "empty_ns",
                why: format!(
                    "{ns:#x}: only the network namespace (CLONE_NEWNET) can be left empty"
                ),
            });
        }
        if ns != 0 {
            a.push("--empty-ns".into());
            a.push("net".into());
        }
    }
    if o.cpu_cap.unwrap_or(u32::MAX) != u32::MAX {
        a.push("--cpu-cap".into());
    }
    Ok(a)
}

/// `crit restore` arguments for a RESTORE request; the root's pid goes
/// to `pidfile`.
pub fn restore_args(o: &CriuOpts, d: &Dirs, pidfile: &Path) -> Result<Vec<String>, OptsError> {
    refuse_unsupported(o)?;
    if o.ps.is_some() {
        return Err(OptsError::Unsupported("ps (a page server) at restore"));
    }
    if o.status_fd.is_some() {
        return Err(OptsError::Bad {
            field: "status_fd",
            why: "not on a RESTORE".into(),
        });
    }
    let mut a = vec!["restore".to_string(), "-d".into()];
    common(o, d, "restore.log", &mut a);
    a.push("--pidfile".into());
    a.push(pidfile.display().to_string());
    // runc's `restore --lazy-pages`: a lazy-pages daemon the caller
    // started serves the images' memory (crit's or CRIU's).
    if o.lazy_pages == Some(true) {
        a.push("--lazy-pages".into());
    }
    // cg_root (runc gives one per hierarchy its engine is in: the
    // container's cgroups) moves the tree there: a container restored
    // under another name leaves the dumped one's cgroups alone.
    for r in &o.cg_root {
        let ctrl = match r.ctrl.as_deref() {
            None => String::new(),
            Some("") => "unified:".into(),
            Some(c) => format!("{c}:"),
        };
        a.push(format!("--cgroup-root={ctrl}{}", r.path));
    }
    if o.ext_unix_sk == Some(true) {
        a.push("--ext-unix-sk".into());
    }
    let mode = o
        .manage_cgroups_mode
        .and_then(|m| CriuCgMode::try_from(m).ok());
    // soft and default put tasks back in their cgroups (properties on
    // the cgroups made), full/strict/props set every property too, none
    // and ignore leave them in crit's (where runc puts its engine).
    match mode {
        Some(CriuCgMode::CgNone | CriuCgMode::Ignore) => a.push("--manage-cgroups=none".into()),
        Some(CriuCgMode::Full | CriuCgMode::Strict | CriuCgMode::Props) => {
            a.push("--manage-cgroups=full".into())
        }
        _ => {}
    }
    if let Some(r) = &o.root {
        a.push("--root".into());
        a.push(r.clone());
    }
    externals(o, &mut a);
    for i in &o.inherit_fd {
        a.push("--inherit-fd".into());
        a.push(format!("fd[{}]:{}", i.fd, i.key));
    }
    // runc sends one for each namespace its config.json gives by path
    // (net and pid go as external namespaces instead).
    for j in &o.join_ns {
        if j.extra_opt.as_deref().is_some_and(|e| !e.is_empty()) {
            return Err(OptsError::Bad {
                field: "join_ns",
                why: format!(
                    "{}: extra_opt is for user namespaces, which crit does not join",
                    j.ns
                ),
            });
        }
        a.push(format!("--join-ns={}:{}", j.ns, j.ns_file));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::rpc_pb::{ExtMountMap, InheritFd};

    fn dirs() -> Dirs {
        Dirs {
            images: "/proc/7/fd/5".into(),
            work: "/proc/7/fd/6".into(),
        }
    }

    #[test]
    fn dump_carries_the_options_over() {
        let o = CriuOpts {
            pid: Some(42),
            leave_running: Some(true),
            shell_job: Some(true),
            empty_ns: Some(libc::CLONE_NEWNET as u32),
            ext_mnt: vec![ExtMountMap {
                key: "/etc/hosts".into(),
                val: "/etc/hosts".into(),
            }],
            ..Default::default()
        };
        let a = dump_args(&o, &dirs(), 9).unwrap().join(" ");
        assert_eq!(
            a,
            "dump -t 42 -D /proc/7/fd/5 --shell-job -o /proc/7/fd/6/dump.log -R \
             --external mnt[/etc/hosts]:/etc/hosts --empty-ns net"
        );
    }

    #[test]
    fn the_network_lock_goes_to_the_dump() {
        let with = |n| CriuOpts {
            pid: Some(42),
            network_lock: n,
            ..Default::default()
        };
        let args = |n| dump_args(&with(n), &dirs(), 9).map(|a| a.join(" "));
        assert!(!args(None).unwrap().contains("--network-lock"));
        assert!(!args(Some(1)).unwrap().contains("--network-lock"));
        assert!(args(Some(2)).unwrap().contains("--network-lock nftables"));
        assert!(args(Some(3)).unwrap().contains("--network-lock skip"));
        assert!(args(Some(9))
            .unwrap_err()
            .to_string()
            .contains("network_lock"));
    }

    #[test]
    fn restore_carries_the_options_over() {
        let o = CriuOpts {
            root: Some("/r".into()),
            inherit_fd: vec![InheritFd {
                key: "extRootNetNS".into(),
                fd: 3,
            }],
            log_file: Some("r.log".into()),
            ..Default::default()
        };
        let a = restore_args(&o, &dirs(), Path::new("/tmp/p"))
            .unwrap()
            .join(" ");
        assert_eq!(
            a,
            "restore -d -D /proc/7/fd/5 -o /proc/7/fd/6/r.log --pidfile /tmp/p --root /r \
             --inherit-fd fd[3]:extRootNetNS"
        );
    }

    #[test]
    fn join_ns_goes_to_restore_only() {
        use crate::image::rpc_pb::JoinNamespace;
        let j = |ns: &str, extra: Option<&str>| JoinNamespace {
            ns: ns.into(),
            ns_file: format!("/run/ns/{ns}"),
            extra_opt: extra.map(Into::into),
        };
        let o = CriuOpts {
            join_ns: vec![j("uts", None), j("ipc", Some(""))],
            ..Default::default()
        };
        let a = restore_args(&o, &dirs(), Path::new("/tmp/p"))
            .unwrap()
            .join(" ");
        assert!(
            a.ends_with("--join-ns=uts:/run/ns/uts --join-ns=ipc:/run/ns/ipc"),
            "{a}"
        );
        let e = dump_args(&o, &dirs(), 9).unwrap_err().to_string();
        assert_eq!(e, "criu_opts.join_ns: for a RESTORE only");
        let e = pre_dump_args(&o, &dirs(), 9).unwrap_err().to_string();
        assert_eq!(e, "criu_opts.join_ns: for a RESTORE only");
        let o = CriuOpts {
            join_ns: vec![j("user", Some("0,0"))],
            ..Default::default()
        };
        let e = restore_args(&o, &dirs(), Path::new("/tmp/p"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("join_ns") && e.contains("user"), "{e}");
    }

    #[test]
    fn a_page_server_takes_the_pages_of_dumps_only() {
        use crate::image::rpc_pb::CriuPageServerInfo;
        let ps = |fd| CriuPageServerInfo {
            address: Some("10.0.0.2".into()),
            port: Some(1234),
            pid: None,
            fd,
        };
        let o = CriuOpts {
            ps: Some(ps(None)),
            ..Default::default()
        };
        let a = dump_args(&o, &dirs(), 9).unwrap().join(" ");
        assert!(
            a.ends_with("--page-server --address 10.0.0.2 --port 1234"),
            "{a}"
        );
        let a = pre_dump_args(&o, &dirs(), 9).unwrap().join(" ");
        assert!(
            a.ends_with("--page-server --address 10.0.0.2 --port 1234"),
            "{a}"
        );
        assert!(restore_args(&o, &dirs(), Path::new("/tmp/p")).is_err());
        let o = CriuOpts {
            ps: Some(ps(Some(5))),
            ..Default::default()
        };
        assert!(dump_args(&o, &dirs(), 9).is_err());
    }

    #[test]
    fn tls_options_go_with_the_page_server_connection() {
        use crate::image::rpc_pb::CriuPageServerInfo;
        let mut o = CriuOpts {
            ps: Some(CriuPageServerInfo {
                address: Some("10.0.0.2".into()),
                port: Some(1234),
                ..Default::default()
            }),
            tls: Some(true),
            tls_cacert: Some("/ca.pem".into()),
            tls_key: Some("/k.pem".into()),
            tls_no_cn_verify: Some(true),
            ..Default::default()
        };
        let want = "--port 1234 --tls --tls-cacert /ca.pem --tls-key /k.pem --tls-no-cn-verify";
        for a in [dump_args(&o, &dirs(), 9), pre_dump_args(&o, &dirs(), 9)] {
            let a = a.unwrap().join(" ");
            assert!(a.contains(want), "{a}");
        }
        o.lazy_pages = Some(true);
        let a = dump_args(&o, &dirs(), 9).unwrap().join(" ");
        assert!(
            a.contains(&format!("--lazy-pages --address 10.0.0.2 {want}")),
            "{a}"
        );
        // The files alone change nothing, as in CRIU.
        o.tls = None;
        let a = dump_args(&o, &dirs(), 9).unwrap().join(" ");
        assert!(!a.contains("--tls"), "{a}");
    }

    #[test]
    fn pre_dump_and_its_dump_build_on_the_parent() {
        let o = CriuOpts {
            parent_img: Some("../pre1".into()),
            track_mem: Some(true),
            shell_job: Some(true),
            ..Default::default()
        };
        let a = pre_dump_args(&o, &dirs(), 9).unwrap().join(" ");
        assert_eq!(
            a,
            "pre-dump -t 9 -D /proc/7/fd/5 -o /proc/7/fd/6/dump.log --prev-images-dir ../pre1"
        );
        let a = dump_args(&o, &dirs(), 9).unwrap().join(" ");
        assert!(a.contains("--prev-images-dir ../pre1 --track-mem"), "{a}");
    }

    #[test]
    fn unsupported_options_are_refused_by_name() {
        let o = CriuOpts {
            auto_dedup: Some(true),
            ..Default::default()
        };
        let e = dump_args(&o, &dirs(), 1).unwrap_err().to_string();
        assert!(e.contains("auto_dedup"), "{e}");
        let o = CriuOpts {
            manage_cgroups_mode: Some(CriuCgMode::Full as i32),
            ..Default::default()
        };
        let a = restore_args(&o, &dirs(), Path::new("/p")).unwrap();
        assert!(a.iter().any(|x| x == "--manage-cgroups=full"), "{a:?}");
        let o = CriuOpts {
            empty_ns: Some(libc::CLONE_NEWIPC as u32),
            ..Default::default()
        };
        assert!(dump_args(&o, &dirs(), 1).is_err());
    }

    /// podman and runc ask for file locks on both sides; a pre-dump
    /// copies memory only, as CRIU's.
    #[test]
    fn file_locks_go_to_dump_and_restore() {
        let o = CriuOpts {
            file_locks: Some(true),
            ..Default::default()
        };
        let has = |a: Vec<String>| a.iter().any(|x| x == "--file-locks");
        assert!(has(dump_args(&o, &dirs(), 9).unwrap()));
        assert!(has(restore_args(&o, &dirs(), Path::new("/p")).unwrap()));
        assert!(!has(pre_dump_args(&o, &dirs(), 9).unwrap()));
    }

    /// runc's lazy migration: a DUMP with lazy_pages serves on ps, a
    /// RESTORE with it takes a daemon's pages; elsewhere both are refused.
    #[test]
    fn lazy_pages_on_dump_and_restore() {
        let ps = Some(crate::image::rpc_pb::CriuPageServerInfo {
            address: Some("127.0.0.1".into()),
            port: Some(27000),
            ..Default::default()
        });
        let o = CriuOpts {
            lazy_pages: Some(true),
            status_fd: Some(5),
            ps: ps.clone(),
            ..Default::default()
        };
        let a = dump_args(&o, &dirs(), 9).unwrap().join(" ");
        assert!(
            a.contains("--lazy-pages --address 127.0.0.1 --port 27000"),
            "{a}"
        );
        assert!(!a.contains("--page-server"), "{a}");
        assert!(pre_dump_args(&o, &dirs(), 9).is_err());
        let no_ps = CriuOpts {
            ps: None,
            ..o.clone()
        };
        assert!(dump_args(&no_ps, &dirs(), 9).is_err());
        let status_only = CriuOpts {
            status_fd: Some(5),
            ..Default::default()
        };
        assert!(dump_args(&status_only, &dirs(), 9).is_err());
        let r = CriuOpts {
            lazy_pages: Some(true),
            ..Default::default()
        };
        let a = restore_args(&r, &dirs(), Path::new("/p")).unwrap();
        assert!(a.iter().any(|x| x == "--lazy-pages"), "{a:?}");
        assert!(restore_args(&status_only, &dirs(), Path::new("/p")).is_err());
    }

    /// cg_root moves the restored tree: per hierarchy as runc names them
    /// ("" for the unified one), or everywhere without a controller.
    #[test]
    fn cg_root_moves_the_restored_tree() {
        use crate::image::rpc_pb::CgroupRoot;
        let root = |ctrl: Option<&str>| CgroupRoot {
            ctrl: ctrl.map(Into::into),
            path: "/".into(),
        };
        let o = CriuOpts {
            cg_root: vec![root(Some("cpu,cpuacct")), root(Some("")), root(None)],
            ..Default::default()
        };
        let a = restore_args(&o, &dirs(), Path::new("/p")).unwrap();
        for want in [
            "--cgroup-root=cpu,cpuacct:/",
            "--cgroup-root=unified:/",
            "--cgroup-root=/",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} in {a:?}");
        }
    }

    #[test]
    fn ghost_limit_goes_to_dump() {
        let o = CriuOpts {
            ghost_limit: Some(64 << 20),
            ..Default::default()
        };
        let a = dump_args(&o, &dirs(), 9).unwrap();
        assert!(a.iter().any(|x| x == "--ghost-limit=67108864"), "{a:?}");
        let a = dump_args(&CriuOpts::default(), &dirs(), 9).unwrap();
        assert!(!a.iter().any(|x| x.starts_with("--ghost-limit")), "{a:?}");
    }
}
