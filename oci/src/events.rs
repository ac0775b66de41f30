//! `events [--stats] [--interval DURATION] ID`: the container's resource use as runc prints it —
//! one JSON line per event, `{"type":"stats","id":ID,"data":{…}}` with runc's `Stats` shape
//! (`cpu` in nanoseconds, `memory` with `usage`/`swap`/`raw`, `pids`, `blkio`; `cpuset`,
//! `hugetlb`, `intel_rdt` empty; no per-CPU times: nook's stats do not read them), and
//! `{"type":"oom","id":ID}` when the kernel reports an OOM in its cgroup. The counters are
//! those of the controllers the container's cgroup has: on a v1 or hybrid host the
//! hierarchies of its limits (runc joins them all), so a container without a memory limit
//! reports no memory there; CPU time always. `--stats`: one
//! stats event. Otherwise a stats event every `--interval` (a Go duration as runc takes it,
//! `5s` by default, or plain seconds; rounded up to whole seconds, at least 1, by `main.rs`'s
//! `interval_in_seconds`) and the OOM events as they
//! come, until the container stops (runc keeps printing errors then; nook-oci ends, exit 0).
//! A stopped container is an error, as runc's "is not running".

use std::path::Path;
use std::time::{Duration, Instant};

use nook_cgroup::{Cgroup, Stats};
use serde_json::{Value, json};

use crate::error::{Error, SysContext};
use crate::state::{Container, Status};

pub(crate) fn events(root: &Path, e: &liboci_cli::Events) -> Result<(), Error> {
    let id = e.container_id.as_str();
    let c = Container::load(root, id)?;
    if c.status()? == Status::Stopped {
        return Err(Error::State { id: id.into(), status: "stopped".into(), what: "container is not running".into() });
    }
    let cg = c.sandbox.cgroup()?;
    if e.stats {
        return print_event("stats", id, Some(stats_data(&cg)?));
    }
    if e.interval == 0 {
        return Err(Error::Usage("--interval: must be greater than 0".into()));
    }
    let interval = Duration::from_secs(e.interval.into());
    // Without a memory controller there is nothing to watch for OOMs: stats only.
    let mut oom = cg.oom_watcher().ok();
    let mut next = Instant::now() + interval;
    loop {
        // Waits for an OOM event or the next tick, checking every second that the container
        // still runs (it ends the stream).
        let wait = next.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
        let event = match &mut oom {
            Some(w) => w.wait(Some(wait)).ok().flatten(),
            None => {
                std::thread::sleep(wait);
                None
            }
        };
        if c.status()? == Status::Stopped {
            return Ok(());
        }
        if event.is_some() {
            print_event("oom", id, None)?;
        }
        if Instant::now() >= next {
            next += interval;
            print_event("stats", id, Some(stats_data(&cg)?))?;
        }
    }
}

/// One event line on stdout (flushed: a reader sees it at once).
fn print_event(kind: &str, id: &str, data: Option<Value>) -> Result<(), Error> {
    use std::io::Write;
    let mut v = json!({"type": kind, "id": id});
    if let Some(d) = data {
        v["data"] = d;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}").and_then(|()| out.flush()).sys("write", "stdout")
}

fn stats_data(cg: &Cgroup) -> Result<Value, Error> {
    let s = cg.stats().map_err(nook_sandbox::Error::from)?;
    Ok(runc_stats(&s))
}

