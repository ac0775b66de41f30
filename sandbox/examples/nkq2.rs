//! scratch timing
use nook_ns::{Command, MountStep, Namespace, NamespaceSet};
use std::time::Instant;
fn time(name: &str, f: &mut dyn FnMut()) {
    let n = 200;
    f();
    let t = Instant::now();
    for _ in 0..n { f(); }
    println!("{name}: {:?}", t.elapsed() / n);
}
fn main() {
    let ns = NamespaceSet::new().with(Namespace::Pid).with(Namespace::Mount).with(Namespace::Ipc).with(Namespace::Uts);
    time("std", &mut || { std::process::Command::new("/bin/true").status().unwrap(); });
    time("ns plain", &mut || { Command::new("/bin/true").namespaces(ns).status().unwrap(); });
    time("ns init", &mut || { Command::new("/bin/true").namespaces(ns).init(true).status().unwrap(); });
    time("ns init kwp", &mut || { Command::new("/bin/true").namespaces(ns).init(true).kill_with_parent_process(9).status().unwrap(); });
    time("ns init tmpfs", &mut || { Command::new("/bin/true").namespaces(ns).init(true).mount(MountStep::tmpfs("/tmp", None)).status().unwrap(); });
    time("ns init overlay", &mut || { Command::new("/bin/true").namespaces(ns).init(true).mounts([MountStep::tmpfs("/tmp", None), MountStep::mkdir("/tmp/u"), MountStep::mkdir("/tmp/w"), MountStep::mkdir("/tmp/r"), MountStep::overlay("/tmp/r", "lowerdir=/,upperdir=/tmp/u,workdir=/tmp/w")]).status().unwrap(); });
    time("ns init overlay pivot", &mut || { Command::new("/bin/true").namespaces(ns).init(true).mounts([MountStep::tmpfs("/tmp", None), MountStep::mkdir("/tmp/u"), MountStep::mkdir("/tmp/w"), MountStep::mkdir("/tmp/r"), MountStep::overlay("/tmp/r", "lowerdir=/,upperdir=/tmp/u,workdir=/tmp/w"), MountStep::pivot_root("/tmp/r"), MountStep::proc("/proc")]).status().unwrap(); });
    time("ns init rbind pivot", &mut || { Command::new("/bin/true").namespaces(ns).init(true).mounts([MountStep::tmpfs("/tmp", None), MountStep::mkdir("/tmp/r"), MountStep::bind("/", "/tmp/r").recursive().read_only(), MountStep::pivot_root("/tmp/r"), MountStep::proc("/proc")]).status().unwrap(); });
    time("ns init bind pivot", &mut || { Command::new("/bin/true").namespaces(ns).init(true).mounts([MountStep::tmpfs("/tmp", None), MountStep::mkdir("/tmp/r"), MountStep::bind("/", "/tmp/r").read_only(), MountStep::pivot_root("/tmp/r"), MountStep::proc("/proc")]).status().unwrap(); });
    time("sandbox", &mut || { nook_sandbox::Sandbox::builder().namespaces(ns).network(nook_sandbox::NetworkMode::Host).command("/bin/true").status().unwrap(); });
    time("cgroup", &mut || { let mut s = nook_cgroup::CgroupSpec::new(format!("nk-q-{}", std::process::id())); s.resources.memory = Some(nook_cgroup::Memory { max: Some(64<<20), ..Default::default()}); s.resources.pids = Some(nook_cgroup::Pids{max: Some(32)}); let c = nook_cgroup::Cgroup::create(&s).unwrap(); c.remove().unwrap(); });
}
