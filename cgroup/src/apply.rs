//! Writing [`Resources`] to the cgroup files of each version.

use std::os::fd::BorrowedFd;
use std::path::Path;

use crate::at;
use crate::cgroup::{Cgroup, Dir};
use crate::error::{Error, Result, SysContext};
use crate::hierarchy::{Controller, Version};
use crate::spec::{Blkio, Cpu, Memory, Resources, shares_to_weight, weight_to_shares};

/// A setting the cgroup version in use does not have.
fn unsupported(controller: Controller, setting: &str, version: Version) -> Error {
    Error::ControllerUnavailable { controller, detail: format!("{setting} has no cgroup {version:?} equivalent") }
}

/// Applies every set field, controller by controller.
pub(crate) fn apply(cg: &mut Cgroup, r: &Resources) -> Result<()> {
    if let Some(cpu) = &r.cpu {
        let (dir, v) = cg.require_dir(Controller::Cpu)?;
        apply_cpu(dir, v, cpu)?;
    }
    if r.cpuacct {
        cg.require_dir(Controller::Cpuacct)?;
    }
    if let Some(cs) = &r.cpuset {
        let (dir, _) = cg.require_dir(Controller::Cpuset)?;
        // Same file names on v1 and v2.
        if let Some(cpus) = &cs.cpus {
            dir.write("cpuset.cpus", cpus)?;
        }
        if let Some(mems) = &cs.mems {
            dir.write("cpuset.mems", mems)?;
        }
    }
    if let Some(m) = &r.memory {
        let (dir, v) = cg.require_dir(Controller::Memory)?;
        apply_memory(dir, v, m)?;
    }
    if let Some(policy) = &r.devices {
        let (dir, v) = cg.require_dir(Controller::Devices)?;
        match v {
            Version::V1 => {
                policy.check_v1()?;
                for (file, line) in policy.v1_writes() {
                    dir.write(file, &line)?;
                }
            }
            Version::V2 => {
                let fd = dir.fd.try_clone().sys_at("dup", &dir.path)?;
                let old = cg.set_device_program(None);
                match crate::bpf::attach_device_policy(fd, policy, old.as_ref()) {
                    Ok(prog) => {
                        cg.set_device_program(Some(prog));
                    }
                    Err(e) => {
                        // The old program is still attached: keep its fd so the next update
                        // replaces it instead of stacking a second filter.
                        cg.set_device_program(old);
                        return Err(e);
                    }
                }
            }
        }
    }
    if r.freezer {
        cg.require_dir(Controller::Freezer)?;
    }
    if let Some(nc) = &r.net_cls {
        let (dir, v) = cg.require_dir(Controller::NetCls)?;
        if v == Version::V2 {
            return Err(unsupported(Controller::NetCls, "net_cls.classid", v));
        }
        dir.write("net_cls.classid", &nc.classid.to_string())?;
    }
    if let Some(b) = &r.blkio {
        let (dir, v) = cg.require_dir(Controller::Blkio)?;
        apply_blkio(dir, v, b)?;
    }
    if r.perf_event {
        cg.require_dir(Controller::PerfEvent)?;
    }
    if let Some(np) = &r.net_prio {
        let (dir, v) = cg.require_dir(Controller::NetPrio)?;
        if v == Version::V2 {
            return Err(unsupported(Controller::NetPrio, "net_prio.ifpriomap", v));
        }
        for (ifname, prio) in &np.ifpriomap {
            dir.write("net_prio.ifpriomap", &format!("{ifname} {prio}"))?;
        }
    }
    for h in &r.hugetlb {
        let (dir, v) = cg.require_dir(Controller::Hugetlb)?;
        let file = match v {
            Version::V1 => format!("hugetlb.{}.limit_in_bytes", h.page_size),
            Version::V2 => format!("hugetlb.{}.max", h.page_size),
        };
        dir.write(&file, &h.limit.to_string())?;
    }
    if let Some(p) = &r.pids {
        let (dir, _) = cg.require_dir(Controller::Pids)?;
        dir.write("pids.max", &p.max.map_or_else(|| "max".to_owned(), |m| m.to_string()))?;
    }
    Ok(())
}

fn apply_cpu(dir: &Dir, v: Version, cpu: &Cpu) -> Result<()> {
    match v {
        Version::V1 => {
            if let Some(shares) = cpu.shares.or(cpu.weight.map(weight_to_shares)) {
                dir.write("cpu.shares", &shares.to_string())?;
            }
            if let Some(period) = cpu.period_us {
                dir.write("cpu.cfs_period_us", &period.to_string())?;
            }
            if cpu.quota_us.is_some() || cpu.period_us.is_some() {
                let quota = cpu.quota_us.map_or_else(|| "-1".to_owned(), |q| q.to_string());
                dir.write("cpu.cfs_quota_us", &quota)?;
            }
        }
        Version::V2 => {
            if let Some(weight) = cpu.weight.or(cpu.shares.map(shares_to_weight)) {
                dir.write("cpu.weight", &weight.to_string())?;
            }
            if cpu.quota_us.is_some() || cpu.period_us.is_some() {
                let quota = cpu.quota_us.map_or_else(|| "max".to_owned(), |q| q.to_string());
                let period = cpu.period_us.unwrap_or(100_000);
                dir.write("cpu.max", &format!("{quota} {period}"))?;
            }
        }
    }
    Ok(())
}

