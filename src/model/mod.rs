//! Facts both engines share, each with one home: how a dumped machine and
//! this one compare ([`cpu`]).

pub mod cpu;
