//! `ps`, `pause`, `resume` and `update`: commands on a live container's cgroup (the
//! sandbox's, reopened from the record with `nook-cgroup`).

use std::path::Path;

use nook_cgroup::Resources;
use oci_spec::runtime::LinuxResources;

use crate::state::Status;

use crate::error::{Error, SysContext};
use crate::state::Container;

/// `ps [--format table|json] ID [PS_OPTIONS]`: json is runc's (the cgroup's pids as a JSON
/// array); table runs `ps` (with `-ef`, or the options given) as runc does and keeps the
/// header and the lines of the container's processes.
pub(crate) fn ps(root: &Path, p: &liboci_cli::Ps) -> Result<(), Error> {
    let c = Container::load(root, &p.container_id)?;
    let pids = c.sandbox.cgroup()?.procs().map_err(nook_sandbox::Error::from)?;
    match p.format.as_str() {
        "json" => {
            println!("{}", serde_json::to_string(&pids).map_err(|source| Error::Json { path: "-".into(), source })?);
            Ok(())
        }
        "table" => {
            let opts: Vec<String> = if p.ps_options.is_empty() { vec!["-ef".into()] } else { p.ps_options.clone() };
            let out = std::process::Command::new("ps").args(&opts).output().sys("exec", "ps")?;
            if !out.status.success() {
                return Err(Error::Usage(format!("ps {}: {}", opts.join(" "), String::from_utf8_lossy(&out.stderr))));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or("");
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| Error::Usage("ps: no PID column in its output".into()))?;
            println!("{header}");
            for line in lines {
                let pid = line.split_whitespace().nth(col).and_then(|s| s.parse::<u32>().ok());
                if pid.is_some_and(|pid| pids.contains(&pid)) {
                    println!("{line}");
                }
            }
            Ok(())
        }
        other => Err(Error::Usage(format!("invalid format option {other:?} (table or json)"))),
    }
}

/// `pause ID`: freezes the cgroup (a created or running container, as runc).
pub(crate) fn pause(root: &Path, id: &str) -> Result<(), Error> {
    let c = Container::load(root, id)?;
    match c.status()? {
        Status::Created | Status::Running => {}
        other => return Err(state_error(id, other, "container not running")),
    }
    c.sandbox.cgroup()?.freeze().map_err(nook_sandbox::Error::from)?;
    crate::log::debug(&format!("pause {id}"));
    Ok(())
}

/// `resume ID`: thaws a paused container.
pub(crate) fn resume(root: &Path, id: &str) -> Result<(), Error> {
    let c = Container::load(root, id)?;
    let status = c.status()?;
    if status != Status::Paused {
        return Err(state_error(id, status, "container not paused"));
    }
    c.sandbox.cgroup()?.thaw().map_err(nook_sandbox::Error::from)?;
    crate::log::debug(&format!("resume {id}"));
    Ok(())
}

fn state_error(id: &str, status: Status, what: &str) -> Error {
    Error::State { id: id.into(), status: status.to_string(), what: what.into() }
}

/// `update [--resources FILE|-] [flags] ID`: the resources file (OCI `LinuxResources`),
/// then the flags over it, applied to the live cgroup and kept in the state.
pub(crate) fn update(root: &Path, u: &liboci_cli::Update) -> Result<(), Error> {
    let mut c = Container::load(root, &u.container_id)?;
    let status = c.status()?;
    if status == Status::Stopped {
        return Err(state_error(&u.container_id, status, "container not running"));
    }
    let mut r: LinuxResources = match &u.resources {
        None => LinuxResources::default(),
        Some(p) => {
            let text = if p == Path::new("-") {
                let mut s = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut s).sys("read", "stdin")?;
                s
            } else {
                std::fs::read(p).sys("read", p)?
            };
            serde_json::from_slice(&text).map_err(|source| Error::Json { path: p.clone(), source })?
        }
    };
    flags(u, &mut r)?;
    let cg_spec =
        c.stored.record.spec.cgroup.as_mut().ok_or_else(|| Error::Usage("the container has no cgroup".into()))?;
    let change = to_cgroup(&r)?;
    let mut cg = c.sandbox.cgroup()?;
    cg.update(&change).map_err(nook_sandbox::Error::from)?;
    merge(&mut cg_spec.resources, &change);
    c.dir.save(&c.stored)?;
    crate::log::debug(&format!("update {}: {change:?}", u.container_id));
    Ok(())
}

/// The flags (runc's `update` flags, as liboci-cli has them) over the file's resources.
fn flags(u: &liboci_cli::Update, r: &mut LinuxResources) -> Result<(), Error> {
    let refused: [(&str, bool); 7] = [
        ("--blkio-weight", u.blkio_weight.is_some()),
        ("--cpu-rt-period", u.cpu_rt_period.is_some()),
        ("--cpu-rt-runtime", u.cpu_rt_runtime.is_some()),
        ("--cpuset-cpus", u.cpuset_cpus.is_some()),
        ("--cpuset-mems", u.cpuset_mems.is_some()),
        ("--l3-cache-schema", u.l3_cache_schema.is_some()),
        ("--mem-bw-schema", u.mem_bw_schema.is_some()),
    ];
    if let Some((flag, _)) = refused.iter().find(|(_, set)| *set) {
        return Err(Error::Unsupported(format!("update {flag}")));
    }
    if u.memory.is_some() || u.memory_reservation.is_some() || u.memory_swap.is_some() {
        let mut m = (*r.memory()).unwrap_or_default();
        if let Some(v) = u.memory {
            m.set_limit(Some(v as i64));
        }
        if let Some(v) = u.memory_reservation {
            m.set_reservation(Some(v as i64));
        }
        if let Some(v) = u.memory_swap {
            m.set_swap(Some(v));
        }
        r.set_memory(Some(m));
    }
    if u.cpu_share.is_some() || u.cpu_quota.is_some() || u.cpu_period.is_some() {
        let mut cpu = r.cpu().clone().unwrap_or_default();
        if let Some(v) = u.cpu_share {
            cpu.set_shares(Some(v));
        }
        if let Some(v) = u.cpu_quota {
            cpu.set_quota(Some(v as i64));
        }
        if let Some(v) = u.cpu_period {
            cpu.set_period(Some(v));
        }
        r.set_cpu(Some(cpu));
    }
    if let Some(v) = u.pids_limit {
        let mut p = (*r.pids()).unwrap_or_default();
        p.set_limit(v);
        r.set_pids(Some(p));
    }
    Ok(())
}

/// The change `update` applies: [`crate::config::map_resources`] (what `create` maps too,
/// refusing the rest by name); device rules are fixed at create.
fn to_cgroup(r: &LinuxResources) -> Result<Resources, Error> {
    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(crate::error::refuse("update: devices", "the device policy is fixed at create"));
    }
    crate::config::map_resources(r, "update")
}

/// Keeps the applied values in the stored spec (set fields replace the old ones).
fn merge(into: &mut Resources, change: &Resources) {
    if let Some(m) = &change.memory {
        let t = into.memory.get_or_insert_with(Default::default);
        t.max = m.max.or(t.max);
        t.low = m.low.or(t.low);
        t.swap = m.swap.or(t.swap);
    }
    if let Some(p) = &change.pids {
        let t = into.pids.get_or_insert_with(Default::default);
        t.max = p.max.or(t.max);
    }
    if let Some(c) = &change.cpu {
        let t = into.cpu.get_or_insert_with(Default::default);
        t.shares = c.shares.or(t.shares);
        t.quota_us = c.quota_us.or(t.quota_us);
        t.period_us = c.period_us.or(t.period_us);
    }
}