/// nook's [`Stats`] in runc's `types.Stats` shape (its `omitempty` fields left out when zero).
fn runc_stats(s: &Stats) -> Value {
    let mut cpu = json!({"usage": {}, "throttling": {}});
    if let Some(c) = &s.cpu {
        if let Some(u) = c.usage {
            let mut usage = json!({
                "kernel": u.system_usec.unwrap_or(0) * 1000,
                "user": u.user_usec.unwrap_or(0) * 1000,
            });
            if u.usage_usec > 0 {
                usage["total"] = json!(u.usage_usec * 1000);
            }
            cpu["usage"] = usage;
        }
        if let Some(t) = c.throttling {
            let mut th = serde_json::Map::new();
            for (k, v) in [
                ("periods", t.nr_periods),
                ("throttled_periods", t.nr_throttled),
                ("throttled_time", t.throttled_usec * 1000),
            ] {
                if v > 0 {
                    th.insert(k.into(), v.into());
                }
            }
            cpu["throttling"] = Value::Object(th);
        }
    }
    let mut memory = json!({"usage": {"limit": 0, "failcnt": 0}, "swap": {"limit": 0, "failcnt": 0}, "kernel": {"limit": 0, "failcnt": 0}});
    if let Some(m) = &s.memory {
        let mut usage =
            json!({"limit": m.limit.unwrap_or(u64::MAX), "failcnt": s.oom.and_then(|o| o.failcnt).unwrap_or(0)});
        if m.current > 0 {
            usage["usage"] = json!(m.current);
        }
        if let Some(peak) = m.peak.filter(|p| *p > 0) {
            usage["max"] = json!(peak);
        }
        memory["usage"] = usage;
        if let Some(swap) = m.swap_current.filter(|s| *s > 0) {
            memory["swap"]["usage"] = json!(swap);
        }
        if let Some(cache) = m.stat.get("file").or_else(|| m.stat.get("cache")).filter(|c| **c > 0) {
            memory["cache"] = json!(cache);
        }
        if !m.stat.is_empty() {
            memory["raw"] = json!(m.stat);
        }
    }
    let mut pids = json!({});
    if let Some(p) = &s.pids {
        if p.current > 0 {
            pids["current"] = json!(p.current);
        }
        if let Some(max) = p.max.filter(|m| *m > 0) {
            pids["limit"] = json!(max);
        }
    }
    let mut blkio = json!({});
    if let Some(io) = &s.io {
        let entries = |read: fn(&nook_cgroup::IoDeviceStats) -> u64, write: fn(&nook_cgroup::IoDeviceStats) -> u64| {
            io.devices
                .iter()
                .flat_map(|d| {
                    [("Read", read(d)), ("Write", write(d))]
                        .map(|(op, value)| json!({"major": d.major, "minor": d.minor, "op": op, "value": value}))
                })
                .collect::<Vec<_>>()
        };
        if !io.devices.is_empty() {
            blkio["ioServiceBytesRecursive"] = json!(entries(|d| d.rbytes, |d| d.wbytes));
            blkio["ioServicedRecursive"] = json!(entries(|d| d.rios, |d| d.wios));
        }
    }
    json!({
        "cpu": cpu,
        "cpuset": {},
        "memory": memory,
        "pids": pids,
        "blkio": blkio,
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": null,
    })
}

#[cfg(test)]
mod tests {
    use nook_cgroup::Stats;

    #[test]
    fn runc_shape_with_and_without_stats() {
        let empty = super::runc_stats(&Stats::default());
        for key in ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"] {
            assert!(empty.get(key).is_some(), "{key} missing: {empty}");
        }
        assert_eq!(empty["memory"]["usage"]["failcnt"], 0);
        let s: Stats = serde_json::from_value(serde_json::json!({
            "cpu": {"usage": {"usage_usec": 5, "user_usec": 3, "system_usec": 2}, "throttling": null},
            "memory": {"current": 4096, "peak": null, "limit": 8192, "swap_current": null, "stat": {"file": 7}},
            "pids": {"current": 2, "max": 10},
        }))
        .unwrap();
        let v = super::runc_stats(&s);
        assert_eq!(v["cpu"]["usage"]["total"], 5000);
        assert_eq!(v["cpu"]["usage"]["kernel"], 2000);
        assert_eq!(v["memory"]["usage"]["usage"], 4096);
        assert_eq!(v["memory"]["usage"]["limit"], 8192);
        assert_eq!(v["memory"]["cache"], 7);
        assert_eq!(v["pids"], serde_json::json!({"current": 2, "limit": 10}));
    }
}
