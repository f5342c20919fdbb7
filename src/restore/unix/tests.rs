//! The unix socket planner on made-up models: every kind of socket and
//! connection the images can hold, and every refusal. No kernel needed.

use super::plan::*;
use crate::image::pb;
use crate::model::unix::{
    external_entry, Model, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM, ST_CLOSE, ST_ESTABLISHED,
    ST_LISTEN,
};
use crate::restore::ExtUnix;
use std::collections::HashSet;

const ST: u32 = SOCK_STREAM;
const DG: u32 = SOCK_DGRAM;
const SQ: u32 = SOCK_SEQPACKET;
const EST: u32 = ST_ESTABLISHED;
const LIS: u32 = ST_LISTEN;

/// A made-up image set: sockets (file id = inode + 1000), holders, queues
/// and a tree.
#[derive(Default)]
struct World {
    socks: Vec<(u32, pb::UnixSkEntry)>,
    holders: Vec<(u32, u32, u32)>,
    queued: Vec<(u32, u64)>,
    tree: Vec<TaskInfo>,
    ext: ExtUnix,
    inherited: HashSet<u32>,
}

fn id(ino: u32) -> u32 {
    ino + 1000
}

impl World {
    fn new() -> World {
        World::default().task(100, 0)
    }
    fn task(mut self, pid: u32, ppid: u32) -> World {
        self.tree.push(TaskInfo {
            pid,
            ppid,
            zombie: false,
        });
        self
    }
    fn zombie(mut self, pid: u32, ppid: u32) -> World {
        self.tree.push(TaskInfo {
            pid,
            ppid,
            zombie: true,
        });
        self
    }
    fn sock(mut self, ino: u32, t: u32, state: u32, peer: u32, name: &[u8]) -> World {
        self.socks.push((
            id(ino),
            pb::UnixSkEntry {
                id: id(ino),
                ino,
                r#type: t,
                state,
                peer,
                name: name.to_vec(),
                ..Default::default()
            },
        ));
        self
    }
    fn with(mut self, f: impl FnOnce(&mut pb::UnixSkEntry)) -> World {
        if let Some((_, e)) = self.socks.last_mut() {
            f(e);
        }
        self
    }
    fn external(mut self, ino: u32, name: &[u8]) -> World {
        self.socks.push((
            id(ino),
            external_entry(id(ino), ino, DG, name.to_vec(), None, None),
        ));
        self
    }
    /// Socket `ino` held by task `pid` at `fd`.
    fn held(mut self, ino: u32, pid: u32, fd: u32) -> World {
        self.holders.push((id(ino), pid, fd));
        self
    }
    fn queue(mut self, ino: u32, bytes: u64) -> World {
        self.queued.push((id(ino), bytes));
        self
    }
    fn consent_all(mut self) -> World {
        self.ext.all = true;
        self
    }
    fn consent(mut self, ino: u32, path: Option<&str>) -> World {
        self.ext.per.insert(ino, path.map(str::to_string));
        self
    }
    fn inherit(mut self, ino: u32) -> World {
        self.inherited.insert(ino);
        self
    }
    fn model(&self) -> Model {
        let mut m = Model::new(self.socks.clone()).expect("model");
        for &(i, pid, fd) in &self.holders {
            m.add_holder(i, pid, fd);
        }
        for &(i, b) in &self.queued {
            m.add_queued(i, b);
        }
        m
    }
    fn plan(&self) -> Result<UnixPlan, Refusal> {
        let m = self.model();
        plan(&Input {
            model: &m,
            tree: &self.tree,
            ext: &self.ext,
            inherited: &self.inherited,
        })
    }
    fn ok(&self) -> UnixPlan {
        self.plan().expect("plan")
    }
}

fn path(p: &str) -> Vec<u8> {
    let mut v = p.as_bytes().to_vec();
    v.push(0);
    v
}

fn target(p: &str) -> Target {
    Target {
        name: path(p),
        dir: None,
    }
}

#[test]
fn no_sockets_nothing_to_do() {
    assert_eq!(World::new().ok(), UnixPlan::default());
}

#[test]
fn named_listener_is_made_and_finished() {
    let p = World::new()
        .sock(10, ST, LIS, 0, &path("/s.sock"))
        .held(10, 100, 3)
        .ok();
    assert_eq!(p.steps, vec![Step::Listen { ino: 10 }]);
    assert_eq!(p.finish, vec![10]);
    assert!(p.notes.is_empty());
}

