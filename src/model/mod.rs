//! Facts the layers share, each with one home: how a dumped machine and
//! this one compare ([`cpu`]); the unix sockets of an image set and the
//! words for them ([`unix`]).

pub mod cpu;
pub mod unix;
