//! The restore writes private anonymous pages through a userfaultfd made
//! in the task (src/restore/pagefill.rs) and leaves no registration
//! behind: gens (tests/programs/gens.c) is dumped, restored with a log,
//! and checks every page against its generations; none of its mappings
//! is still registered for missing pages once it runs.

mod kit;

use kit::gens::{ask, crit, ok, restore, start};
use std::time::Duration;

#[test]
fn anonymous_pages_go_in_through_a_userfaultfd_that_is_gone_after() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 64, 8, 2000, false, false);
    let d = tmp.path().join("d");
    let pid = g.pid.to_string();
    ok(&crit(&["dump", "-t", &pid, "-D", d.to_str().unwrap()]));
    let _ = g.child.wait();
    kit::proc::reap(&[g.pid], Duration::from_secs(5));
    let log = tmp.path().join("restore.log");
    let r = restore(&d, &["-vv", "-o", log.to_str().unwrap()]);
    ok(&r);
    let said = std::fs::read_to_string(&log).unwrap();
    let wrote = said
        .lines()
        .find(|l| l.contains(&format!("pid {pid}: ")) && l.contains("bytes of pages written"))
        .unwrap_or_else(|| panic!("no page line: {said}"));
    assert!(wrote.contains("(userfaultfd and"), "{wrote}");
    assert!(!kit::proc::uffd_registered(g.pid), "a registration is left");
    let a = ask(g.pid, &g.result);
    kit::proc::kill_tree(g.pid);
    kit::proc::reap(&[g.pid], Duration::from_secs(5));
    assert!(a.starts_with("OK 16384 "), "{a}");
}