#[test]
fn abstract_and_unnamed_listeners() {
    let p = World::new()
        .sock(10, SQ, LIS, 0, b"\0abs")
        .held(10, 100, 3)
        .sock(11, ST, LIS, 0, b"")
        .held(11, 100, 4)
        .ok();
    assert_eq!(
        p.steps,
        vec![Step::Listen { ino: 10 }, Step::Listen { ino: 11 }]
    );
}

#[test]
fn named_dgram_is_bound() {
    let p = World::new()
        .sock(10, DG, ST_CLOSE, 0, &path("/d.sock"))
        .held(10, 100, 3)
        .ok();
    assert_eq!(p.steps, vec![Step::Bind { ino: 10 }]);
}

#[test]
fn unnamed_pair_in_one_task_is_made_by_it() {
    let p = World::new()
        .sock(10, ST, EST, 11, b"")
        .held(10, 100, 3)
        .sock(11, ST, EST, 10, b"")
        .held(11, 100, 4)
        .ok();
    assert!(p.steps.is_empty());
    assert_eq!(
        p.task_pairs,
        vec![TaskPair {
            pid: 100,
            a_id: id(10),
            b_id: id(11)
        }]
    );
    assert!(p.finish.is_empty());
}

#[test]
fn pair_across_parent_and_child_is_made_by_the_parent() {
    let p = World::new()
        .task(101, 100)
        .sock(10, SQ, EST, 11, b"")
        .held(10, 101, 3)
        .sock(11, SQ, EST, 10, b"")
        .held(11, 100, 4)
        .ok();
    assert_eq!(p.task_pairs[0].pid, 100);
}

#[test]
fn pair_held_by_two_siblings_is_made_by_their_parent() {
    let p = World::new()
        .task(101, 100)
        .task(102, 100)
        .task(103, 101)
        .sock(10, ST, EST, 11, b"")
        .held(10, 103, 3)
        .sock(11, ST, EST, 10, b"")
        .held(11, 102, 3)
        .ok();
    assert_eq!(p.task_pairs[0].pid, 100);
}

#[test]
fn pair_held_by_a_zombie_is_made_by_crit() {
    let p = World::new()
        .zombie(101, 100)
        .sock(10, ST, EST, 11, b"")
        .held(10, 101, 3)
        .sock(11, ST, EST, 10, b"")
        .held(11, 100, 3)
        .queue(10, 5)
        .ok();
    assert!(p.task_pairs.is_empty());
    assert_eq!(p.steps, vec![Step::Pair { a: 10, b: 11 }]);
    assert_eq!(p.senders.get(&10), Some(&Sender::Made(11)));
    assert_eq!(p.finish, vec![10, 11]);
}

#[test]
fn unnamed_dgram_pair_is_made_by_its_task() {
    let p = World::new()
        .sock(10, DG, EST, 11, b"")
        .held(10, 100, 3)
        .sock(11, DG, EST, 10, b"")
        .held(11, 100, 4)
        .ok();
    assert_eq!(p.task_pairs.len(), 1);
}

#[test]
fn pair_nobody_holds_is_made_by_crit() {
    let p = World::new()
        .sock(10, ST, EST, 11, b"")
        .sock(11, ST, EST, 10, b"")
        .ok();
    assert_eq!(p.steps, vec![Step::Pair { a: 10, b: 11 }]);
}

/// A listener at /srv (10) with an accepted end (11, named like it) and
/// its client (12), in tasks 100 (server) and 101 (client).
fn server() -> World {
    World::new()
        .task(101, 100)
        .sock(10, ST, LIS, 0, &path("/srv"))
        .held(10, 100, 3)
        .sock(11, ST, EST, 12, &path("/srv"))
        .held(11, 100, 4)
        .sock(12, ST, EST, 11, b"")
        .held(12, 101, 3)
}

