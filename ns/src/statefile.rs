//! The on-disk state policy every nook crate follows (IPAM allocations, the layer store, the
//! facade's sandbox records): one lock-file and one atomic-replace implementation.
//!
//! - [`LockFile`]: `flock(2)` on a file that is created (mode 0600) if missing, through a new
//!   open file description per lock (so two handles in one process exclude each other, as two
//!   processes do); `EINTR` is retried; the lock is released when the handle drops, and by the
//!   kernel if the process dies.
//! - [`rfc3339`]: the one formatter of the timestamps state documents carry (OCI's `created`).
//! - [`write_atomic`]: write to a unique temporary file in the same directory, `fsync` it,
//!   `rename(2)` it over the target, `fsync` the directory. A reader sees the old or the new
//!   content, never a mix; after a crash the file is one of the two.
//!
//! It lives in nook-ns because every crate that keeps state already depends on it. Errors name
//! the call and the path ([`FileError`]), so each crate turns them into its own
//! `Sys { call, path, source }`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{FlockOperation, flock};

/// A failed file operation of this module: the call, the path, the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{call} {} failed: {source}", path.display())]
#[non_exhaustive]
pub struct FileError {
    /// The call (`"open"`, `"flock"`, `"write"`, `"fsync"`, `"rename"`).
    pub call: &'static str,
    /// The file or directory it worked on.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl FileError {
    /// A failure of `call` on `path`.
    pub fn new(call: &'static str, path: &Path, source: io::Error) -> Self {
        FileError { call, path: path.to_owned(), source }
    }

    /// The OS error number, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Names the call and path of a failed file operation (this module's `SysContext`).
trait FileContext<T> {
    fn file_ctx(self, call: &'static str, path: &Path) -> Result<T, FileError>;
}

impl<T> FileContext<T> for io::Result<T> {
    fn file_ctx(self, call: &'static str, path: &Path) -> Result<T, FileError> {
        self.map_err(|source| FileError::new(call, path, source))
    }
}

/// A held `flock(2)` lock; released on drop.
#[derive(Debug)]
pub struct LockFile {
    file: File,
    path: PathBuf,
}

impl LockFile {
    /// Waits for the exclusive lock on `path` (created if missing).
    pub fn exclusive(path: impl AsRef<Path>) -> Result<LockFile, FileError> {
        LockFile::take(path.as_ref(), FlockOperation::LockExclusive)
    }

    /// Waits for a shared lock on `path` (created if missing).
    pub fn shared(path: impl AsRef<Path>) -> Result<LockFile, FileError> {
        LockFile::take(path.as_ref(), FlockOperation::LockShared)
    }

    /// Takes the exclusive lock if nobody holds the file; `Ok(None)` if somebody does.
    pub fn try_exclusive(path: impl AsRef<Path>) -> Result<Option<LockFile>, FileError> {
        match LockFile::take(path.as_ref(), FlockOperation::NonBlockingLockExclusive) {
            Ok(lock) => Ok(Some(lock)),
            Err(e) if e.source.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn take(path: &Path, op: FlockOperation) -> Result<LockFile, FileError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .file_ctx("open", path)?;
        loop {
            match flock(&file, op) {
                Ok(()) => return Ok(LockFile { file, path: path.to_owned() }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(FileError::new("flock", path, e.into())),
            }
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open lock file (e.g. to store an owner record in it).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Replaces `path` with `bytes` atomically and durably (see the module docs). The temporary
/// file is `.<name>.tmp.<pid>.<n>` beside the target, mode 0600, removed if anything fails.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), FileError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let path = path.as_ref();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        FileError::new("write_atomic", path, io::Error::new(io::ErrorKind::InvalidInput, "no file name"))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}.{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).file_ctx("open", &tmp)?;
        f.write_all(bytes).file_ctx("write", &tmp)?;
        f.sync_all().file_ctx("fsync", &tmp)?;
        std::fs::rename(&tmp, path).file_ctx("rename", &tmp)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    sync_dir(dir)
}

/// `fsync`s a directory, making a rename or create in it durable.
pub fn sync_dir(dir: impl AsRef<Path>) -> Result<(), FileError> {
    let dir = dir.as_ref();
    File::open(dir).and_then(|d| d.sync_all()).file_ctx("fsync", dir)
}

/// `time` as RFC 3339 in UTC, with nanoseconds (`2026-12-05T19:11:36.000000005Z`) or to the
/// second (`2026-12-05T19:11:36Z`); times before the epoch count as the epoch.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use nook_ns::statefile::rfc3339;
///
/// let t = UNIX_EPOCH + Duration::new(951_782_400, 5);
/// assert_eq!(rfc3339(t, false), "2000-02-29T00:00:00Z");
/// assert_eq!(rfc3339(t, true), "2000-02-29T00:00:00.000000005Z");
/// ```
pub fn rfc3339(time: std::time::SystemTime, nanos: bool) -> String {
    let since = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let fraction = if nanos { format!(".{:09}", since.subsec_nanos()) } else { String::new() };
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = |secs, nanos| UNIX_EPOCH + Duration::new(secs, nanos);
        assert_eq!(rfc3339(at(0, 0), false), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(0, 0), true), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(at(951_782_400, 0), false), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_796_479_371, 0), false), "2026-12-05T14:02:51Z");
        assert_eq!(rfc3339(at(1_796_497_896, 5), true), "2026-12-05T19:11:36.000000005Z");
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(5), false), "1970-01-01T00:00:00Z");
    }

    fn tmpdir() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("nk-statefile-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let d = tmpdir();
        let p = d.join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn exclusive_lock_excludes_a_second_handle_in_the_same_process() {
        let d = tmpdir();
        let p = d.join(".lock");
        let held = LockFile::exclusive(&p).unwrap();
        assert!(LockFile::try_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(LockFile::try_exclusive(&p).unwrap().is_some());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
