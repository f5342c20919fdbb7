//! Round trip through our own engines: run a fixture program fresh, dump it
//! with `crit dump`, restore the images with `crit restore`, and have every
//! task check itself.

mod kit;
use kit::proc::children;
use kit::restore::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn dumper() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_crit"))
}

/// `crit dump OPTS -t ROOT -D IMGS` of the tree `child` started; waits
/// for the killed tree and reaps `pids`, then asserts the dump succeeded.
fn dump_and_reap(child: &mut std::process::Child, pids: &[i32], imgs: &Path, opts: &[&str]) {
    let root = child.id() as i32;
    let out = Command::new(dumper())
        .arg("dump")
        .args(opts)
        .args(["-t", &root.to_string(), "-D"])
        .arg(imgs)
        .output()
        .unwrap();
    let _ = child.wait();
    kit::proc::reap(pids, Duration::from_secs(5));
    assert!(
        out.status.success(),
        "dump of pid {root}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn round_trip(name: &str, arg: &str, dump_opts: &[&str]) {
    round_trip_with(name, arg, dump_opts, &[], &|_| {});
}

/// Runs program `name`, dumps it with `dump_opts`, calls `between` on the
/// images, restores them with `restore_opts` and has every task check
/// itself.
fn round_trip_with(
    name: &str,
    arg: &str,
    dump_opts: &[&str],
    restore_opts: &[&str],
    between: &dyn Fn(&Path),
) {
    let _g = lock();
    prepare();
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let result = format!("/tmp/scen/result/{name}");
    let mut child = Command::new(format!("/tmp/scen/bin/{name}"))
        .arg(arg)
        .current_dir("/tmp/scen")
        .env("READY", &ready)
        .env("RESULT", &result)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::metadata(&ready).is_ok_and(|m| m.len() > 0) {
        assert!(Instant::now() < deadline, "{name} did not get ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    let root = child.id() as i32;
    let mut pids = vec![root];
    pids.extend(children(root));
    let imgs = dir.path().join("img");
    let opts: Vec<&str> = ["--shell-job"].iter().chain(dump_opts).copied().collect();
    dump_and_reap(&mut child, &pids, &imgs, &opts);
    between(&imgs);
    let out = crit()
        .args(["restore", "-d", "--shell-job", "-D"])
        .arg(&imgs)
        .args(restore_opts)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let mut answers = Vec::new();
    if out.status.success() {
        std::thread::sleep(Duration::from_millis(200));
        let files: Vec<String> = (0..pids.len())
            .map(|i| format!("{result}.{}", if i == 0 { "main" } else { "child" }))
            .collect();
        for f in &files {
            let _ = std::fs::remove_file(f);
        }
        for &p in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGUSR1,
            );
        }
        for f in &files {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(s) = std::fs::read_to_string(f) {
                    if !s.is_empty() {
                        answers.push(s.trim().to_string());
                        break;
                    }
                }
                if Instant::now() > deadline {
                    answers.push(format!("no answer in {f}"));
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    for &p in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    kit::proc::reap(&pids, Duration::from_secs(5));
    assert!(out.status.success(), "restore: {stderr}");
    for a in &answers {
        assert!(a.starts_with("OK"), "{name}: {answers:?} ({stderr})");
    }
}

#[test]
fn counter() {
    round_trip("counter", "main", &[]);
}

#[test]
fn usk_pair() {
    round_trip("usk_pair", "main", &[]);
}

#[test]
fn usk_tree() {
    round_trip("usk_tree", "main", &[]);
}

#[test]
fn usk_server() {
    round_trip("usk_server", "/tmp/scen/sock", &[]);
}

#[test]
fn usk_deleted() {
    round_trip("usk_deleted", "/tmp/scen/sock", &[]);
}

#[test]
fn kitchen() {
    round_trip("kitchen", "/tmp/scen/k", &["--tcp-established"]);
}

/// Every task of a tree gets a vDSO proxy (as on another kernel) and
/// still checks itself (tests/vdso.rs calls through one).
#[test]
fn usk_tree_through_vdso_proxies() {
    round_trip_with("usk_tree", "main", &[], &["--force-vdso-proxy"], &|_| {});
}

#[test]
fn kitchen_through_a_vdso_proxy() {
    let opts = ["--tcp-established"];
    round_trip_with(
        "kitchen",
        "/tmp/scen/k",
        &opts,
        &["--force-vdso-proxy", "--tcp-established"],
        &|_| {},
    );
}

/// Sessions, groups and interrupted syscalls, through our dump: a session
/// leader, a child leading its own group and a grandchild in it, each
/// dumped while blocked in read(); after restore each keeps its pid,
/// parent, group and session, and its read() restarts and returns the
/// byte its SIGUSR1 handler writes.
#[test]
fn sessions_groups_and_interrupted_reads() {
    let _g = lock();
    prepare();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("rtree");
    kit::cc::compile(
        &kit::cc::source("restore_programs", "rtree"),
        &exe,
        &["-O1"],
    );
    let ready = dir.path().join("ready");
    std::fs::write(&ready, "").unwrap();
    let result = dir.path().join("res");
    let mut child = Command::new(&exe)
        .env("READY", &ready)
        .env("RESULT", &result)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&ready).unwrap().lines().count() < 3 {
        assert!(Instant::now() < deadline, "rtree did not get ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let stat = |p: i32| -> Vec<i64> {
        let s = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let rest = s.rsplit_once(") ").map(|x| x.1).unwrap_or("");
        rest.split(' ')
            .skip(1)
            .take(3)
            .map(|x| x.parse().unwrap_or(-1))
            .collect()
    };
    let roles: Vec<(String, i32)> = std::fs::read_to_string(&ready)
        .unwrap()
        .lines()
        .map(|l| {
            let (r, p) = l.split_once(' ').unwrap();
            (r.to_string(), p.parse().unwrap())
        })
        .collect();
    let before: Vec<Vec<i64>> = roles.iter().map(|(_, p)| stat(*p)).collect();
    let pids: Vec<i32> = roles.iter().map(|r| r.1).collect();
    dump_and_reap(&mut child, &pids, &dir.path().join("img"), &[]);
    let out = crit()
        .args(["restore", "-d", "-D"])
        .arg(dir.path().join("img"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    std::thread::sleep(Duration::from_millis(200));
    let after: Vec<Vec<i64>> = pids.iter().map(|&p| stat(p)).collect();
    for &p in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGUSR1,
        );
    }
    let mut answers = Vec::new();
    for (role, _) in &roles {
        let f = format!("{}.{role}", result.display());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(s) = std::fs::read_to_string(&f) {
                if !s.is_empty() {
                    answers.push(s.trim().to_string());
                    break;
                }
            }
            if Instant::now() > deadline {
                answers.push(format!("no answer from {role}"));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for &p in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    kit::proc::reap(&pids, Duration::from_secs(5));
    assert!(out.status.success(), "restore: {stderr}");
    // ppid of the root differs (crit, then us); the others' must not.
    assert_eq!(before[1..], after[1..], "ppid/pgid/sid changed");
    assert_eq!(before[0][1..], after[0][1..], "root's pgid/sid changed");
    for a in &answers {
        assert!(a.starts_with("OK"), "{answers:?}");
    }
}

/// Threads through our dump: three threads, each blocked in read(), each
/// with its own name, thread-local value, signal mask and sigaltstack;
/// after restore they keep their tids and every one of them checks its
/// own state once its read() restarts and returns.
#[test]
fn threads_keep_their_own_state() {
    let tids = |tree: &[i32]| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", tree[0]))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        // Each thread's CPU set too: crit works on each task from one CPU
        // (src/sys/affinity.rs) and must give the set back.
        let cpus: Vec<String> = v
            .iter()
            .map(|t| {
                let st = std::fs::read_to_string(format!("/proc/{}/task/{t}/status", tree[0]))
                    .unwrap_or_default();
                let l = st.lines().find(|l| l.starts_with("Cpus_allowed_list:"));
                format!("{t} {}", l.unwrap_or_default())
            })
            .collect();
        v.extend(cpus);
        v
    };
    let (answers, before, after) = checked_round_trip("rthreads", 3, &["t0", "t1", "t2"], &tids);
    assert_eq!(before.len(), 6, "{before:?}");
    assert_eq!(before, after, "tids or CPU sets changed");
    for a in &answers {
        assert!(a.starts_with("OK"), "{answers:?}");
    }
}

/// Builds `tests/restore_programs/NAME.c`, runs it (with $DIR, an empty
/// directory it may use) until $READY holds `lines` lines, dumps it with `crit dump`, restores it with `crit
/// restore`, sends SIGUSR1 and returns what each of `roles` wrote to
/// $RESULT.ROLE (or that it did not answer).
fn self_checking(name: &str, lines: usize, roles: &[&str]) -> Vec<String> {
    checked_round_trip(name, lines, roles, &|_| Vec::new()).0
}

/// A program of tests/restore_programs started in a temporary directory
/// of its own, in a process group of its own, with $READY, $RESULT and
/// $DIR (an empty directory it may use), once $READY holds `lines` lines.
struct Started {
    dir: tempfile::TempDir,
    child: std::process::Child,
    result: PathBuf,
}

fn start_program(name: &str, lines: usize) -> Started {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join(name);
    kit::cc::compile(
        &kit::cc::source("restore_programs", name),
        &exe,
        &["-O1", "-pthread"],
    );
    let ready = dir.path().join("ready");
    std::fs::write(&ready, "").unwrap();
    let result = dir.path().join("res");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let child = Command::new(&exe)
        .env("READY", &ready)
        .env("RESULT", &result)
        .env("DIR", &work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&ready).unwrap().lines().count() < lines {
        assert!(Instant::now() < deadline, "{name} did not get ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    Started { dir, child, result }
}

/// [`self_checking`], also returning what `probe` says of the tree's pids
/// before the dump and after the restore.
fn checked_round_trip(
    name: &str,
    lines: usize,
    roles: &[&str],
    probe: &dyn Fn(&[i32]) -> Vec<String>,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let _g = lock();
    prepare();
    let Started {
        dir,
        mut child,
        result,
    } = start_program(name, lines);
    std::thread::sleep(Duration::from_millis(100));
    let pid = child.id() as i32;
    // The whole tree, to reap after the dump and to kill at the end.
    let tree = kit::proc::tree(pid);
    let before = probe(&tree);
    dump_and_reap(&mut child, &tree, &dir.path().join("img"), &["--shell-job"]);
    let out = crit()
        .args(["restore", "-d", "--shell-job", "-D"])
        .arg(dir.path().join("img"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let mut answers = Vec::new();
    let mut after = Vec::new();
    if out.status.success() {
        std::thread::sleep(Duration::from_millis(100));
        after = probe(&tree);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGUSR1,
        );
        for role in roles {
            let f = format!("{}.{role}", result.display());
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(s) = std::fs::read_to_string(&f).ok().filter(|s| !s.is_empty()) {
                    answers.push(s.trim().to_string());
                    break;
                }
                if Instant::now() > deadline {
                    answers.push(format!("no answer from {role}"));
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    for &p in &tree {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    kit::proc::reap(&tree, Duration::from_secs(5));
    assert!(out.status.success(), "restore {name}: {stderr}");
    (answers, before, after)
}

/// Seccomp through our dump: a process-wide filter plus one thread's own
/// second filter, under no_new_privs; after restore each thread has its
/// mode, its number of filters and their effect (`rseccomp.c`).
#[test]
fn seccomp_filters_come_back_per_thread() {
    let answers = self_checking("rseccomp", 2, &["t0", "t1"]);
    for a in &answers {
        assert!(a.starts_with("OK"), "{answers:?}");
    }
}

/// POSIX timers through our dump: ids (with a gap), clocks, signals,
/// values, SIGEV_NONE and SIGEV_THREAD_ID timers, remaining time and
/// interval; a 5 ms timer keeps ticking into its thread (`rtimers.c`).
#[test]
fn posix_timers_come_back_with_their_ids() {
    let answers = self_checking("rtimers", 2, &["main"]);
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// Descriptor state the kernel keeps apart from the file, through our
/// dump: an EFD_SEMAPHORE eventfd (its flag kept in the image: see
/// `model::file::EFD_SEMAPHORE_MARK`), a plain eventfd's count, and a
/// periodic timerfd that expired unread (running on, its expiration
/// pending) (`rfdkinds.c`).
#[test]
fn eventfd_and_timerfd_state_comes_back() {
    let answers = self_checking("rfdkinds", 1, &["main"]);
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// The descriptor table through our dump: the task's numbers, with gaps
/// of one and of hundreds and one past 4,096, and no other descriptor
/// (crit's own left open in the task would show) (`rfdset.c`).
#[test]
fn the_descriptor_table_comes_back_and_nothing_else() {
    let answers = self_checking("rfdset", 1, &["main"]);
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// Memory layout and contents, registers (vector and callee-saved) across
/// the interrupted read(), mm fields, auxv, exe, signal action, itimer,
/// rlimits, personality, cwd, umask, name, pdeath signal, dumpable, rseq,
/// robust list, tid address, fd flags and offsets, and credentials of
/// another user: the task compares each with what it saw before the dump
/// (`rstate.c`).
#[test]
fn task_state_comes_back_as_the_task_saw_it() {
    let answers = self_checking("rstate", 1, &["main"]);
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// SO_PEERCRED through our dump: a parent's listener, its child's
/// connection and the accepted end. After restore the accepted end names
/// the child and the client end the parent, as before the dump (not
/// crit), queued messages are there, and a new client of the listener
/// sees the parent (`rpeercred.c`).
#[test]
fn peer_credentials_name_the_tasks_not_crit() {
    let answers = self_checking("rpeercred", 2, &["main", "child"]);
    for a in &answers {
        assert!(a.starts_with("OK"), "{answers:?}");
    }
}

/// Files in flight through our dump: a queued message passing a pipe's
/// read end the task also holds comes back, in order between two plain
/// messages, with a descriptor of that same pipe (`rscm.c`).
#[test]
fn descriptors_in_flight_come_back_with_their_message() {
    let answers = self_checking("rscm", 1, &["main"]);
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// Files only in flight (passed, then closed by the sender) through our
/// dump: a regular file (contents and position), a pipe's read end (its
/// bytes; the kept write end still reaches it), a memfd, and a socket
/// end with a message of its own in its queue (`rscmonly.c`).
#[test]
fn files_only_in_flight_come_back_with_their_message() {
    let answers = self_checking("rscmonly", 1, &["main"]);
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// Connections pending in a listener through our dump (without -R): the
/// one whose client had sent data keeps it, the other stays empty, both
/// wait to be accepted in order, and the first reaches its client back
/// (`rpending.c`).
#[test]
fn pending_connections_keep_their_data() {
    let answers = self_checking("rpending", 1, &["main"]);
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// A deleted device node held open comes back as a deleted node of the
/// same device, as CRIU restores it (`rdevnode.c`).
#[test]
fn deleted_device_node_comes_back() {
    let answers = self_checking("rdevnode", 1, &["main"]);
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// `--cpu-cap`: the dump records this CPU in cpuinfo.img, as CRIU does
/// with the option; a restore with it checks that image against this CPU
/// and names what is missing, and refuses without the image.
#[test]
fn cpu_cap_records_and_checks_the_cpu() {
    round_trip_with("counter", "main", &["--cpu-cap"], &["--cpu-cap"], &|imgs| {
        let p = imgs.join("cpuinfo.img");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let out = crit().args(["decode", "-i"]).arg(&p).output().unwrap();
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let caps: Vec<u64> = v["entries"][0]["x86_entry"][0]["capability"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(caps.len(), 19);
        // An instruction set this CPU lacks (these are rare or retired).
        let (bit, name) = [
            (6 * 32 + 11, "xop"),
            (18 * 32 + 2, "avx512_4vnniw"),
            (9 * 32 + 26, "avx512pf"),
            (6 * 32 + 16, "fma4"),
        ]
        .into_iter()
        .find(|&(b, _)| caps[b / 32] & (1 << (b % 32)) == 0)
        .expect("this CPU has xop, avx512_4vnniw, avx512pf and fma4");
        let copy = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(imgs).unwrap() {
            let f = e.unwrap().path();
            std::fs::copy(&f, copy.path().join(f.file_name().unwrap())).unwrap();
        }
        edit_json(&copy.path().join("cpuinfo.img"), |v| {
            let w = &mut v["entries"][0]["x86_entry"][0]["capability"][bit / 32];
            *w = serde_json::json!(w.as_u64().unwrap() | (1 << (bit % 32)));
        });
        let restore = |extra: &[&str]| {
            crit()
                .args(["restore", "-d", "--shell-job", "-D"])
                .arg(copy.path())
                .args(extra)
                .output()
                .unwrap()
        };
        let out = restore(&["--cpu-cap"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "restored on a CPU lacking {name}");
        assert!(err.contains(&format!("instructions {name}")), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        std::fs::remove_file(copy.path().join("cpuinfo.img")).unwrap();
        let out = restore(&["--cpu-cap=ins"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("cpuinfo.img: missing"), "{err}");
    });
}

/// A signal sent while the restore is still in progress (here by the
/// post-restore action script, to the whole tree) reaches each task as it
/// would have without the dump: pause() and a read() without SA_RESTART
/// return EINTR, a read() under SA_RESTART goes on until a second signal
/// (`rsigwake.c`). Resumed on the `syscall` instead of just past it, the
/// handler would run first and pause() would wait on for ever.
#[test]
fn a_signal_during_the_restore_interrupts_the_restored_call() {
    let _g = lock();
    prepare();
    let Started {
        dir,
        mut child,
        result,
    } = start_program("rsigwake", 3);
    // Every task inside its call.
    std::thread::sleep(Duration::from_millis(100));
    let root = child.id() as i32;
    let tree = kit::proc::tree(root);
    let imgs = dir.path().join("img");
    dump_and_reap(&mut child, &tree, &imgs, &["--shell-job"]);
    let script = r#"[ "$CRTOOLS_SCRIPT_ACTION" != post-restore ] || kill -USR1 -$CRTOOLS_INIT_PID"#;
    let out = crit()
        .args([
            "restore",
            "-d",
            "--shell-job",
            "--action-script",
            script,
            "-D",
        ])
        .arg(&imgs)
        .output()
        .unwrap();
    let answer = |role: &str| {
        let f = format!("{}.{role}", result.display());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(s) = std::fs::read_to_string(&f)
                .ok()
                .filter(|s| s.ends_with('\n'))
            {
                return s.trim().to_string();
            }
            if Instant::now() > deadline {
                return format!("no answer from {role}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut answers = Vec::new();
    if out.status.success() {
        answers.push(answer("pause"));
        answers.push(answer("read"));
        // The SA_RESTART read is still blocked: a second signal ends it.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(root),
            nix::sys::signal::Signal::SIGUSR2,
        );
        answers.push(answer("restart"));
    }
    for &p in &tree {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    kit::proc::reap(&tree, Duration::from_secs(5));
    assert!(
        out.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        answers,
        ["OK pause", "OK read", "OK restart"],
        "each task's call after a signal during the restore"
    );
}
