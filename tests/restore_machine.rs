//! Restoring on a machine other than the dump's: limits it does not
//! allow are lowered with a warning, and xsave state is checked against
//! this CPU (what a thread was using must fit, unless `--cpu-cap=none`).
//! Each case edits a copy of the `counter` images, so the expectation is
//! set by the test and derived from this machine, never from the machine
//! the fixtures came from.

mod kit;
use kit::restore::*;
use nix::sys::resource::Resource;

const PID: i32 = 26659;

fn core(d: &tempfile::TempDir) -> std::path::PathBuf {
    d.path().join(format!("core-{PID}.img"))
}

/// (soft, hard) of a line of /proc/PID/limits.
fn proc_limit(pid: i32, label: &str) -> Option<(String, String)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let l = s.lines().find(|l| l.starts_with(label))?;
    let mut w = l[label.len()..].split_whitespace();
    Some((w.next()?.to_string(), w.next()?.to_string()))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn limits_this_machine_does_not_allow_are_lowered_with_a_warning() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("counter") {
        return;
    }
    let d = copy_images("counter");
    // Above fs.nr_open no task may have RLIMIT_NOFILE, root or not.
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // RLIMIT_NPROC and RLIMIT_SIGPENDING follow the machine's memory.
    let (_, nproc_hard) = kit::machine::rlimit(Resource::RLIMIT_NPROC);
    let nproc = (nproc_hard != u64::MAX).then_some(nproc_hard + 7);
    let (_, sigp_hard) = kit::machine::rlimit(Resource::RLIMIT_SIGPENDING);
    let sigp = (sigp_hard != u64::MAX).then_some(sigp_hard + 9);
    edit_json(&core(&d), |v| {
        let rl = &mut v["entries"][0]["tc"]["rlimits"]["rlimits"];
        rl[7] = serde_json::json!({"cur": 1234, "max": nr_open + 64});
        rl[3] = serde_json::json!({"cur": 6 << 20, "max": 12 << 20});
        if let Some(n) = nproc {
            rl[6] = serde_json::json!({"cur": n, "max": n});
        }
        if let Some(n) = sigp {
            rl[11] = serde_json::json!({"cur": 100, "max": n});
        }
    });
    let out = restore_dir(d.path(), &[]);
    let nofile = proc_limit(PID, "Max open files");
    let stack = proc_limit(PID, "Max stack size");
    let answers = if out.status.success() {
        check("counter")
    } else {
        vec![]
    };
    cleanup("counter");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(answers[0].starts_with("OK"), "{answers:?}");
    let warn: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("limits lowered"))
        .collect();
    assert_eq!(warn.len(), 1, "one warning per task: {err}");
    let (soft, hard) = nofile.expect("read /proc/PID/limits");
    assert_eq!(soft, "1234");
    let hard: u64 = hard.parse().unwrap();
    assert!(hard < nr_open + 64 && hard >= 1234, "hard {hard}");
    assert!(
        warn[0].contains(&format!(
            "pid {PID}: limits lowered to what this machine allows: "
        )) && warn[0].contains(&format!(
            "RLIMIT_NOFILE 1234/{} -> 1234/{hard}",
            nr_open + 64
        )),
        "{err}"
    );
    match nproc {
        Some(n) => assert!(
            warn[0].contains(&format!(
                "RLIMIT_NPROC {n}/{n} -> {nproc_hard}/{nproc_hard}"
            )),
            "{err}"
        ),
        None => eprintln!("note: RLIMIT_NPROC is unlimited here, so it is not lowered"),
    }
    match sigp {
        Some(n) => assert!(
            warn[0].contains(&format!("RLIMIT_SIGPENDING 100/{n} -> 100/{sigp_hard}")),
            "{err}"
        ),
        None => eprintln!("note: RLIMIT_SIGPENDING is unlimited here, so it is not lowered"),
    }
    // Limits this machine allows come back as recorded, without a word.
    assert_eq!(
        stack,
        Some(((6u64 << 20).to_string(), (12u64 << 20).to_string()))
    );
    assert!(!warn[0].contains("RLIMIT_STACK"), "{err}");
}

