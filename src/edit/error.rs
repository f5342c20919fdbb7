//! What can go wrong in `crit edit`, with the file, inode and action as
//! fields. Each variant prints as the one line `crit edit` has always
//! printed for it.

use std::io;
use std::path::PathBuf;

/// A refused or failed edit; the images are left as they were.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("edit: no action given: use --reconnect INO=PATH or --external INO[=PATH]")]
    NoAction,
    #[error("{label}: inode {ino} is already named by {other}; give one action per socket")]
    SameInode {
        label: String,
        ino: u32,
        other: String,
    },
    #[error("{label}: INO must be a socket inode number (1 to 4294967295)")]
    BadInode { label: String },
    #[error("{label}: expected INO=PATH")]
    NeedPath { label: String },
    #[error("{label}: {why}")]
    Path { label: String, why: PathFault },
    #[error("{}: {why}", dir.display())]
    Dir { dir: PathBuf, why: DirFault },
    #[error("{}: lock: {source}", dir.display())]
    Lock {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{file}: the entry of unix socket {ino} (file id {id}, at byte {offset}) does not re-encode to its own bytes (fields crit does not know?); refusing to rewrite it")]
    NoReencode {
        file: String,
        ino: u32,
        id: u32,
        offset: u64,
    },
    #[error("{file}: entry at byte {offset} (file id {id}) is UNIXSK but has no unix_sk_entry")]
    NoUnixEntry { file: String, offset: u64, id: u32 },
    #[error("{file}: {source}")]
    Model {
        file: String,
        #[source]
        source: crate::model::unix::DuplicateInode,
    },
    /// An action that cannot apply to the socket it names.
    #[error("{file}: {label}: {why}")]
    Refused {
        file: String,
        label: String,
        why: Refusal,
    },
    #[error("{file}: no free {what} left")]
    Exhausted { file: String, what: &'static str },
    /// An entry the edit made or changed would not restore.
    #[error("{file}: {sock} would be inconsistent: {why}")]
    Inconsistent {
        file: String,
        sock: String,
        why: Inconsistency,
    },
}

/// What is wrong with the PATH of `--reconnect` or `--external`.
#[derive(Debug, thiserror::Error)]
pub enum PathFault {
    #[error("PATH is empty")]
    Empty,
    #[error("PATH contains a NUL byte")]
    Nul,
    #[error("the abstract name after @ is empty")]
    EmptyAbstract,
    #[error("PATH must be absolute (/...) or @name for an abstract address")]
    Relative,
    #[error("PATH is {len} bytes, more than the {max} a unix socket address can take")]
    TooLong { len: usize, max: usize },
}

/// Why a directory is not an image set `crit edit` can change.
#[derive(Debug, thiserror::Error)]
pub enum DirFault {
    #[error("no such directory")]
    Missing,
    #[error("not a directory")]
    NotDir,
    #[error("not a complete image set: missing {}", .0.join(", "))]
    Incomplete(Vec<&'static str>),
    #[error(
        "has unixsk.img (an old image layout); crit edit only edits unix sockets in files.img"
    )]
    OldLayout,
}

/// Why an action cannot apply to its socket; `sock` is the socket as
/// [`crate::model::unix::Sock::describe`] renders it.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("no unix socket with inode {ino}; {}", known_list(.known))]
    NoSuchInode { ino: u32, known: Vec<String> },
    #[error("{sock} is also changed by {by}; one entry can take one change per call")]
    AlsoChanged { sock: String, by: String },
    #[error("{sock} is not connected (peer 0{})", after_label(.after))]
    NotConnected { sock: String, after: Option<String> },
    #[error("{sock}: its peer {peer} is not in the images")]
    PeerMissing { sock: String, peer: u32 },
    #[error("{sock} is connected to {peer}, which is in the images, not external; use --external {ino}=PATH to connect it elsewhere")]
    PeerInImages { sock: String, peer: u32, ino: u32 },
    #[error("{sock} is not connected: no socket in the images has it as peer")]
    NoUsers { sock: String },
    #[error("{sock} is already the outside end of a connection; use --reconnect {ino}=PATH to change its address")]
    AlreadyOutside { sock: String, ino: u32 },
    #[error("{sock} is connected to itself")]
    SelfConnected { sock: String },
    #[error(
        "{sock} is already connected to an external socket ({peer}); use --reconnect {ino}=PATH"
    )]
    AlreadyExternal {
        sock: String,
        peer: String,
        ino: u32,
    },
}

/// What would make a changed entry unrestorable.
#[derive(Debug, thiserror::Error)]
pub enum Inconsistency {
    #[error("its name is {len} bytes, over {max}")]
    NameTooLong { len: usize, max: usize },
    #[error("its peer {0} is not in the images")]
    PeerMissing(u32),
    #[error("an external entry with peer {0}")]
    ExternalWithPeer(u32),
    #[error("no socket is connected to it")]
    Unused,
    #[error("CRIU restores an ESTABLISHED stream socket without peer only when it is shut down both ways")]
    EstablishedWithoutPeer,
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "the images hold no unix sockets".to_string()
    } else {
        format!(
            "unix sockets in the images (inode name): {}",
            known.join(", ")
        )
    }
}

fn after_label(label: &Option<String>) -> String {
    label
        .as_ref()
        .map(|l| format!(", after {l}"))
        .unwrap_or_default()
}