#[test]
fn accepted_connection_is_made_by_the_tasks() {
    let p = server().queue(11, 3).queue(12, 4).ok();
    assert_eq!(
        p.steps,
        vec![Step::Listen { ino: 10 }, Step::Client { ino: 12 }]
    );
    assert_eq!(
        p.task_conns,
        vec![TaskConn {
            listener_id: id(10),
            listener: path("/srv"),
            listener_dir: None,
            cli_id: id(12),
            acc_id: id(11),
            connector: 101,
            acceptor: 100,
        }]
    );
    // The tasks fill the queues and finish both ends.
    assert!(p.senders.is_empty());
    assert_eq!(p.finish, vec![10]);
    let m = server().model();
    assert_eq!(p.in_tasks(&m), [11, 12].into_iter().collect());
}

#[test]
fn accepted_connection_with_a_pending_one_is_made_by_crit() {
    let p = server()
        .sock(13, ST, EST, 10, b"")
        .held(13, 101, 4)
        .queue(11, 2)
        .ok();
    assert!(p.task_conns.is_empty());
    assert_eq!(
        p.steps,
        vec![
            Step::Listen { ino: 10 },
            Step::ConnectAccept {
                cli: 12,
                acc: 11,
                listener: 10
            },
            // The pending client connects to the listener's name.
            Step::Single {
                ino: 13,
                bind: false,
                connect: Some(target("/srv"))
            },
        ]
    );
    assert_eq!(p.senders.get(&11), Some(&Sender::Made(12)));
    assert_eq!(p.finish, vec![10, 11, 12, 13]);
}

#[test]
fn accepted_ends_in_two_tasks_are_made_by_crit() {
    let p = server()
        .task(102, 100)
        .sock(14, ST, EST, 15, &path("/srv"))
        .held(14, 102, 3)
        .sock(15, ST, EST, 14, b"")
        .held(15, 101, 4)
        .ok();
    assert!(p.task_conns.is_empty());
    assert!(p.steps.iter().all(|s| !matches!(s, Step::Client { .. })));
}

#[test]
fn accepted_end_shared_by_two_tasks_is_made_by_crit() {
    let p = server().task(102, 100).held(11, 102, 5).ok();
    assert!(p.task_conns.is_empty());
}

#[test]
fn deleted_or_unheld_listener_means_crit_connects() {
    let p = server().with(|_| ()).ok();
    assert_eq!(p.task_conns.len(), 1);
    // Deleted listener name.
    let mut w = server();
    w.socks[0].1.deleted = Some(true);
    assert!(w.ok().task_conns.is_empty());
    // A listener no task holds.
    let mut w = server();
    w.holders.retain(|h| h.0 != id(10));
    assert!(w.ok().task_conns.is_empty());
}

#[test]
fn client_held_by_a_zombie_means_crit_connects() {
    let mut w = server();
    w.tree[1].zombie = true;
    let p = w.ok();
    assert!(p.task_conns.is_empty());
    assert!(p.steps.contains(&Step::ConnectAccept {
        cli: 12,
        acc: 11,
        listener: 10
    }));
}

#[test]
fn named_pair_without_its_listener_loses_its_names() {
    let p = World::new()
        .sock(10, ST, EST, 11, &path("/gone"))
        .held(10, 100, 3)
        .sock(11, ST, EST, 10, b"")
        .held(11, 100, 4)
        .ok();
    assert_eq!(p.steps, vec![Step::Pair { a: 10, b: 11 }]);
    assert_eq!(p.notes, vec![Note::PairNamesLost { a: 10, b: 11 }]);
}

#[test]
fn unaccepted_end_is_left_to_its_clients_connect() {
    // crit dump's record of a pending connection's data: an end no task
    // holds, named like the listener, whose peer is the client.
    let p = World::new()
        .sock(10, ST, LIS, 0, &path("/srv"))
        .held(10, 100, 3)
        .sock(12, ST, EST, 10, b"")
        .held(12, 100, 4)
        .sock(90, ST, EST, 12, &path("/srv"))
        .queue(90, 6)
        .ok();
    assert_eq!(
        p.steps,
        vec![
            Step::Listen { ino: 10 },
            Step::Single {
                ino: 12,
                bind: false,
                connect: Some(target("/srv"))
            }
        ]
    );
    // Its data is sent from the client once connected.
    assert_eq!(p.senders.get(&90), Some(&Sender::Made(12)));
}

