//! The `blkio` (v1) / `io` (v2) controller: a proportional weight and per-device
//! throttles, and block I/O per device for [`crate::Stats`] (v2 `io.stat`, v1
//! `blkio.throttle.*`) with its parsers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Controller, Part, range, unsupported_here};
use crate::cgroup::Dir;
use crate::error::{ParseContext, Result, ValidationError};
use crate::hierarchy::Version;
use crate::stats::parse::parse_nested;
use crate::stats::read::{At, read_opt};

/// Block I/O: weight and per-device limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Blkio {
    /// Proportional weight: v2 `io.weight` 1–10000; v1 `blkio.weight` 10–1000 (converted).
    pub weight: Option<u64>,
    /// Per-device throttles.
    pub throttle: Vec<DeviceThrottle>,
}

impl Blkio {
    /// No setting yet (the kernel's defaults); set the fields with the setters.
    pub fn new() -> Self {
        Blkio::default()
    }

    /// Sets `weight`: the proportional weight, 1–10000.
    pub fn weight(&mut self, value: u64) -> &mut Self {
        self.weight = Some(value);
        self
    }

    /// Adds a per-device throttle.
    pub fn throttle(&mut self, throttle: DeviceThrottle) -> &mut Self {
        self.throttle.push(throttle);
        self
    }
}

/// Limits for one block device (`major:minor`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct DeviceThrottle {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Read bytes per second.
    pub read_bps: Option<u64>,
    /// Write bytes per second.
    pub write_bps: Option<u64>,
    /// Read operations per second.
    pub read_iops: Option<u64>,
    /// Write operations per second.
    pub write_iops: Option<u64>,
}

impl DeviceThrottle {
    /// No limit yet for block device `major:minor`.
    pub fn new(major: u32, minor: u32) -> Self {
        DeviceThrottle { major, minor, ..DeviceThrottle::default() }
    }

    /// Sets `read_bps`: read bytes per second.
    pub fn read_bps(&mut self, value: u64) -> &mut Self {
        self.read_bps = Some(value);
        self
    }

    /// Sets `write_bps`: write bytes per second.
    pub fn write_bps(&mut self, value: u64) -> &mut Self {
        self.write_bps = Some(value);
        self
    }

    /// Sets `read_iops`: read operations per second.
    pub fn read_iops(&mut self, value: u64) -> &mut Self {
        self.read_iops = Some(value);
        self
    }

    /// Sets `write_iops`: write operations per second.
    pub fn write_iops(&mut self, value: u64) -> &mut Self {
        self.write_iops = Some(value);
        self
    }
}

impl DeviceThrottle {
    /// The four limits with their v2 `io.max` keys and v1 `blkio.throttle.*` files.
    fn limits(&self) -> [(&'static str, &'static str, Option<u64>); 4] {
        [
            ("rbps", "blkio.throttle.read_bps_device", self.read_bps),
            ("wbps", "blkio.throttle.write_bps_device", self.write_bps),
            ("riops", "blkio.throttle.read_iops_device", self.read_iops),
            ("wiops", "blkio.throttle.write_iops_device", self.write_iops),
        ]
    }
}

impl Part for Blkio {
    fn controller(&self) -> Controller {
        Controller::Blkio
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(w) = self.weight {
            range("io.weight", w, 1, 10_000, "1..=10000")?;
        }
        for t in &self.throttle {
            for (field, v) in [
                ("io.max rbps", t.read_bps),
                ("io.max wbps", t.write_bps),
                ("io.max riops", t.read_iops),
                ("io.max wiops", t.write_iops),
            ] {
                if let Some(v) = v {
                    range(field, v, 1, u64::MAX / 2, ">= 1")?;
                }
            }
        }
        Ok(())
    }

