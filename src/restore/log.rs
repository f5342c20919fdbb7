//! Restore messages: warnings always go to stderr (and the log file),
//! details only with -v.

use std::io::Write;

pub struct Log {
    pub verbose: u8,
    start: std::time::Instant,
    file: Option<std::fs::File>,
}

impl Log {
    pub fn new(verbose: u8, path: Option<&std::path::Path>) -> crate::error::Result<Log> {
        let file = match path {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| crate::error::Error::io(p.display().to_string(), e))?,
            ),
            None => None,
        };
        Ok(Log {
            verbose,
            start: std::time::Instant::now(),
            file,
        })
    }

    fn put(&mut self, level: &str, msg: &str, to_stderr: bool) {
        if to_stderr {
            eprintln!("crit: {level}{msg}");
        }
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{level}{msg}");
        }
    }

    pub fn warn(&mut self, msg: impl AsRef<str>) {
        self.put("warning: ", msg.as_ref(), true);
    }

    pub fn info(&mut self, msg: impl AsRef<str>) {
        let v = self.verbose > 0;
        self.put("", msg.as_ref(), v);
    }

    pub fn debug(&mut self, msg: impl AsRef<str>) {
        let v = self.verbose > 1;
        let m = format!(
            "[{:.3}] {}",
            self.start.elapsed().as_secs_f64(),
            msg.as_ref()
        );
        self.put("", &m, v);
    }
}