#[test]
fn outside_peer_without_consent_is_refused_naming_every_socket() {
    let e = World::new()
        .sock(10, DG, EST, 20, b"")
        .held(10, 100, 3)
        .external(20, &path("/ext.sock"))
        .sock(11, ST, EST, 21, b"")
        .held(11, 100, 4)
        .plan()
        .unwrap_err();
    assert_eq!(
        e,
        Refusal::NoConsent(vec![(10, DG, path("/ext.sock")), (11, ST, Vec::new())])
    );
    assert_eq!(
        e.to_string(),
        "unix sockets with a peer outside the images: 10 (DGRAM, peer /ext.sock), \
         11 (STREAM, peer -); allow with --ext-unix-sk (or --ext-unix-sk=INO[=PATH])"
    );
}

#[test]
fn outside_peer_with_consent_is_connected_by_its_task() {
    let p = World::new()
        .sock(10, DG, EST, 20, b"")
        .held(10, 100, 3)
        .external(20, &path("/ext.sock"))
        .consent_all()
        .ok();
    assert_eq!(
        p.steps,
        vec![Step::Single {
            ino: 10,
            bind: false,
            connect: None
        }]
    );
    assert_eq!(
        p.ext_connects,
        vec![ExtConnect {
            id: id(10),
            ino: 10,
            target: target("/ext.sock")
        }]
    );
    assert_eq!(
        p.notes,
        vec![Note::Reconnects {
            ino: 10,
            to: target("/ext.sock")
        }]
    );
    assert!(!p.notes[0].is_warning());
}

#[test]
fn consent_by_the_peers_inode_or_with_a_new_address() {
    let w = || {
        World::new()
            .sock(10, ST, EST, 20, b"")
            .held(10, 100, 3)
            .external(20, &path("/old"))
    };
    let p = w().consent(20, None).ok();
    assert_eq!(p.ext_connects[0].target, target("/old"));
    let p = w().consent(10, Some("/new")).ok();
    assert_eq!(p.ext_connects[0].target.name, b"/new".to_vec());
    let p = w().consent(10, Some("@svc")).ok();
    assert_eq!(p.ext_connects[0].target.name, b"\0svc".to_vec());
    // Consent for another socket is no consent.
    assert!(matches!(
        w().consent(99, None).plan(),
        Err(Refusal::NoConsent(_))
    ));
}

#[test]
fn outside_peer_without_address_needs_the_socket_handed_in() {
    let w = World::new()
        .sock(10, ST, EST, 20, b"")
        .held(10, 100, 3)
        .external(20, b"")
        .consent_all();
    assert_eq!(w.plan().unwrap_err(), Refusal::NoAddress { ino: 10 });
    // Handed in: nothing to make, and its queue cannot be refilled.
    let p = w.queue(10, 18).inherit(10).ok();
    assert!(p.steps.is_empty() && p.ext_connects.is_empty());
    assert_eq!(p.notes, vec![Note::NotRedelivered { ino: 10, bytes: 18 }]);
}

#[test]
fn peer_missing_from_the_images_counts_as_outside() {
    let e = World::new()
        .sock(10, SQ, EST, 77, b"")
        .held(10, 100, 3)
        .plan()
        .unwrap_err();
    assert_eq!(e, Refusal::NoConsent(vec![(10, SQ, Vec::new())]));
}

#[test]
fn unheld_socket_needs_no_consent() {
    let p = World::new()
        .sock(10, DG, EST, 20, b"")
        .external(20, &path("/x"))
        .ok();
    assert!(p.ext_connects.is_empty());
}

#[test]
fn inherit_fd_names_sockets_of_the_images() {
    let w = World::new().sock(10, ST, EST, 0, b"");
    let m = w.model();
    let fds = vec![
        (3, "socket:[10]".to_string()),
        (4, "pipe:[10]".to_string()),
        (5, "/dev/null".to_string()),
    ];
    assert_eq!(inherited(&m, &fds), Ok(vec![(3, 10)]));
    assert_eq!(
        inherited(&m, &[(7, "socket:[11]".to_string())]),
        Err(Refusal::InheritUnknown { fd: 7, ino: 11 })
    );
}

#[test]
fn edited_external_leaves_the_old_peer_an_orphan() {
    // crit edit --external 10: 10 now leads to 20; 11 still points at 10.
    let p = World::new()
        .sock(10, ST, EST, 20, b"")
        .held(10, 100, 3)
        .external(20, &path("/new"))
        .sock(11, ST, EST, 10, &path("/named"))
        .held(11, 100, 4)
        .queue(11, 9)
        .consent_all()
        .ok();
    assert!(p.steps.contains(&Step::Orphan { ino: 11 }));
    assert_eq!(p.senders.get(&11), Some(&Sender::Orphan));
    assert!(p.notes.contains(&Note::OrphanNameLost { ino: 11 }));
    assert!(p.finish.contains(&11));
}

