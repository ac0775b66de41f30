//! scratch timing
use nook_ns::{Namespace, NamespaceSet};
use std::time::Instant;
fn main() {
    let n = 200;
    let ns = NamespaceSet::new().with(Namespace::Pid).with(Namespace::Mount).with(Namespace::Ipc).with(Namespace::Uts);
    let lim = std::env::args().nth(1).is_some();
    for _ in 0..2 {
        let t = Instant::now();
        for _ in 0..n {
            let mut b = nook_sandbox::Sandbox::builder();
            b.namespaces(ns).network(nook_sandbox::NetworkMode::Host).command("/bin/true");
            if lim { b.memory_max(64 << 20).pids_max(32); }
            assert!(b.status().unwrap().success());
        }
        println!("sandbox {:?}/run", t.elapsed() / n);
        let t = Instant::now();
        for _ in 0..n {
            assert!(std::process::Command::new("/bin/true").status().unwrap().success());
        }
        println!("std {:?}/run", t.elapsed() / n);
    }
}
