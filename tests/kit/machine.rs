//! Facts about the machine the tests run on, read from the kernel, so that
//! expectations follow this machine rather than the one the fixtures were
//! made on.

use std::collections::BTreeSet;

/// The CPU flags /proc/cpuinfo lists for the first CPU.
pub fn cpu_flags() -> BTreeSet<String> {
    let s = std::fs::read_to_string("/proc/cpuinfo").expect("read /proc/cpuinfo");
    s.lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// Whether the CPU has CET shadow stacks (CPUID.7.0:ECX bit 7; what CRIU
/// and crit consult before recording CET state).
pub fn cpu_has_shstk() -> bool {
    #[allow(unused_unsafe)]
    let r = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
    r.ecx & (1 << 7) != 0
}

/// The /proc/cpuinfo flag that says the kernel gives tasks xsave
/// component `n`.
fn flag_of_component(n: u32) -> Option<&'static str> {
    match n {
        2 => Some("avx"),
        3 | 4 => Some("mpx"),
        5..=7 => Some("avx512f"),
        9 => Some("ospke"),
        _ => None,
    }
}

/// Whether this machine's tasks have xsave component `n`.
pub fn has_component(n: u32) -> bool {
    match flag_of_component(n) {
        Some(f) => cpu_flags().contains(f),
        None => n < 2,
    }
}

/// The xsave fields a dump on this machine writes in each thread's
/// `thread_info.fpregs.xsave`, as JSON key paths (CRIU's rule: one field
/// per component the CPU has, CET when it has shadow stacks).
pub fn expected_xsave_paths(prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    out.insert(prefix.to_string());
    out.insert(format!("{prefix}.xstate_bv"));
    for (n, field) in [
        (2, "ymmh_space"),
        (4, "bndcsr_state"),
        (5, "opmask_reg"),
        (6, "zmm_upper"),
        (7, "hi16_zmm"),
        (9, "pkru"),
    ] {
        if has_component(n) {
            out.insert(format!("{prefix}.{field}"));
        }
    }
    if cpu_has_shstk() {
        for p in ["cet", "cet.cet", "cet.ssp"] {
            out.insert(format!("{prefix}.{p}"));
        }
    }
    out
}

/// Names of the xsave components that threads of the images in `dir`
/// were using and this machine lacks (empty: this CPU can hold them).
/// PKRU at the kernel's default counts as unused, as in crit.
pub fn missing_components(dir: &std::path::Path) -> Vec<String> {
    let mut missing = BTreeSet::new();
    for e in std::fs::read_dir(dir).expect("read images dir") {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("core-") && name.ends_with(".img")) {
            continue;
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_crit"))
            .args(["decode", "-i"])
            .arg(&p)
            .output()
            .expect("run crit decode");
        assert!(out.status.success(), "decode {name}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for c in v["entries"].as_array().unwrap() {
            let x = &c["thread_info"]["fpregs"]["xsave"];
            let bv = x["xstate_bv"].as_u64().unwrap_or(0);
            for n in 2..64u32 {
                if bv & (1 << n) == 0 || has_component(n) {
                    continue;
                }
                let pkru = x["pkru"][0].as_u64().unwrap_or(0);
                if n == 9 && (pkru == 0 || pkru == 0x5555_5554) {
                    continue;
                }
                missing.insert(flag_of_component(n).unwrap_or("other").to_string());
            }
        }
    }
    missing.into_iter().collect()
}

/// A soft and hard limit of this process.
pub fn rlimit(res: nix::sys::resource::Resource) -> (u64, u64) {
    nix::sys::resource::getrlimit(res).expect("getrlimit")
}
