//! Reading a cgroup's files through its directory fd, with the errors of missing keys and
//! unparsable contents.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use super::parse::{parse_flat, parse_limit};
use crate::at;
use crate::cgroup::Dir;
use crate::error::{Error, ParseContext, Result, SysContext};

/// A cgroup directory to read from: its fd (opened beneath the hierarchy root, see
/// `at.rs`) and its path (for errors).
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub(crate) fd: BorrowedFd<'a>,
    pub(crate) dir: &'a Path,
}

impl<'a> At<'a> {
    pub(crate) fn of(d: &'a Dir) -> At<'a> {
        At { fd: d.fd.as_fd(), dir: &d.path }
    }

    pub(crate) fn join(self, name: &str) -> File<'a> {
        File { fd: self.fd, name: name.to_owned(), path: self.dir.join(name) }
    }
}

/// One file of a cgroup directory, read through the directory's fd.
pub(crate) struct File<'a> {
    fd: BorrowedFd<'a>,
    name: String,
    path: PathBuf,
}

impl From<&File<'_>> for PathBuf {
    fn from(f: &File<'_>) -> PathBuf {
        f.path.clone()
    }
}

impl AsRef<Path> for File<'_> {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// Reads a file, `None` if it does not exist (the cgroup lacks that controller or the
/// kernel that feature).
pub(crate) fn read_opt(f: &File<'_>) -> Result<Option<String>> {
    match at::read_io(f.fd, &f.name) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).beneath("read", &f.path),
    }
}

pub(crate) fn parse_err(path: impl AsRef<Path>, detail: impl Into<String>) -> Error {
    Error::Parse { path: path.as_ref().to_owned(), detail: detail.into() }
}

/// Reads a one-number file (`max` = `None`); `Ok(None)` if absent too — callers that need
/// to tell the two apart read the file themselves.
pub(crate) fn read_number(path: &File<'_>) -> Result<Option<Option<u64>>> {
    match read_opt(path)? {
        Some(text) => parse_limit(&text).map(Some).parse_at(path),
        None => Ok(None),
    }
}

/// Reads a file holding one number; `None` if absent.
pub(crate) fn read_u64(path: &File<'_>) -> Result<Option<u64>> {
    match read_number(path)? {
        Some(Some(n)) => Ok(Some(n)),
        Some(None) => Err(parse_err(path, "\"max\" where a number was expected")),
        None => Ok(None),
    }
}

pub(crate) fn read_flat(path: &File<'_>) -> Result<Option<BTreeMap<String, u64>>> {
    Ok(read_opt(path)?.map(|t| parse_flat(&t)))
}

pub(crate) fn need(map: &BTreeMap<String, u64>, key: &str, path: impl AsRef<Path>) -> Result<u64> {
    map.get(key).copied().ok_or_else(|| parse_err(path, format!("no {key:?} key")))
}
