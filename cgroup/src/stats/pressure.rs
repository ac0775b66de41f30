//! Pressure stall information (`cpu.pressure`, `memory.pressure`, `io.pressure` in the v2
//! directory) and its parser.

use std::io;

use serde::{Deserialize, Serialize};

use super::parse::parse_nested;
use super::read::At;
use crate::at;
use crate::error::{ParseContext, Result, SysContext};

/// Pressure stall information of the cgroup (`cpu.pressure`, `memory.pressure`,
/// `io.pressure` in the v2 directory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PressureStats {
    /// CPU pressure.
    pub cpu: Option<Pressure>,
    /// Memory pressure.
    pub memory: Option<Pressure>,
    /// I/O pressure.
    pub io: Option<Pressure>,
}

/// One PSI file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    /// Some tasks stalled.
    pub some: PressureLine,
    /// All non-idle tasks stalled at once (absent from old kernels' `cpu.pressure`).
    pub full: Option<PressureLine>,
}

/// One line of a PSI file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PressureLine {
    /// Share of time stalled over the last 10 s, in percent.
    pub avg10: f64,
    /// Over the last 60 s, in percent.
    pub avg60: f64,
    /// Over the last 300 s, in percent.
    pub avg300: f64,
    /// Total stall time, µs.
    pub total_usec: u64,
}

pub(super) fn pressure_stats(dir: At<'_>) -> Result<Option<PressureStats>> {
    let read = |file: &str| -> Result<Option<Pressure>> {
        let path = dir.dir.join(file);
        match at::read_io(dir.fd, file) {
            Ok(text) => parse_psi(&text).map(Some).parse_at(&path),
            // Absent, or PSI disabled at boot (`psi=0`: EOPNOTSUPP).
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
            Err(e) => Err(e).beneath("read", &path),
        }
    };
    let p = PressureStats { cpu: read("cpu.pressure")?, memory: read("memory.pressure")?, io: read("io.pressure")? };
    Ok((p.cpu.is_some() || p.memory.is_some() || p.io.is_some()).then_some(p))
}

/// A PSI file: a `some` line and, on most files, a `full` line, each
/// `avg10=.. avg60=.. avg300=.. total=..`.
pub(crate) fn parse_psi(text: &str) -> Result<Pressure, String> {
    let mut some = None;
    let mut full = None;
    for (key, fields) in parse_nested(text) {
        let mut line = PressureLine::default();
        let mut seen = 0;
        for (k, v) in fields {
            let bad = || format!("{key} {k}={v:?} is not a number");
            match k {
                "avg10" => line.avg10 = v.parse().map_err(|_| bad())?,
                "avg60" => line.avg60 = v.parse().map_err(|_| bad())?,
                "avg300" => line.avg300 = v.parse().map_err(|_| bad())?,
                "total" => line.total_usec = v.parse().map_err(|_| bad())?,
                _ => continue,
            }
            seen += 1;
        }
        if seen != 4 {
            return Err(format!("{key} line lacks avg10/avg60/avg300/total"));
        }
        match key {
            "some" => some = Some(line),
            "full" => full = Some(line),
            _ => {}
        }
    }
    Ok(Pressure { some: some.ok_or("no \"some\" line")?, full })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_lines_parse_with_and_without_full() {
        let text = "some avg10=1.74 avg60=2.46 avg300=4.43 total=202186517\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        let p = parse_psi(text).unwrap();
        assert_eq!(p.some, PressureLine { avg10: 1.74, avg60: 2.46, avg300: 4.43, total_usec: 202186517 });
        assert_eq!(p.full.unwrap().total_usec, 0);
        let old_cpu = parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n").unwrap();
        assert_eq!((old_cpu.some.total_usec, old_cpu.full), (5, None));
        assert!(parse_psi("").is_err());
        assert!(parse_psi("some avg10=0.00 total=1\n").is_err());
        assert!(parse_psi("some avg10=x avg60=0 avg300=0 total=1\n").is_err());
    }
}
