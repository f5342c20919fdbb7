//! What can go wrong while making the tree's namespaces again.

use crate::model::ns::Kind;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// A namespace kind the images own that restore cannot make.
    #[error(
        "the tree has a {ns} namespace of its own; restoring {ns} namespaces is not supported"
    )]
    Unsupported { ns: Kind },
    #[error("{ns} namespace: {what}: {source}")]
    Call {
        ns: Kind,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// A `--join-ns` (or RPC join_ns) value that cannot be taken.
    #[error("--join-ns {value}: {why}")]
    JoinArg { value: String, why: String },
    /// A namespace to join that cannot be opened or is of another kind.
    #[error("joining {ns} namespace {}: {why}", file.display())]
    Join {
        ns: Kind,
        file: std::path::PathBuf,
        why: String,
    },
    /// A System V object of the images that a joined ipc namespace lacks.
    #[error("the joined ipc namespace has no System V {kind} {id} with key {key:#x} ({what}), which the tree had; join one that holds it, or restore into a new one")]
    JoinedIpcMissing {
        kind: &'static str,
        id: u32,
        key: u32,
        what: String,
    },
    /// Two ways of giving the tree's network namespace at once.
    #[error("the tree's network namespace is external (key {key:?}): it cannot also be joined with --join-ns net")]
    JoinExternalNet { key: String },
    #[error(
        "the tree has a mount namespace of its own: give its root file system with --root DIR"
    )]
    NoRoot,
    #[error("--root {}: {source}", path.display())]
    BadRoot {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    /// An external mount whose key restore was not given.
    #[error(
        "mount {mountpoint} is external (key {key:?}): give it with --external mnt[{key}]:PATH"
    )]
    NoExternalMount { mountpoint: String, key: String },
    #[error("mount {mountpoint} ({fstype}): {why}")]
    Mount {
        mountpoint: String,
        fstype: String,
        why: String,
    },
    #[error("mount {mountpoint}: {what}: {source}")]
    MountCall {
        mountpoint: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{image}: {why}")]
    Image { image: String, why: String },
    /// A System V object that did not come back with its id.
    #[error("System V {kind} {id}: came back as {got}; is the id taken?")]
    IpcId {
        kind: &'static str,
        id: u32,
        got: i32,
    },
    /// A call on a System V object of the ipc namespace.
    #[error("ipc namespace: {what} {kind} {id}: {source}")]
    IpcCall {
        what: &'static str,
        kind: &'static str,
        id: i64,
        #[source]
        source: io::Error,
    },
    #[error("ipc namespace: /proc/sys/{name} = {value}: {source}")]
    Sysctl {
        name: String,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("network device {name} ({kind}): only loopback is restored")]
    NetDevice { name: String, kind: String },
    /// An external network namespace not handed in.
    #[error(
        "the network namespace is external (key {key:?}): hand it in with --inherit-fd fd[N]:{key}"
    )]
    NoExternalNet { key: String },
    #[error("the namespace thread stopped: {0}")]
    Yard(String),
}
