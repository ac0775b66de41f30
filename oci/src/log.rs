//! `--log FILE` and `--log-format text|json`: runc's logging contract. containerd reads the
//! error text of a failed command from the json log's `"level":"error"` line.

use std::io::Write;
use std::path::PathBuf;

/// Where errors and debug lines go.
#[derive(Debug)]
pub(crate) struct Logger {
    file: Option<PathBuf>,
    json: bool,
    debug: bool,
}

/// The process's logger (set once in `main`).
static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// Logs a debug line (`--debug`): to the log file when given, else stderr.
pub(crate) fn debug(msg: &str) {
    if let Some(l) = LOGGER.get().filter(|l| l.debug) {
        let line = l.line("debug", msg);
        l.write(&line, true);
    }
}

/// Logs a warning (always): to the log file when given, else stderr.
pub(crate) fn warn(msg: &str) {
    if let Some(l) = LOGGER.get() {
        let line = l.line("warning", msg);
        l.write(&line, true);
    }
}

impl Logger {
    /// The logger of these options, installed for [`debug`].
    pub(crate) fn install(opts: &liboci_cli::GlobalOpts) -> &'static Logger {
        LOGGER.get_or_init(|| Logger {
            file: opts.log.clone(),
            json: opts.log_format.as_deref() == Some("json"),
            debug: opts.debug,
        })
    }

    /// Appends `line` to the log file; to stderr too unless `file_only` and a file is set.
    fn write(&self, line: &str, file_only: bool) {
        match &self.file {
            Some(path) => {
                if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                    let _ = f.write_all(line.as_bytes());
                }
                if !file_only {
                    let _ = std::io::stderr().write_all(line.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    /// Logs an error: to the log file when given (and stderr too, as runc prints it), else
    /// stderr.
    pub(crate) fn error(&self, msg: &str) {
        let line = self.line("error", msg);
        if let Some(path) = &self.file
            && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
        let _ = std::io::stderr().write_all(if self.json { line } else { format!("nook-oci: {msg}\n") }.as_bytes());
    }

    fn line(&self, level: &str, msg: &str) -> String {
        let time = crate::state::rfc3339_now();
        if self.json {
            let v = serde_json::json!({ "level": level, "msg": msg, "time": time });
            format!("{v}\n")
        } else {
            format!("time=\"{time}\" level={level} msg={msg:?}\n")
        }
    }
}