#[test]
fn xsave_state_this_cpu_lacks_is_refused_unless_cpu_cap_none() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("counter") {
        return;
    }
    // A component this machine's tasks do not have, and a value that
    // shows the thread used it. (MPX is left out: /proc/cpuinfo may list
    // it on CPUs whose kernel no longer enables it.)
    let lacking = [
        (9u32, "PKRU", "pkru", serde_json::json!([0x5555_555cu32])),
        (
            5,
            "AVX-512 opmask",
            "opmask_reg",
            serde_json::json!([1, 0, 0, 0, 0, 0, 0, 0]),
        ),
        (2, "AVX", "ymmh_space", serde_json::json!(vec![1u32; 64])),
    ]
    .into_iter()
    .find(|(n, ..)| !kit::machine::has_component(*n));
    let Some((n, name, field, value)) = lacking else {
        eprintln!("note: this CPU has PKRU, AVX-512 and AVX; no xsave state to refuse here");
        return;
    };
    let d = copy_images("counter");
    edit_json(&core(&d), |v| {
        let x = &mut v["entries"][0]["thread_info"]["fpregs"]["xsave"];
        x["xstate_bv"] = serde_json::json!(x["xstate_bv"].as_u64().unwrap() | (1 << n));
        x[field] = value;
    });
    let out = restore_dir(d.path(), &[]);
    let err = stderr(&out);
    let alive = std::path::Path::new(&format!("/proc/{PID}")).exists();
    cleanup("counter");
    assert!(!out.status.success(), "restored state this CPU lacks");
    assert!(!alive, "a refused restore left pid {PID}");
    assert_eq!(
        err.trim(),
        format!(
            "crit: tid {PID}: it was using {name} state, which this CPU lacks \
             (restore with --cpu-cap=none to drop it)"
        ),
        "{err}"
    );
    let out = restore_dir(d.path(), &["--cpu-cap=none"]);
    let answers = if out.status.success() {
        check("counter")
    } else {
        vec![]
    };
    cleanup("counter");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("tid {PID}: its {name} state is dropped")),
        "{err}"
    );
    assert!(answers[0].starts_with("OK"), "{answers:?}");
}

/// A shadow stack on at dump is restored off with a warning; a restore
/// that fails keeps the warning back.
#[test]
fn shadow_stack_on_at_dump_is_restored_off_with_a_warning() {
    let _g = lock();
    if !prepare_fixtures() {
        return;
    }
    if !require_free("counter") {
        return;
    }
    let d = copy_images("counter");
    edit_json(&core(&d), |v| {
        v["entries"][0]["thread_info"]["fpregs"]["xsave"]["cet"] =
            serde_json::json!({"cet": 1, "ssp": 0});
    });
    let out = restore_dir(d.path(), &[]);
    let answers = if out.status.success() {
        check("counter")
    } else {
        vec![]
    };
    cleanup("counter");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "tid {PID}: its CET shadow stack was on at dump and is restored off"
        )),
        "{err}"
    );
    assert!(answers[0].starts_with("OK"), "{answers:?}");

    // A restore that then fails says its error alone: the warning is
    // about a tree that does not come to be.
    let out = restore_dir(d.path(), &["--lazy-pages"]);
    let left = std::path::Path::new(&format!("/proc/{PID}")).exists();
    cleanup("counter");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!left, "a failed restore left pid {PID}");
    assert!(
        err.lines().count() == 1 && err.contains("lazy-pages"),
        "a failed restore printed more than its error: {err}"
    );
}

#[test]
fn bad_cpu_cap_values_are_refused() {
    for v in ["avx", "fpu;ins", "nonex"] {
        let out = crit()
            .args(["restore", "-D", "/nonexistent", &format!("--cpu-cap={v}")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains(&format!("--cpu-cap={v}: expected")), "{err}");
    }
}
