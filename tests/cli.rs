//! Command-line behaviour: options, stdin/stdout conventions, usage errors.

mod kit;
use kit::cli::*;

#[test]
fn show_nopl_prints_payload_sizes() {
    let o = run(
        crit()
            .args(["show", "--nopl"])
            .arg(testdata().join("criu-4.2/kitchen/sk-queues.img")),
        None,
    );
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = &v["entries"][0];
    assert_eq!(e["extra"], format!("... <{}B>", e["length"]));
}

#[test]
fn dash_means_stdio() {
    let img = std::fs::read(testdata().join("criu-4.2/counter/pstree.img")).unwrap();
    let a = run(crit().args(["decode", "-i", "-", "-o", "-"]), Some(&img));
    let b = run(crit().arg("decode"), Some(&img));
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(v["magic"], "PSTREE");
    assert_eq!(v["entries"][0]["pid"], 26659);
}

#[test]
fn usage_errors_are_one_line_with_status_1() {
    assert_fails(
        &run(crit().arg("bogus"), None),
        "unrecognized subcommand 'bogus'",
    );
    // clap's own text, naming what is missing.
    assert_fails(
        &run(crit().args(["show"]), None),
        "the following required arguments were not provided: <IN>",
    );
    assert_fails(
        &run(crit().args(["dump", "-t", "1"]), None),
        "not provided: --images-dir <DIR>",
    );
    assert_fails(
        &run(crit().args(["x", "/tmp"]), None),
        "not provided: <WHAT>",
    );
    assert_fails(
        &run(crit().args(["decode", "-i", "/nonexistent/x.img"]), None),
        "/nonexistent/x.img: No such file",
    );
    assert_fails(
        &run(crit().args(["x", "/nonexistent", "ps"]), None),
        "/nonexistent",
    );
}

/// Option values of no sense are refused as such, before any image or
/// process is looked at (the images dir here does not exist).
#[test]
fn bad_option_values_are_refused_first() {
    let restore = |opt: &str| {
        run(
            crit().args(["restore", "-d", "-D", "/nonexistent", opt]),
            None,
        )
    };
    assert_fails(
        &restore("--ext-unix-sk=0"),
        "--ext-unix-sk=0: inode 0 is no socket",
    );
    assert_fails(
        &restore("--ext-unix-sk=1=relative"),
        "--ext-unix-sk=1=relative: PATH must be absolute (/...) or @name",
    );
    assert_fails(
        &restore("--inherit-fd=fd[3]:socket:[abc]"),
        "--inherit-fd fd[3]:socket:[abc]: expected fd[N]:RESOURCE",
    );
    assert_fails(
        &restore("--inherit-fd=fd[3]:pipe:[0]"),
        "--inherit-fd fd[3]:pipe:[0]: expected fd[N]:RESOURCE",
    );
    // Whatever the images hold, a --root that is no directory.
    assert_fails(
        &restore("--root=/nonexistent/dir"),
        "--root /nonexistent/dir: No such file or directory",
    );
    assert_fails(
        &restore("--root=/proc/self/stat"),
        "--root /proc/self/stat: not a directory",
    );
    assert_fails(
        &run(
            crit().args(["dump", "-t", "1", "-D", "/nonexistent/d", "--ext-unix-sk=0"]),
            None,
        ),
        "--ext-unix-sk: \"0\" is not a socket inode number",
    );
}

/// Options CRIU's pre-dump accepts with the dump's flags are accepted:
/// the error is the pid's, not the option's.
#[test]
fn pre_dump_accepts_the_dumps_compatibility_flags() {
    for flag in ["--track-mem", "--file-locks"] {
        assert_fails(
            &run(
                crit().args(["pre-dump", flag, "-t", "1", "-D", "/nonexistent/d"]),
                None,
            ),
            "pid 1: cannot dump init or an invalid pid",
        );
    }
}

#[test]
fn help_and_version_exit_0() {
    let o = run(crit().arg("--help"), None);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("decode"));
    assert!(run(crit().arg("--version"), None).status.success());
}

#[test]
fn failed_decode_to_a_file_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.img");
    std::fs::write(&bad, b"\x19\x43\x56\x54\x38\x31\x30\x56\x05\x00\x00\x00ab").unwrap();
    let out = tmp.path().join("out.json");
    let o = run(
        crit().arg("decode").arg("-i").arg(&bad).arg("-o").arg(&out),
        None,
    );
    assert_fails(
        &o,
        "bad.img: at byte 8: entry claims 5 bytes but only 2 are left",
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "temporary file left behind"
    );
}
