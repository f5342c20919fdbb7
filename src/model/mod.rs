//! Facts the layers share, each with one home: cgroup hierarchies and
//! properties ([`cgroup`]); how a dumped machine and this one compare
//! ([`cpu`]); whether a file is the one dumped ([`file`]); file locks as
//! /proc shows and filelocks.img records them ([`lock`]); the netlink
//! protocols restored ([`netlink`]); namespace kinds and which ones a
//! tree owns ([`ns`]); which pages a dump holds and where ([`pagemap`]);
//! a socket filter as the images pack it ([`sockfilter`]);
//! TCP states and where a half-closed connection keeps its FINs
//! ([`tcp`]); the unix sockets of an image set and the words for them
//! ([`unix`]); the mark a vDSO proxy leaves for the next dump
//! ([`vdso_mark`]).

pub mod cgroup;
pub mod cpu;
pub mod file;
pub mod lock;
pub mod mount;
pub mod netlink;
pub mod netlock;
pub mod ns;
pub mod pagemap;
pub mod sockfilter;
pub mod tcp;
pub mod tty;
pub mod unix;
pub mod vdso_mark;
