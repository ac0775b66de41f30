//! An entry's metadata as the tar headers and PAX records give it (overlay's own xattrs left
//! out).

use std::io::{self, Read};

use rustix::fs::{Timespec, Timestamps};

use crate::whiteout::is_overlay_xattr_name;

/// An entry's metadata.
#[derive(Default)]
pub(super) struct Meta {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: (i64, u32),
    pub(super) atime: Option<(i64, u32)>,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    pub(super) fn read<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> io::Result<()> {
        let h = entry.header();
        self.mode = h.mode()? & 0o7777;
        self.uid = id32(h.uid()?)?;
        self.gid = id32(h.gid()?)?;
        self.mtime = (h.mtime()? as i64, 0);
        self.atime = None;
        self.xattrs.clear();
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                let key = ext.key_bytes();
                if key == b"mtime" {
                    self.mtime = parse_pax_time(ext.value_bytes()).unwrap_or(self.mtime);
                } else if key == b"atime" {
                    self.atime = parse_pax_time(ext.value_bytes());
                } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if is_overlay_xattr_name(name) {
                        continue;
                    }
                    self.xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
        Ok(())
    }

    pub(super) fn timestamps(&self) -> Timestamps {
        let ts = |(s, ns): (i64, u32)| Timespec { tv_sec: s, tv_nsec: ns as _ };
        Timestamps { last_access: ts(self.atime.unwrap_or(self.mtime)), last_modification: ts(self.mtime) }
    }
}

pub(super) fn id32(v: u64) -> io::Result<u32> {
    u32::try_from(v)
        .ok()
        .filter(|&v| v != u32::MAX)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("uid/gid {v} out of range")))
}

/// Parses a PAX time (`seconds[.fraction]`, possibly negative).
pub(super) fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut ns: u32 = 0;
    let mut digits = 0;
    for c in frac.chars() {
        let d = c.to_digit(10)?;
        if digits < 9 {
            ns = ns * 10 + d;
            digits += 1;
        }
    }
    while digits < 9 {
        ns *= 10;
        digits += 1;
    }
    if s.starts_with('-') && ns != 0 {
        // -1.25 is 1.25 s before the epoch: (-2, 0.75 s).
        return Some((secs - 1, 1_000_000_000 - ns));
    }
    Some((secs, ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse_pax_time(b"1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(parse_pax_time(b"1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_pax_time(b"x"), None);
    }

    #[test]
    fn ids_in_range() {
        assert_eq!(id32(1000).unwrap(), 1000);
        assert!(id32(u64::from(u32::MAX)).is_err());
        assert!(id32(1 << 40).is_err());
    }
}
