//! Restore messages: warnings go to stderr (and the log file), details
//! only with -v. Shared by the threads that rebuild tasks.
//!
//! Without -v a warning reaches stderr only once the restore has
//! succeeded ([`Log::release_warnings`]): each says what the restored
//! tree lacks, which means nothing when there is no tree, and a failed
//! restore says one line, its error. The log file has them at once.

use std::io::Write;
use std::sync::Mutex;

pub struct Log {
    pub verbose: u8,
    start: std::time::Instant,
    /// Serialises lines from several threads (stderr and the file).
    file: Mutex<Option<std::fs::File>>,
    /// Warnings not yet on stderr (without -v); None once released.
    held: Mutex<Option<Vec<String>>>,
}

impl Log {
    pub fn new(verbose: u8, path: Option<&std::path::Path>) -> crate::error::Result<Log> {
        // As the servers' -o: a FIFO nobody reads is refused, not waited
        // for with the tree half made.
        let file = path.map(crate::detach::open_log).transpose()?;
        Ok(Log {
            verbose,
            start: std::time::Instant::now(),
            file: Mutex::new(file),
            held: Mutex::new((verbose == 0).then(Vec::new)),
        })
    }

    fn put(&self, level: &str, msg: &str, to_stderr: bool) {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if to_stderr {
            // Not eprintln!: it panics when stderr cannot be written
            // (2>/dev/full), and a message is not worth the restore.
            let _ = writeln!(std::io::stderr(), "crit: {level}{msg}");
        }
        if let Some(f) = file.as_mut() {
            // One write per line, not one per piece.
            let _ = f.write_all(format!("{level}{msg}\n").as_bytes());
        }
    }

    pub fn warn(&self, msg: impl AsRef<str>) {
        let msg = msg.as_ref();
        let now = match self.held.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(held) => {
                held.push(msg.to_string());
                false
            }
            None => true,
        };
        self.put("warning: ", msg, now);
    }

    /// Puts the warnings held back so far on stderr, and any later one
    /// at once: the restore worked.
    pub fn release_warnings(&self) {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut err = std::io::stderr().lock();
        for w in held.unwrap_or_default() {
            let _ = writeln!(err, "crit: warning: {w}");
        }
    }

    pub fn info(&self, msg: impl AsRef<str>) {
        let v = self.verbose > 0;
        self.put("", msg.as_ref(), v);
    }

    pub fn debug(&self, msg: impl AsRef<str>) {
        let v = self.verbose > 1;
        let m = format!(
            "[{:.3}] {}",
            self.start.elapsed().as_secs_f64(),
            msg.as_ref()
        );
        self.put("", &m, v);
    }
}
