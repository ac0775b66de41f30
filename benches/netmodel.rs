//! `netmodel` group: network namespaces and bridge endpoints (nook-netmodel) against
//! `ip -batch` (iproute2) doing the same work.
//!
//! Everything happens inside a private network namespace that plays "the host" (nothing is
//! added to the machine's own namespace); IPAM state lives on a tmpfs (`/dev/shm`), as it
//! does under `/run` on hosts where `/run` is a tmpfs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use criterion::Criterion;
use nook_netmodel::{EndpointOptions, Host, Network, NetworkSpec, Sandbox};
use nook_ns::NetNs;

use crate::report::{Report, slow_group};

const SUBNET: &str = "10.77.0.0/16";
const GATEWAY: &str = "10.77.0.1";

/// The bench's private "host": a netns, an IPAM dir on tmpfs, a bridge network.
struct Bench {
    host_ns: NetNs,
    state: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        let state = PathBuf::from(format!("/dev/shm/nkbench-{}", std::process::id()));
        std::fs::create_dir_all(&state).expect("state dir");
        Bench { host_ns: NetNs::new().expect("host netns"), state }
    }

    fn host(&self) -> Host {
        Host::builder().netns(self.host_ns.ns()).ipam_dir(self.state.join("ipam")).build().expect("host")
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Runs `ip -batch -` inside the bench's host netns, feeding `script` on stdin.
fn ip_batch(bench: &Bench, args: &[&str], script: &str) {
    bench
        .host_ns
        .run(|| {
            use std::io::Write;
            let mut child = std::process::Command::new("ip")
                .args(args)
                .args(["-batch", "-"])
                .stdin(Stdio::piped())
                .spawn()
                .expect("spawn ip");
            child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write batch");
            let status = child.wait().expect("wait ip");
            assert!(status.success(), "ip -batch failed: {status}\n{script}");
        })
        .expect("enter host netns");
}

pub fn netmodel(c: &mut Criterion, report: &mut Report) {
    let bench = Bench::new();
    let host = bench.host();
    let mut spec = NetworkSpec::bridge("nkbench".parse().unwrap());
    spec.subnet(SUBNET.parse().expect("subnet"), None).bridge_name("nkbrbench");
    let network = Network::create(&host, &spec).expect("bridge network");
    let ip = std::process::Command::new("ip").arg("-V").stdout(Stdio::null()).status().is_ok_and(|s| s.success());

    let mut g = slow_group(c, "netmodel");
    // An anonymous netns made and dropped; iproute2 needs a name (a bind mount in /run/netns).
    g.bench_function("netns_create_delete/nook", |b| b.iter(|| drop(NetNs::new().expect("netns"))));
    if ip {
        g.bench_function("netns_create_delete/ip_batch", |b| {
            b.iter(|| ip_batch(&bench, &[], "netns add nkbS0\nnetns del nkbS0\n"))
        });
        report.pair("netmodel", "netns create + delete", "netns_create_delete/nook", "netns_create_delete/ip_batch");
    }

    // The whole cycle: a sandbox netns, one bridge endpoint (veth, attach, peer into the
    // sandbox as eth0, address, up, default route), teardown.
    let nook_cycle = || {
        let mut sandbox = Sandbox::none("nkbench").expect("sandbox");
        sandbox.connect(&network, &EndpointOptions::new()).expect("connect");
        sandbox.remove().expect("remove");
    };
    g.bench_function("endpoint_cycle/nook", |b| b.iter(nook_cycle));
    // iproute2 cannot switch namespaces inside one batch: the host side is one process, the
    // sandbox side (`ip -n`) a second.
    let mut n = 0u32;
    let mut ip_cycle = || {
        n = n.wrapping_add(1);
        let addr = format!("10.77.{}.{}/16", 128 + (n / 250) % 100, 2 + n % 250);
        // Fresh names each round: the kernel deletes the host end of the veth after the
        // namespace is gone, asynchronously.
        let (ns, veth) = (format!("nkbS{n}"), format!("nkbv{n}"));
        ip_batch(
            &bench,
            &[],
            &format!(
                "netns add {ns}\nlink add {veth} mtu 1500 master nkbrbench up type veth peer name eth0 netns {ns}\n"
            ),
        );
        ip_batch(
            &bench,
            &["-n", &ns],
            &format!("addr add {addr} dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via {GATEWAY}\n"),
        );
        ip_batch(&bench, &[], &format!("netns del {ns}\n"));
    };
    if ip {
        g.bench_function("endpoint_cycle/ip_batch", |b| b.iter(&mut ip_cycle));
        report.pair(
            "netmodel",
            "sandbox + bridge endpoint + teardown",
            "endpoint_cycle/nook",
            "endpoint_cycle/ip_batch",
        );
    }

    // Setup and teardown apart: the sandbox netns is made outside the timed part.
    g.bench_function("endpoint_setup/nook", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut sandbox = Sandbox::none("nkbench").expect("sandbox");
                let start = Instant::now();
                sandbox.connect(&network, &EndpointOptions::new()).expect("connect");
                total += start.elapsed();
                sandbox.remove().expect("remove");
            }
            total
        })
    });
    g.bench_function("endpoint_teardown/nook", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut sandbox = Sandbox::none("nkbench").expect("sandbox");
                sandbox.connect(&network, &EndpointOptions::new()).expect("connect");
                let start = Instant::now();
                sandbox.remove().expect("remove");
                total += start.elapsed();
            }
            total
        })
    });
    report.singles.push(("netmodel", "endpoint_setup/nook".into()));
    report.singles.push(("netmodel", "endpoint_teardown/nook".into()));
    // Attaching to a network another handle (another process) created, and leaving it: the
    // record read and rewritten under the registry lock, the bridge looked up.
    g.bench_function("network_open_release/nook", |b| {
        b.iter(|| {
            let other = Network::open(&host, network.name()).expect("open");
            assert!(!other.release().expect("release"), "the bench's handle still uses it");
        })
    });
    report.singles.push(("netmodel", "network_open_release/nook".into()));
    g.finish();
    if ip {
        report.interleave(
            || {
                let mut sandbox = Sandbox::none("nkbench").expect("sandbox");
                sandbox.connect(&network, &EndpointOptions::new()).expect("connect");
                sandbox.remove().expect("remove");
            },
            &mut ip_cycle,
        );
    }
    network.remove().expect("remove bench network");
}