fn apply_memory(dir: &Dir, v: Version, m: &Memory) -> Result<()> {
    match v {
        Version::V1 => {
            if m.low.is_some() {
                return Err(unsupported(Controller::Memory, "memory.low", v));
            }
            if m.min.is_some() {
                return Err(unsupported(Controller::Memory, "memory.min", v));
            }
            if let Some(high) = m.high {
                dir.write("memory.soft_limit_in_bytes", &high.to_string())?;
            }
            match (m.max, m.swap) {
                (Some(max), Some(swap)) => {
                    // memsw must stay >= limit: order the writes by whether it grows.
                    let memsw = "memory.memsw.limit_in_bytes";
                    let limit = "memory.limit_in_bytes";
                    let total = (max + swap).to_string();
                    if dir.write(limit, &max.to_string()).is_err() {
                        dir.write(memsw, &total)?;
                        dir.write(limit, &max.to_string())?;
                    } else {
                        dir.write(memsw, &total)?;
                    }
                }
                (Some(max), None) => dir.write("memory.limit_in_bytes", &max.to_string())?,
                (None, Some(_)) => {
                    return Err(Error::Invalid(crate::ValidationError::Malformed {
                        field: "memory.swap",
                        value: "swap without max".to_owned(),
                        reason: "on cgroup v1 swap is limited as memory+swap, which needs `max`".to_owned(),
                    }));
                }
                (None, None) => {}
            }
        }
        Version::V2 => {
            for (file, value) in
                [("memory.min", m.min), ("memory.low", m.low), ("memory.high", m.high), ("memory.max", m.max)]
            {
                if let Some(value) = value {
                    dir.write(file, &value.to_string())?;
                }
            }
            if let Some(swap) = m.swap {
                dir.write("memory.swap.max", &swap.to_string())?;
            }
        }
    }
    Ok(())
}

fn apply_blkio(dir: &Dir, v: Version, b: &Blkio) -> Result<()> {
    match v {
        Version::V1 => {
            if let Some(w) = b.weight {
                // v2 1..=10000 onto v1 10..=1000.
                let v1 = 10 + (w.clamp(1, 10_000) - 1) * 990 / 9999;
                let file = ["blkio.weight", "blkio.bfq.weight"].into_iter().find(|f| dir.has(f)).ok_or_else(|| {
                    unsupported_here(Controller::Blkio, "blkio.weight (needs the BFQ or CFQ scheduler)")
                })?;
                dir.write(file, &v1.to_string())?;
            }
            for t in &b.throttle {
                for (file, value) in [
                    ("blkio.throttle.read_bps_device", t.read_bps),
                    ("blkio.throttle.write_bps_device", t.write_bps),
                    ("blkio.throttle.read_iops_device", t.read_iops),
                    ("blkio.throttle.write_iops_device", t.write_iops),
                ] {
                    if let Some(value) = value {
                        dir.write(file, &format!("{}:{} {value}", t.major, t.minor))?;
                    }
                }
            }
        }
        Version::V2 => {
            if let Some(w) = b.weight {
                let file = "io.weight";
                if !dir.has(file) {
                    return Err(unsupported_here(Controller::Blkio, "io.weight (needs the BFQ scheduler or io.cost)"));
                }
                dir.write(file, &format!("default {w}"))?;
            }
            for t in &b.throttle {
                let mut line = format!("{}:{}", t.major, t.minor);
                for (key, value) in
                    [("rbps", t.read_bps), ("wbps", t.write_bps), ("riops", t.read_iops), ("wiops", t.write_iops)]
                {
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

fn unsupported_here(controller: Controller, what: &str) -> Error {
    Error::ControllerUnavailable { controller, detail: format!("{what} is not offered by this kernel/device") }
}

/// A new v1 cpuset cgroup starts with empty `cpus`/`mems` and cannot take tasks: copy the
/// parent's. `dir` is the new cgroup (at `path`), `parent` the directory it was made in.
pub(crate) fn init_v1_cpuset(parent: BorrowedFd<'_>, dir: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let parent_path = path.parent().unwrap_or(path);
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let current = at::read(dir, path, file)?;
        if current.trim().is_empty() {
            let from_parent = at::read(parent, parent_path, file)?;
            at::write(dir, path, file, from_parent.trim())?;
        }
    }
    Ok(())
}
