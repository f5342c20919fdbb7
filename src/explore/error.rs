//! Errors of `crit x` that are about what was asked, not the images.

/// A view asked for with options that do not fit it.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    #[error("x: unknown view {0:?} (ps, fds, mems, rss, sk, mem, info)")]
    UnknownView(String),
    #[error("x {view}: {option} applies only to {to}")]
    NotForView {
        view: String,
        option: &'static str,
        to: &'static str,
    },
    #[error("x mem: which task? (crit x DIR mem PID)")]
    NoPid,
    #[error("x {0}: takes no PID (only mem does)")]
    PidNotWanted(String),
    #[error("x mem: --addr and --len go together")]
    AddrWithoutLen,
    #[error("x mem: --addr/--len, --search and --search-hex are different views: give one")]
    TwoMemViews,
    #[error("x mem: the pattern is empty")]
    EmptyPattern,
    #[error("x mem: task {pid} is not in {}", file.display())]
    NoTask { pid: u32, file: std::path::PathBuf },
}
