//! Targets for the pure parsers: cgroup files, id maps, seccomp profiles, the facade's spec,
//! IPAM state files. Each checks a roundtrip or an invariant besides "no panic".

use std::path::Component;

use nook_cgroup::Hierarchies;
use nook_netmodel::ipam::Request;
use nook_netmodel::ipam::fuzzing::State;
use nook_ns::{IdKind, IdMap};
use nook_sandbox::SandboxSpec;
use nook_sandbox::hardening::{Arch, CapSet, Profile, Target};

/// Splits at the first NUL: two texts from one input.
fn two(data: &[u8]) -> (&str, &str) {
    let (a, b) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    (std::str::from_utf8(a).unwrap_or(""), std::str::from_utf8(b).unwrap_or(""))
}

/// `mountinfo` NUL `/proc/self/cgroup` → [`Hierarchies::parse`]: the caller's own cgroup dir
/// is always below the hierarchy's mount point, with plain components only.
/// An input starting with `#` feeds the stats parsers instead: `parse_flat` and
/// `parse_limit` roundtrip through their text form, `parse_psi` never panics.
pub fn cgroup_files(data: &[u8]) {
    if let Some(rest) = data.strip_prefix(b"#") {
        let text = String::from_utf8_lossy(rest);
        let flat = nook_cgroup::fuzzing::parse_flat(&text);
        let rendered: String = flat.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        assert_eq!(nook_cgroup::fuzzing::parse_flat(&rendered), flat, "parse_flat roundtrip");
        let _ = nook_cgroup::fuzzing::parse_nested(&text);
        if let Ok(v) = nook_cgroup::fuzzing::parse_limit(&text) {
            let again = v.map_or_else(|| "max".to_owned(), |n| n.to_string());
            assert_eq!(nook_cgroup::fuzzing::parse_limit(&again), Ok(v), "parse_limit roundtrip");
        }
        let _ = nook_cgroup::fuzzing::parse_psi(&text);
        return;
    }
    let (mountinfo, proc_cgroup) = two(data);
    let parsed = Hierarchies::parse(mountinfo, proc_cgroup);
    crate::verbose("hierarchies", &parsed);
    let Ok(h) = parsed else { return };
    for hier in h.v1.iter().chain(h.v2.as_ref()) {
        if let Some(dir) = hier.own_dir() {
            let rel = dir.strip_prefix(&hier.mount_point).expect("own dir below the mount point");
            assert!(
                rel.components().all(|c| matches!(c, Component::Normal(_))),
                "own dir {} leaves the mount point {}",
                dir.display(),
                hier.mount_point.display()
            );
        }
    }
}

/// JSON → [`IdMap`]: a map that validates is one-to-one: `to_outside` maps each range's
/// first and last id into that range's outside, and nothing outside the ranges; `render`
/// gives the ranges back as `inside outside count` lines.
pub fn idmap(data: &[u8]) {
    let Ok(map) = serde_json::from_slice::<IdMap>(data) else { return };
    let rendered = map.render();
    let lines: Vec<(u32, u32, u32)> = rendered
        .lines()
        .map(|l| {
            let v: Vec<u32> = l.split(' ').map(|n| n.parse().expect("a rendered number")).collect();
            (v[0], v[1], v[2])
        })
        .collect();
    let ranges: Vec<(u32, u32, u32)> = map.ranges().iter().map(|r| (r.inside, r.outside, r.count)).collect();
    assert_eq!(lines, ranges, "render roundtrip");
    for r in map.ranges() {
        // Never panics, validated or not.
        let _ = map.to_outside(r.inside);
        let _ = map.to_outside(r.inside.wrapping_add(r.count.wrapping_sub(1)));
    }
    if map.validate(IdKind::Uid).is_err() {
        return;
    }
    assert!(map.validate(IdKind::Gid).is_ok());
    for r in map.ranges() {
        let last = r.inside + (r.count - 1);
        assert_eq!(map.to_outside(r.inside), Some(r.outside));
        assert_eq!(map.to_outside(last), Some(r.outside + (r.count - 1)));
        if let Some(after) = last.checked_add(1)
            && let Some(o) = map.to_outside(after)
        {
            assert!(map.ranges().iter().any(|q| after >= q.inside && after - q.inside < q.count), "{o}");
        }
    }
}

/// A seccomp profile in Docker's format (first byte even) or the OCI runtime spec's
/// `linux.seccomp` (odd): parse, validate, compile for this machine with Docker's default
/// capabilities and with all of them. A compiled program is never empty.
pub fn seccomp_profile(data: &[u8]) {
    let Some((&sel, json)) = data.split_first() else { return };
    let parsed = if sel % 2 == 0 { Profile::from_docker_json(json) } else { Profile::from_oci_json(json) };
    crate::verbose("profile", &parsed.as_ref().map(|_| ()));
    let Ok(profile) = parsed else { return };
    let text = serde_json::to_vec(&profile).expect("a profile serializes");
    assert_eq!(serde_json::from_slice::<Profile>(&text).expect("and reads back"), profile, "serde roundtrip");
    if profile.validate().is_err() {
        return;
    }
    let Some(arch) = Arch::native() else { return };
    for caps in [CapSet::docker_default(), CapSet::all()] {
        let target = Target { arch, caps, kernel: nook_sandbox::hardening::seccomp::KernelVersion::running() };
        if let Ok(compiled) = profile.compile(&target) {
            assert!(!compiled.is_empty(), "an empty seccomp program");
            assert_eq!(compiled.to_libc().len(), compiled.len());
        }
    }
}

/// JSON → [`SandboxSpec`] → `validate()`; a spec serializes and reads back equal.
pub fn sandbox_spec(data: &[u8]) {
    let Ok(spec) = serde_json::from_slice::<SandboxSpec>(data) else { return };
    crate::verbose("validate", &spec.validate());
    let text = serde_json::to_vec(&spec).expect("a spec serializes");
    let back: SandboxSpec = serde_json::from_slice(&text).expect("and reads back");
    assert_eq!(back, spec, "serde roundtrip");
}

/// An IPAM state file of network `nk-fuzz`: what parses writes back to the same state;
/// allocations from it stay in its pools, off the gateway and reserved addresses, and are
/// never handed out twice.
pub fn ipam_state(data: &[u8]) {
    let parsed = State::from_json("nk-fuzz", data);
    crate::verbose("state", &parsed);
    let Ok(mut state) = parsed else { return };
    let again = State::from_json("nk-fuzz", &state.to_json()).expect("a written state reads back");
    assert_eq!(again, state, "state file roundtrip");
    for request in [Request::AnyV4, Request::AnyV6, Request::AnyV4, Request::AnyV6] {
        let before = state.clone();
        let Ok(a) = state.allocate(request) else { continue };
        let address = a.address.addr();
        assert!(before.allowed(address), "allocated {address}, which is reserved or outside the pools");
        assert!(!before.is_allocated(address), "allocated {address} twice");
        assert!(state.is_allocated(address));
    }
}