#[test]
fn connection_whose_peer_closed_reads_its_queue_then_eof() {
    let p = World::new()
        .sock(10, ST, EST, 0, b"")
        .held(10, 100, 3)
        .queue(10, 4)
        .ok();
    assert_eq!(p.steps, vec![Step::Orphan { ino: 10 }]);
    assert_eq!(p.senders.get(&10), Some(&Sender::Orphan));
}

#[test]
fn unconnected_dgram_with_a_queue_is_refilled_through_a_pair() {
    let w = World::new().sock(10, DG, ST_CLOSE, 0, b"").held(10, 100, 3);
    assert_eq!(
        w.ok().steps,
        vec![Step::Single {
            ino: 10,
            bind: false,
            connect: None
        }]
    );
    let p = w.queue(10, 2).ok();
    assert_eq!(p.steps, vec![Step::Orphan { ino: 10 }]);
}

#[test]
fn dgram_sender_connected_to_a_bound_socket() {
    let p = World::new()
        .sock(10, DG, ST_CLOSE, 0, &path("/d"))
        .held(10, 100, 3)
        .queue(10, 5)
        .sock(11, DG, EST, 10, b"")
        .held(11, 100, 4)
        .ok();
    assert_eq!(
        p.steps,
        vec![
            Step::Bind { ino: 10 },
            Step::Single {
                ino: 11,
                bind: false,
                connect: Some(target("/d"))
            }
        ]
    );
    assert_eq!(p.senders.get(&10), Some(&Sender::Made(11)));
}

#[test]
fn named_dgram_without_a_sender_uses_a_temporary_one() {
    let w = World::new()
        .sock(10, DG, ST_CLOSE, 0, &path("/d"))
        .held(10, 100, 3)
        .queue(10, 5);
    assert_eq!(w.ok().senders.get(&10), Some(&Sender::Temp));
    // A name unlinked at dump cannot be connected to.
    let p = w.with(|e| e.deleted = Some(true)).ok();
    assert_eq!(p.senders.get(&10), None);
    assert_eq!(p.notes, vec![Note::NotRedelivered { ino: 10, bytes: 5 }]);
}

#[test]
fn outside_peers_data_on_a_stream_is_not_redelivered() {
    let p = World::new()
        .sock(10, ST, EST, 20, b"")
        .held(10, 100, 3)
        .queue(10, 11)
        .external(20, &path("/x"))
        .consent_all()
        .ok();
    assert_eq!(p.notes[1], Note::NotRedelivered { ino: 10, bytes: 11 });
    assert_eq!(
        p.notes[1].to_string(),
        "unix socket 10: 11 bytes the outside peer had sent are not redelivered (they stay in the images)"
    );
}

#[test]
fn dgram_connected_to_an_unnamed_socket_is_an_orphan() {
    let p = World::new()
        .sock(10, DG, ST_CLOSE, 0, b"")
        .held(10, 100, 3)
        .sock(11, DG, EST, 10, b"")
        .held(11, 100, 4)
        .ok();
    assert!(p.steps.contains(&Step::Orphan { ino: 11 }));
}

#[test]
fn peer_in_the_images_without_a_name_is_refused() {
    // A connection pending in an unnamed listener cannot be made again.
    let e = World::new()
        .sock(10, ST, LIS, 0, b"")
        .held(10, 100, 3)
        .sock(11, ST, EST, 10, b"")
        .held(11, 100, 4)
        .plan()
        .unwrap_err();
    assert_eq!(e, Refusal::PeerUnnamed { ino: 11, peer: 10 });
}

