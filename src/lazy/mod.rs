//! Post-copy restore: `crit restore --lazy-pages` rebuilds a tree
//! without the contents of its private anonymous memory and hands each
//! task's userfaultfd to `crit lazy-pages` ([`daemon`]), which brings the
//! pages in on demand and in the background; [`handover`] is CRIU's
//! protocol between the two, [`iovs`] what is left to bring in.

pub mod daemon;
pub mod handover;
pub mod iovs;
