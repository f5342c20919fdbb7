//! TCP connection states (the kernel's numbers, as `inet_sk_entry.state`
//! records them) and where a half-closed connection keeps its FINs: the
//! bookkeeping dump and restore share, as CRIU's soccr does it, so that
//! either engine restores the other's images.
//!
//! A FIN takes one sequence number but no byte of a queue. The dump
//! leaves it out of the send queue's lengths; the stream's sequence
//! numbers still count it (`outq_seq` past our FIN once we sent one,
//! `inq_seq` past the peer's once it came). The restore steps them back,
//! builds the connection as established, and then replays each FIN in
//! the order the states say: ours with `shutdown(SHUT_WR)`, the peer's as
//! a forged segment (see [`crate::sys::rawtcp`]).

pub const ESTABLISHED: u32 = 1;
pub const SYN_SENT: u32 = 2;
pub const FIN_WAIT1: u32 = 4;
pub const FIN_WAIT2: u32 = 5;
pub const CLOSE: u32 = 7;
pub const CLOSE_WAIT: u32 = 8;
pub const LAST_ACK: u32 = 9;
pub const LISTEN: u32 = 10;
pub const CLOSING: u32 = 11;

/// The states of a connection whose queues a dump takes and a restore
/// builds back: established, every half-closed state, and connecting
/// (SYN_SENT: the restore sends its SYN again).
pub fn is_repairable(state: u32) -> bool {
    matches!(
        state,
        ESTABLISHED | SYN_SENT | FIN_WAIT1 | FIN_WAIT2 | CLOSE_WAIT | LAST_ACK | CLOSING
    )
}

/// Where the FINs of a state are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fins {
    /// We sent a FIN before the peer's came (FIN_WAIT*, CLOSING).
    pub ours_first: bool,
    /// We sent a FIN after the peer's came (LAST_ACK).
    pub ours_second: bool,
    /// The peer acknowledged our FIN (FIN_WAIT2).
    pub ours_acked: bool,
    /// The peer's FIN came (CLOSE_WAIT, LAST_ACK, CLOSING).
    pub theirs: bool,
}

impl Fins {
    pub fn of(state: u32) -> Fins {
        Fins {
            ours_first: matches!(state, FIN_WAIT1 | FIN_WAIT2 | CLOSING),
            ours_second: state == LAST_ACK,
            ours_acked: state == FIN_WAIT2,
            theirs: matches!(state, CLOSE_WAIT | LAST_ACK | CLOSING),
        }
    }

    /// Whether our FIN is in the send queue's sequence space.
    pub fn ours(&self) -> bool {
        self.ours_first || self.ours_second
    }
}

/// The kernel's name of a state, or its number.
pub fn name(state: u32) -> String {
    let names = [
        "",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
    ];
    names
        .get(state as usize)
        .filter(|n| !n.is_empty())
        .map_or_else(|| state.to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_half_closed_state_has_its_fins() {
        assert_eq!(Fins::of(ESTABLISHED), Fins::default());
        let f = Fins::of(FIN_WAIT2);
        assert!(f.ours_first && f.ours_acked && !f.theirs);
        let f = Fins::of(CLOSING);
        assert!(f.ours_first && !f.ours_acked && f.theirs);
        let f = Fins::of(LAST_ACK);
        assert!(f.ours_second && !f.ours_first && f.theirs);
        assert!(Fins::of(FIN_WAIT1).ours() && !Fins::of(CLOSE_WAIT).ours());
        assert_eq!(Fins::of(SYN_SENT), Fins::default());
        assert!(is_repairable(SYN_SENT) && !is_repairable(LISTEN) && !is_repairable(CLOSE));
        assert_eq!(name(CLOSE_WAIT), "CLOSE_WAIT");
        assert_eq!(name(42), "42");
    }
}
