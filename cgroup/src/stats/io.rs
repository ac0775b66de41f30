//! Block I/O per device (v2 `io.stat`, v1 `blkio.throttle.*`) and its parsers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::parse::parse_nested;
use super::read::{At, read_opt};
use crate::error::{ParseContext, Result};
use crate::hierarchy::Version;

/// Block I/O per device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoStats {
    /// One entry per device with I/O (v2 `io.stat`; v1 `blkio.throttle.io_service_bytes`
    /// and `blkio.throttle.io_serviced`).
    pub devices: Vec<IoDeviceStats>,
}

/// I/O counters of one block device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoDeviceStats {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Bytes read.
    pub rbytes: u64,
    /// Bytes written.
    pub wbytes: u64,
    /// Read operations.
    pub rios: u64,
    /// Write operations.
    pub wios: u64,
}

pub(super) fn io_stats(dir: At<'_>, version: Version) -> Result<Option<IoStats>> {
    match version {
        Version::V2 => {
            let path = dir.join("io.stat");
            let Some(text) = read_opt(&path)? else {
                return Ok(None);
            };
            let devices = parse_io_stat(&text).parse_at(&path)?;
            Ok(Some(IoStats { devices }))
        }
        Version::V1 => {
            let bytes_path = dir.join("blkio.throttle.io_service_bytes");
            let (Some(bytes), Some(ios)) = (read_opt(&bytes_path)?, read_opt(&dir.join("blkio.throttle.io_serviced"))?)
            else {
                return Ok(None);
            };
            let devices = parse_blkio(&bytes, &ios).parse_at(&bytes_path)?;
            Ok(Some(IoStats { devices }))
        }
    }
}

fn device(key: &str) -> Result<(u32, u32), String> {
    key.split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| format!("bad device {key:?}"))
}

/// v2 `io.stat`: `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..`.
pub(crate) fn parse_io_stat(text: &str) -> Result<Vec<IoDeviceStats>, String> {
    parse_nested(text)
        .into_iter()
        .map(|(key, fields)| {
            let (major, minor) = device(key)?;
            let mut d = IoDeviceStats { major, minor, ..IoDeviceStats::default() };
            for (k, v) in fields {
                let slot = match k {
                    "rbytes" => &mut d.rbytes,
                    "wbytes" => &mut d.wbytes,
                    "rios" => &mut d.rios,
                    "wios" => &mut d.wios,
                    _ => continue,
                };
                *slot = v.parse().map_err(|_| format!("{key} {k}={v:?} is not a number"))?;
            }
            Ok(d)
        })
        .collect()
}

/// v1 `blkio.throttle.io_service_bytes` and `.io_serviced`: `MAJ:MIN Read N` lines (also
/// Write, Sync, Async, Discard, Total) and a final `Total N`.
pub(crate) fn parse_blkio(bytes: &str, ios: &str) -> Result<Vec<IoDeviceStats>, String> {
    let mut devices: BTreeMap<(u32, u32), IoDeviceStats> = BTreeMap::new();
    for (text, is_bytes) in [(bytes, true), (ios, false)] {
        for line in text.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [dev, op, value] = parts[..] else {
                continue;
            };
            let (major, minor) = device(dev)?;
            let value: u64 = value.parse().map_err(|_| format!("{line:?}: not a number"))?;
            let d = devices.entry((major, minor)).or_insert(IoDeviceStats { major, minor, ..IoDeviceStats::default() });
            match (op, is_bytes) {
                ("Read", true) => d.rbytes = value,
                ("Write", true) => d.wbytes = value,
                ("Read", false) => d.rios = value,
                ("Write", false) => d.wios = value,
                _ => {}
            }
        }
    }
    Ok(devices.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_stat_v2_parses_per_device() {
        let text = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
                    253:1 rbytes=0 wbytes=512 rios=0 wios=1 dbytes=0 dios=0\n";
        let d = parse_io_stat(text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0], IoDeviceStats { major: 8, minor: 0, rbytes: 4096, wbytes: 8192, rios: 1, wios: 2 });
        assert_eq!((d[1].major, d[1].minor, d[1].wbytes), (253, 1, 512));
        assert_eq!(parse_io_stat("").unwrap(), vec![]);
        assert!(parse_io_stat("sda rbytes=1\n").is_err());
        assert!(parse_io_stat("8:0 rbytes=x\n").is_err());
    }

    #[test]
    fn blkio_v1_merges_bytes_and_ops() {
        let bytes =
            "8:0 Read 4096\n8:0 Write 1024\n8:0 Sync 5120\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 5120\nTotal 5120\n";
        let ios = "8:0 Read 1\n8:0 Write 3\n8:0 Sync 4\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 4\nTotal 4\n";
        let d = parse_blkio(bytes, ios).unwrap();
        assert_eq!(d, vec![IoDeviceStats { major: 8, minor: 0, rbytes: 4096, wbytes: 1024, rios: 1, wios: 3 }]);
        assert_eq!(parse_blkio("Total 0\n", "Total 0\n").unwrap(), vec![]);
    }
}