#[test]
fn names_no_socket_can_have_are_refused() {
    let e = World::new()
        .sock(10, ST, LIS, 0, b"/bad\xff\0")
        .held(10, 100, 3)
        .plan()
        .unwrap_err();
    assert!(matches!(
        e,
        Refusal::BadName {
            ino: 10,
            why: "not UTF-8",
            ..
        }
    ));
    let long = path(&format!("/{}", "x".repeat(120)));
    let e = World::new()
        .sock(10, DG, ST_CLOSE, 0, &long)
        .held(10, 100, 3)
        .plan()
        .unwrap_err();
    assert!(
        matches!(
            e,
            Refusal::BadName {
                ino: 10,
                why: "longer than 108 bytes",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn unsupported_type_is_refused() {
    let e = World::new()
        .sock(10, 3, EST, 0, b"")
        .held(10, 100, 3)
        .plan()
        .unwrap_err();
    assert_eq!(
        e,
        Refusal::BadType {
            ino: 10,
            sk_type: 3
        }
    );
}

#[test]
fn a_socket_that_cannot_be_its_own_peer_is_refused() {
    for (t, name) in [(ST, &b""[..]), (SQ, b""), (DG, b"")] {
        let e = World::new()
            .sock(10, t, EST, 10, name)
            .held(10, 100, 3)
            .plan()
            .unwrap_err();
        assert_eq!(e, Refusal::OwnPeer { ino: 10 });
    }
    // A named datagram socket connected to its own address is fine.
    World::new()
        .sock(10, DG, EST, 10, &path("/x/self.sock"))
        .held(10, 100, 3)
        .ok();
}

#[test]
fn ends_of_two_types_are_refused() {
    let e = World::new()
        .sock(10, DG, EST, 11, b"")
        .held(10, 100, 3)
        .sock(11, ST, EST, 12, b"")
        .held(11, 100, 4)
        .sock(12, ST, EST, 11, b"")
        .held(12, 100, 5)
        .plan()
        .unwrap_err();
    assert_eq!(
        e,
        Refusal::PeerType {
            ino: 10,
            sk_type: DG,
            peer: 11,
            peer_type: ST
        }
    );
    assert_eq!(
        e.to_string(),
        "unix socket 10 (DGRAM): its peer 11 is a STREAM socket"
    );
}

#[test]
fn relative_names_carry_their_directory() {
    let p = World::new()
        .sock(10, DG, ST_CLOSE, 0, &path("rel.sock"))
        .with(|e| e.name_dir = Some("/work".into()))
        .held(10, 100, 3)
        .sock(11, DG, EST, 10, b"")
        .held(11, 100, 4)
        .ok();
    assert_eq!(
        p.steps[1],
        Step::Single {
            ino: 11,
            bind: false,
            connect: Some(Target {
                name: path("rel.sock"),
                dir: Some("/work".into())
            })
        }
    );
}

#[test]
fn stream_pair_queues_are_sent_from_the_other_end() {
    let p = World::new()
        .task(101, 0)
        .sock(10, ST, EST, 11, b"")
        .held(10, 100, 3)
        .sock(11, ST, EST, 10, b"")
        .held(11, 101, 3)
        .queue(10, 1)
        .queue(11, 2)
        .ok();
    // Two roots: no common ancestor, so crit makes the pair.
    assert_eq!(p.steps, vec![Step::Pair { a: 10, b: 11 }]);
    assert_eq!(p.senders.get(&10), Some(&Sender::Made(11)));
    assert_eq!(p.senders.get(&11), Some(&Sender::Made(10)));
}

#[test]
fn external_entries_are_never_made() {
    let p = World::new().external(20, &path("/x")).ok();
    assert!(p.steps.is_empty() && p.finish.is_empty());
}

#[test]
fn common_ancestors() {
    let t = |pid, ppid| TaskInfo {
        pid,
        ppid,
        zombie: false,
    };
    let tree = [t(1, 0), t(2, 1), t(3, 2), t(4, 1), t(5, 4)];
    assert_eq!(common_ancestor(&tree, &[3, 5]), Some(1));
    assert_eq!(common_ancestor(&tree, &[3, 2]), Some(2));
    assert_eq!(common_ancestor(&tree, &[5]), Some(5));
    assert_eq!(common_ancestor(&tree, &[]), None);
    assert_eq!(common_ancestor(&tree, &[9]), None);
    let mut z = tree;
    z[2].zombie = true;
    assert_eq!(common_ancestor(&z, &[3, 5]), None);
}

#[test]
fn targets_from_the_command_line() {
    assert_eq!(target_from_arg("@svc", 1).unwrap().name, b"\0svc".to_vec());
    assert_eq!(target_from_arg("/a/b", 1).unwrap().name, b"/a/b".to_vec());
    assert!(target_from_arg(&"x".repeat(200), 1).is_err());
}
