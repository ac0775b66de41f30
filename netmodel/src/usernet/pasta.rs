//! `pasta` (package `passt`), in the foreground (so it stays our child): ports with
//! `-t`/`-u` at start; ready once the sandbox's namespace has the default route pasta copies
//! from the host (its last configuration step), read from `/proc/PID/net/`.
//!
//! A rootless sandbox is named by pid: pasta joins its user namespace, where it has every
//! capability. A sandbox in the caller's own user namespace (a root caller's) is passed as
//! an open descriptor of its network namespace (`--netns /proc/self/fd/3`) with
//! `--runas` the caller's own ids: pasta drops its capabilities and, as root, switches to
//! `nobody` before joining, and then could neither open another root process's
//! `/proc/PID/ns/net` (a ptrace check) nor `setns` into a namespace of the initial user
//! namespace.

use std::path::Path;

use super::{Helper, Starting, Target, UserNet, UserNetError, UserNetSpec};
use crate::error::SysContext;
use crate::firewall::{PortMapping, Protocol};

/// Starts pasta for `target` with the spec's ports.
pub(super) fn start(spec: &UserNetSpec, program: &Path, target: Target) -> Result<UserNet, UserNetError> {
    let mut cmd = nook_ns::Command::new(program);
    cmd.args(args(spec, target));
    if !target.join_userns {
        let netns = nook_ns::NsFd::of_pid(target.pid, nook_ns::Namespace::Net)?;
        cmd.preserve_fd(std::os::fd::AsFd::as_fd(&netns).try_clone_to_owned().sys("dup")?, 3);
    }
    let mut starting = Starting::spawn(cmd, program)?;
    let pid = target.pid;
    starting.wait_ready(None, || has_default_route(pid))?;
    Ok(starting.into_usernet(Helper::Pasta, None))
}

/// pasta's command line: foreground, quiet, configure the namespace, only the given ports
/// (none from the namespace back to the host).
fn args(spec: &UserNetSpec, target: Target) -> Vec<String> {
    let mut args: Vec<String> =
        ["--foreground", "--quiet", "--config-net", "-T", "none", "-U", "none"].map(String::from).into();
    if !spec.host_loopback {
        args.push("--no-map-gw".into());
    }
    for (flag, proto) in [("-t", Protocol::Tcp), ("-u", Protocol::Udp)] {
        let ports: Vec<&PortMapping> = spec.ports.iter().filter(|p| p.protocol == proto).collect();
        if ports.is_empty() {
            args.extend([flag.to_owned(), "none".to_owned()]);
        }
        for p in ports {
            let addr = p.host_ip.map(|ip| format!("{ip}/")).unwrap_or_default();
            args.extend([flag.to_owned(), format!("{addr}{}:{}", p.host_port, p.container_port)]);
        }
    }
    if target.join_userns {
        // PID form: joins its user and network namespaces.
        args.push(target.pid.to_string());
    } else {
        let ids = format!("{}:{}", rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
        args.extend(["--runas".to_owned(), ids, "--netns".into(), "/proc/self/fd/3".into(), "--no-netns-quit".into()]);
    }
    args
}

/// Whether process `pid`'s network namespace has a default route on some device but `lo`
/// (IPv4 in `route`, IPv6 in `ipv6_route`).
fn has_default_route(pid: u32) -> Result<bool, UserNetError> {
    let v4 = format!("/proc/{pid}/net/route");
    let text = std::fs::read_to_string(&v4).sys_at("read", &v4)?;
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
    let v4_default = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .any(|f| f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" && f[0] != "lo");
    if v4_default {
        return Ok(true);
    }
    let v6 = format!("/proc/{pid}/net/ipv6_route");
    // No IPv6 in the kernel: no such file.
    let text = std::fs::read_to_string(&v6).unwrap_or_default();
    // dest dest_len src src_len next_hop metric refcnt use flags device
    Ok(text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .any(|f| f.len() == 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line() {
        let mut spec = UserNetSpec::new();
        spec.port(PortMapping::tcp(8080, 80)).port(PortMapping::tcp(8443, 443)).host_loopback(false);
        let a = args(&spec, Target { pid: 42, join_userns: true }).join(" ");
        assert_eq!(
            a,
            "--foreground --quiet --config-net -T none -U none --no-map-gw -t 8080:80 -t 8443:443 -u none 42"
        );
        let mut spec = UserNetSpec::new();
        let mut p = PortMapping::udp(53, 5353);
        p.host_ip = Some("127.0.0.1".parse().unwrap());
        spec.port(p);
        let a = args(&spec, Target { pid: 7, join_userns: false }).join(" ");
        assert!(a.contains("-t none -u 127.0.0.1/53:5353 --runas "), "{a}");
        assert!(a.ends_with(" --netns /proc/self/fd/3 --no-netns-quit"), "{a}");
    }
}
