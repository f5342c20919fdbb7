//! `--join-ns NS:PID|NS_FILE` (CRIU's option, and `join_ns` in its RPC,
//! which runc sends for every namespace its config.json gives by path):
//! the tree is restored into an existing namespace instead of a new one.
//!
//! A joined namespace is someone else's (a pod's, a manager's), shared
//! and live, so crit uses it as it is and writes nothing into it: the
//! yard enters it where it would have made one, and whatever the images
//! say of such a namespace is not applied. The host and domain names
//! stay the owner's (as runc, which sets no host name in a uts namespace
//! it joins); every System V object of the images must already be there
//! with its id, key and size (the namespace outlived the tree), else the
//! restore fails naming it; loopback keeps its flags, and a namespace
//! with TCP connections to repair is not locked whole during the
//! restore. So a failed restore leaves the namespace as it was. A
//! whole-namespace lock found there when the tree has connections is
//! taken for the dump's (the tree owned this very namespace) and lifted
//! right before the tree runs, as for one handed in with `--inherit-fd`:
//! the images cannot tell it from another dump's lock of the same
//! namespace.
//! CRIU 4.2 differs: it fills a joined namespace as a new one (names,
//! System V objects and limits, loopback flags) and leaves that there
//! when its restore fails.
//!
//! uts, ipc and net can be joined. pid cannot (CRIU neither); mnt, time
//! and user are refused by name, as crit makes those itself or not at
//! all. The file is opened before anything is made, so a wrong one is
//! the first error.

use super::error::NsError;
use crate::error::Result;
use crate::model::ns::Kind;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// One `--join-ns`: the kind and the namespace file (`/proc/PID/ns/NS`
/// when given a pid).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinNs {
    pub kind: Kind,
    pub file: PathBuf,
}

/// The kinds a tree can join.
const JOINABLE: [Kind; 3] = [Kind::Uts, Kind::Ipc, Kind::Net];

impl JoinNs {
    /// Parses `NS:PID`, `NS:FILE` or either with CRIU's `,EXTRA` (only
    /// user namespaces take one, and those are refused).
    pub fn parse(s: &str) -> Result<JoinNs> {
        let bad = |why: &str| -> crate::error::Error {
            NsError::JoinArg {
                value: s.to_string(),
                why: why.to_string(),
            }
            .into()
        };
        let (ns, target) = s
            .split_once(':')
            .ok_or_else(|| bad("expected NS:PID or NS:FILE"))?;
        let kind = Kind::from_name(ns).ok_or_else(|| bad("no such namespace kind"))?;
        if kind == Kind::Pid {
            return Err(bad("a pid namespace cannot be joined"));
        }
        if !JOINABLE.contains(&kind) {
            return Err(bad("crit joins uts, ipc and net namespaces only"));
        }
        if target.contains(',') {
            return Err(bad("extra options are for user namespaces only"));
        }
        if target.is_empty() {
            return Err(bad("no PID or FILE"));
        }
        let file = match target.parse::<u32>() {
            Ok(0) => return Err(bad("pid 0")),
            Ok(pid) => PathBuf::from(format!("/proc/{pid}/ns/{}", kind.name())),
            Err(_) => PathBuf::from(target),
        };
        Ok(JoinNs { kind, file })
    }

    /// Opens the namespace file and checks it is a namespace of this
    /// kind (setns would say EINVAL later, with less to go on).
    pub fn open(&self) -> Result<(Kind, OwnedFd)> {
        let err = |why: String| -> crate::error::Error {
            NsError::Join {
                ns: self.kind,
                file: self.file.clone(),
                why,
            }
            .into()
        };
        let fd = nix::fcntl::open(
            &self.file,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| err(std::io::Error::from(e).to_string()))?;
        match crate::sys::ns::kind_of(&fd) {
            Ok(flag) if flag == self.kind.clone_flag() => Ok((self.kind, fd)),
            Ok(_) => Err(err(format!(
                "another kind of namespace (wanted {})",
                self.kind.name()
            ))),
            Err(e) => Err(err(format!("not a namespace file ({e})"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_criu_spellings_and_refuses_the_rest() {
        assert_eq!(
            JoinNs::parse("uts:/run/ns/uts").unwrap(),
            JoinNs {
                kind: Kind::Uts,
                file: "/run/ns/uts".into()
            }
        );
        assert_eq!(
            JoinNs::parse("ipc:42").unwrap().file,
            PathBuf::from("/proc/42/ns/ipc")
        );
        assert_eq!(JoinNs::parse("net:7").unwrap().kind, Kind::Net);
        for (arg, why) in [
            ("uts", "expected NS:PID"),
            ("foo:1", "no such namespace kind"),
            ("pid:1", "pid namespace cannot be joined"),
            ("mnt:1", "uts, ipc and net"),
            ("user:1,0,0", "uts, ipc and net"),
            ("uts:1,0", "extra options"),
            ("uts:", "no PID or FILE"),
            ("uts:0", "pid 0"),
        ] {
            let e = JoinNs::parse(arg).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(arg), "{arg}: {e}");
        }
    }

    #[test]
    fn open_checks_the_kind() {
        let uts = JoinNs::parse("uts:/proc/self/ns/uts").unwrap();
        assert!(uts.open().is_ok());
        let wrong = JoinNs {
            kind: Kind::Ipc,
            file: "/proc/self/ns/uts".into(),
        };
        let e = wrong.open().unwrap_err().to_string();
        assert!(e.contains("another kind of namespace (wanted ipc)"), "{e}");
        let none = JoinNs {
            kind: Kind::Uts,
            file: "/proc/self/status".into(),
        };
        let e = none.open().unwrap_err().to_string();
        assert!(
            e.contains("/proc/self/status") && e.contains("not a namespace"),
            "{e}"
        );
    }
}
