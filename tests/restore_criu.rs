//! Restores the CRIU 4.2 fixtures that need no outside peer, and has each
//! restored program check its own state (memory, queues, peers, threads,
//! handlers) and answer OK. Needs root and the fixtures' pids free.

mod restore_util;
use restore_util::*;

#[test]
fn counter() {
    restore_and_check("counter", &[]);
}

#[test]
fn usk_pair() {
    restore_and_check("usk_pair", &[]);
}

#[test]
fn usk_tree() {
    restore_and_check("usk_tree", &[]);
}

#[test]
fn usk_deleted() {
    restore_and_check("usk_deleted", &[]);
}

#[test]
fn usk_server() {
    restore_and_check("usk_server", &[]);
}

#[test]
fn kitchen() {
    restore_and_check("kitchen", &["--tcp-established"]);
}