    fn write(&self, dir: &Dir, version: Version) -> Result<()> {
        match version {
            Version::V1 => {
                if let Some(w) = self.weight {
                    // v2 1..=10000 onto v1 10..=1000.
                    let v1 = 10 + (w.clamp(1, 10_000) - 1) * 990 / 9999;
                    let file =
                        ["blkio.weight", "blkio.bfq.weight"].into_iter().find(|f| dir.has(f)).ok_or_else(|| {
                            unsupported_here(Controller::Blkio, "blkio.weight (needs the BFQ or CFQ scheduler)")
                        })?;
                    dir.write(file, &v1.to_string())?;
                }
                for t in &self.throttle {
                    for (_, file, value) in t.limits() {
                        if let Some(value) = value {
                            dir.write(file, &format!("{}:{} {value}", t.major, t.minor))?;
                        }
                    }
                }
            }
            Version::V2 => {
                if let Some(w) = self.weight {
                    let file = "io.weight";
                    if !dir.has(file) {
                        return Err(unsupported_here(
                            Controller::Blkio,
                            "io.weight (needs the BFQ scheduler or io.cost)",
                        ));
                    }
                    dir.write(file, &format!("default {w}"))?;
                }
                for t in &self.throttle {
                    let mut line = format!("{}:{}", t.major, t.minor);
                    for (key, _, value) in t.limits() {
                        if let Some(value) = value {
                            line.push_str(&format!(" {key}={value}"));
                        }
                    }
                    dir.write("io.max", &line)?;
                }
            }
        }
        Ok(())
    }
}

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

pub(crate) fn stats(dir: At<'_>, version: Version) -> Result<Option<IoStats>> {
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
    use crate::controller::fixture::Fixture;

    #[test]
    fn weight_and_throttles_in_each_versions_syntax() {
        let spec = Blkio {
            weight: Some(10_000),
            throttle: vec![DeviceThrottle {
                major: 8,
                minor: 0,
                read_bps: Some(1 << 20),
                write_iops: Some(100),
                ..DeviceThrottle::default()
            }],
        };
        let f = Fixture::new(
            Version::V1,
            &[
                ("blkio.bfq.weight", ""),
                ("blkio.throttle.read_bps_device", ""),
                ("blkio.throttle.write_iops_device", ""),
            ],
        );
        spec.write(&f.dir, Version::V1).unwrap();
        assert_eq!(f.read("blkio.bfq.weight"), "1000", "the v2 weight mapped onto 10..=1000");
        assert_eq!(f.read("blkio.throttle.read_bps_device"), "8:0 1048576");
        assert_eq!(f.read("blkio.throttle.write_iops_device"), "8:0 100");
        let f = Fixture::new(Version::V2, &[("io.weight", ""), ("io.max", "")]);
        spec.write(&f.dir, Version::V2).unwrap();
        assert_eq!(f.read("io.weight"), "default 10000");
        assert_eq!(f.read("io.max"), "8:0 rbps=1048576 wiops=100");
        // No weight file: the scheduler offers none, a typed error.
        let f = Fixture::new(Version::V2, &[("io.max", "")]);
        let err = spec.write(&f.dir, Version::V2).unwrap_err();
        assert!(matches!(err, crate::Error::ControllerUnavailable { controller: Controller::Blkio, .. }), "{err:?}");
        assert!(matches!(
            Blkio { weight: Some(0), ..Blkio::default() }.validate(),
            Err(ValidationError::OutOfRange { field: "io.weight", .. })
        ));
    }

    #[test]
    fn stats_read_fixture_files() {
        let f =
            Fixture::new(Version::V2, &[("io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n")]);
        let s = stats(At::of(&f.dir), Version::V2).unwrap().unwrap();
        assert_eq!(s.devices, vec![IoDeviceStats { major: 8, minor: 0, rbytes: 4096, wbytes: 8192, rios: 1, wios: 2 }]);
        let f = Fixture::new(
            Version::V1,
            &[
                ("blkio.throttle.io_service_bytes", "8:0 Read 4096\nTotal 4096\n"),
                ("blkio.throttle.io_serviced", "8:0 Read 1\nTotal 1\n"),
            ],
        );
        let s = stats(At::of(&f.dir), Version::V1).unwrap().unwrap();
        assert_eq!((s.devices[0].rbytes, s.devices[0].rios), (4096, 1));
        assert_eq!(stats(At::of(&Fixture::new(Version::V2, &[]).dir), Version::V2).unwrap(), None);
    }

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
