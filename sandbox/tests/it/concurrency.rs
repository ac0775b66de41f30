//! Concurrency (issue 17 item 4), on the real kernel: 50 full sandboxes (image root, a pids
//! limit, a published port on one bridge network) created and removed in parallel — from 8
//! threads of one process, and from 4 processes at once sharing the network
//! ([`Network::open`]) — with the state (owner records, IPAM, layer store) on a real disk
//! (`/var/tmp`, or `/tmp` where that is tmpfs: the `fsync` path of every durable write) and
//! on tmpfs (`/dev/shm`).
//!
//! While all 50 live: no address or MAC twice, IPAM holds exactly their 50 addresses, 50
//! records. Every phase has a deadline that only a deadlock reaches. Afterwards every count
//! of [`crate::world`] is what it was (in the thread variant, which runs in a helper process
//! of its own, the process's descriptors, threads, children, mounts and RSS too).
//!
//! With `NOOK_TEST_TIME_FACTOR=10` (emulation) 8 sandboxes instead of 50; `NOOK_CONC_SANDBOXES`
//! sets the number.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use nook_netmodel::Network;
use nook_netmodel::ipam::Ipam;
use nook_ns::{NetNs, Stdio as NsStdio};
use nook_sandbox::Sandbox;
use nook_sandbox::image::ImageStore;
use nook_testutil::{require_root, time_factor};

use crate::world::{
    Counts, Places, RSS_SLACK_KIB, Scope, ScratchDir, bridge_spec, helper, helper_role, host_netns, host_of,
    world_with_network,
};

const NET: &str = "nkconc";
const SUBNET: &str = "10.144.0.0/24";
const THREADS: usize = 8;
const PROCESSES: usize = 4;
/// Which share of the sandboxes a helper process creates (`i/n`).
const SHARE: &str = "NK_CONC_SHARE";
/// `TMPFS_MAGIC` (`<linux/magic.h>`).
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Whether `dir` exists and is on tmpfs.
fn is_tmpfs(dir: &str) -> Option<bool> {
    #[allow(clippy::unnecessary_cast, reason = "f_type's width differs between targets")]
    rustix::fs::statfs(dir).ok().map(|s| s.f_type as i64 == TMPFS_MAGIC)
}

/// A directory on a real disk: `/var/tmp`, or `/tmp` where that is not one (the v2 lane's
/// guests run from a tmpfs root, with `/tmp` on ext4).
fn on_disk() -> &'static str {
    let dir = ["/var/tmp", "/tmp"].into_iter().find(|d| is_tmpfs(d) == Some(false));
    dir.expect("no directory on a real disk (/var/tmp, /tmp)")
}

/// A directory on tmpfs: `/dev/shm`, else `/run` or `/var/tmp` where those are tmpfs.
fn on_tmpfs() -> &'static str {
    let dir = ["/dev/shm", "/run", "/var/tmp"].into_iter().find(|d| is_tmpfs(d) == Some(true));
    dir.expect("no tmpfs directory (/dev/shm, /run, /var/tmp)")
}

fn sandboxes() -> usize {
    crate::world::scaled("NOOK_CONC_SANDBOXES", 50, 8) as usize
}

/// How long a phase may take before the test calls it a deadlock (a bound only a hang
/// reaches, not a timing assertion).
fn patience() -> Duration {
    Duration::from_secs(300 * u64::from(time_factor()))
}

/// Sandbox `n` (of all processes'): publishes port 9000 + n.
fn create(base: &Path, store: &ImageStore, network: &Network, n: usize) -> Sandbox {
    let mut o = nook_netmodel::EndpointOptions::new();
    o.port(nook_netmodel::firewall::PortMapping::tcp(9000 + n as u16, 80));
    Sandbox::builder()
        .state_dir(base.join("state"))
        .image(store, "nk-app:1")
        .pids_max(32)
        .connect(network, o)
        .stdin(NsStdio::null())
        .stdout(NsStdio::null())
        .stderr(NsStdio::null())
        .create()
        .unwrap_or_else(|e| panic!("sandbox {n}: {e}"))
}

/// The address and MAC of a sandbox's endpoint.
fn identity(sb: &Sandbox) -> (IpAddr, [u8; 6]) {
    let ep = &sb.endpoints()[0];
    (IpAddr::V4(ep.ipv4().expect("an IPv4 address")), ep.mac.expect("a MAC"))
}

/// No address nor MAC twice among `ids`, and IPAM holds exactly those addresses.
fn assert_unique(base: &Path, ids: &[(IpAddr, [u8; 6])], n: usize) {
    assert_eq!(ids.len(), n);
    let addrs: BTreeSet<_> = ids.iter().map(|(a, _)| *a).collect();
    let macs: BTreeSet<_> = ids.iter().map(|(_, m)| *m).collect();
    assert_eq!(addrs.len(), n, "an address twice: {ids:?}");
    assert_eq!(macs.len(), n, "a MAC twice: {ids:?}");
    let held: BTreeSet<_> =
        Ipam::open(base.join("ipam")).unwrap().allocations(NET).unwrap().into_iter().map(|(a, _)| a).collect();
    assert_eq!(held, addrs, "IPAM lost or kept an entry");
    let records = std::fs::read_dir(base.join("state/sandboxes"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(records, n, "owner records");
}

/// Runs `f(i)` on `count` threads; their results, each within the deadline.
fn on_threads<T: Send + 'static>(count: usize, what: &str, f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let f = std::sync::Arc::new(f);
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for i in 0..count {
        let (tx, f) = (tx.clone(), f.clone());
        handles.push(std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i)));
            let _ = tx.send((i, r));
        }));
    }
    let mut out: Vec<Option<T>> = (0..count).map(|_| None).collect();
    for _ in 0..count {
        let (i, r) = rx.recv_timeout(patience()).unwrap_or_else(|_| {
            panic!("{what}: a thread is stuck after {:?} (deadlock)\n{}", patience(), where_threads_wait())
        });
        match r {
            Ok(v) => out[i] = Some(v),
            Err(p) => std::panic::resume_unwind(p),
        }
    }
    // Every thread has sent its result: each is ending (joined, so none is counted after).
    for h in handles {
        h.join().unwrap();
    }
    out.into_iter().map(Option::unwrap).collect()
}

/// For a hang's report: each thread of this process and each of its child processes with
/// what it waits on (`wchan`, the kernel stack where readable), and its state.
fn where_threads_wait() -> String {
    let read = |p: String| std::fs::read_to_string(p).unwrap_or_default().trim().to_owned();
    let mut out = String::new();
    let me = std::process::id();
    let mut pids = vec![me];
    for pid in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(pid) = pid.file_name().to_string_lossy().parse::<u32>() {
            let stat = read(format!("/proc/{pid}/stat"));
            let ppid =
                stat.rsplit_once(") ").and_then(|(_, r)| r.split(' ').nth(1)).and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(me) {
                pids.push(pid);
            }
        }
    }
    // The user-space stacks too, where gdb is installed (it attaches to us and detaches).
    if std::path::Path::new("/usr/bin/gdb").exists()
        && let Ok(bt) = std::process::Command::new("/usr/bin/gdb")
            .args(["-p", &me.to_string(), "-batch", "-nx", "-ex", "thread apply all bt 25"])
            .output()
    {
        out.push_str(&String::from_utf8_lossy(&bt.stdout));
    }
    for pid in pids {
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
            let t = task.file_name().to_string_lossy().into_owned();
            let base = format!("/proc/{pid}/task/{t}");
            let state = read(format!("{base}/stat")).rsplit_once(") ").map(|(_, r)| r.chars().next().unwrap_or('?'));
            out.push_str(&format!(
                "{pid}/{t} {} {state:?} wchan={} stack:\n{}\n",
                read(format!("{base}/comm")),
                read(format!("{base}/wchan")),
                read(format!("{base}/stack")),
            ));
        }
    }
    out
}

/// The thread variant, in a helper process: 8 threads create the sandboxes, then remove them.
fn threads(base: &Path) {
    let n = sandboxes();
    let (ns, _host, network, store) = world_with_network(base, NET, SUBNET);
    let places = Places::new(base);
    let scope = places.scope(&ns);
    // Warm-up (the seccomp filter, the layer store's dirs).
    let links = Counts::take(&scope).counts["links"];
    create(base, &store, &network, 0).remove().unwrap();
    let before = Counts::eventually(|| Counts::take(&scope), |c| c.counts["links"] == links);

    let (b, s, net) = (base.to_owned(), store.clone(), network.clone());
    let made = on_threads(THREADS, "create", move |t| {
        (t..n).step_by(THREADS).map(|i| create(&b, &s, &net, i)).collect::<Vec<_>>()
    });
    let ids: Vec<_> = made.iter().flatten().map(identity).collect();
    assert_unique(base, &ids, n);
    let made = std::sync::Mutex::new(made);
    let made = std::sync::Arc::new(made);
    let m = made.clone();
    on_threads(THREADS, "remove", move |t| {
        let mine = std::mem::take(&mut m.lock().unwrap()[t]);
        for sb in mine {
            sb.remove().unwrap();
        }
    });
    let what = format!("after {n} sandboxes on {THREADS} threads");
    before.assert_eventually(|| Counts::take(&scope), RSS_SLACK_KIB, &what);
    println!("NK-CONC threads {n} sandboxes, {} addresses, no leak", ids.len());
    network.remove().unwrap();
}

fn run_threads(parent: &str, me: &str) {
    let dir = ScratchDir::new(parent, "conc");
    let _store = crate::image_run::store_at(&dir.0);
    let _clean = crate::world::CleanupOnDrop(dir.0.clone());
    let out = helper(module_path!(), me, &dir.0).output().expect("helper");
    let text = nook_testutil::success_stdout(out);
    println!("{}", text.lines().find(|l| l.contains("NK-CONC")).unwrap_or("(no figures)"));
}

#[test]
fn eight_threads_with_state_on_a_real_disk() {
    const ME: &str = "eight_threads_with_state_on_a_real_disk";
    if let Some(base) = helper_role(ME) {
        return nook_testutil::on_private_mount_ns(|| threads(&base));
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    run_threads(on_disk(), ME);
}

#[test]
fn eight_threads_with_state_on_tmpfs() {
    const ME: &str = "eight_threads_with_state_on_tmpfs";
    if let Some(base) = helper_role(ME) {
        return nook_testutil::on_private_mount_ns(|| threads(&base));
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    run_threads(on_tmpfs(), ME);
}

/// One of the 4 processes: opens the test's network, creates its share, prints what it got,
/// waits for the test's word, removes them.
fn process_share(base: &Path) {
    let (i, of): (usize, usize) = {
        let s = std::env::var(SHARE).unwrap();
        let (a, b) = s.split_once('/').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    let ns = NetNs::open_path(base.join("netns/nkhost")).expect("open host netns");
    let host = host_of(base, &ns);
    let network = Network::open(&host, NET).expect("open network");
    let store = ImageStore::open(base.join("store")).unwrap();
    let mine: Vec<Sandbox> = (i..sandboxes()).step_by(of).map(|n| create(base, &store, &network, n)).collect();
    let words: Vec<String> = mine
        .iter()
        .map(identity)
        .map(|(a, m)| format!("{a}/{}", m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")))
        .collect();
    println!("NK-UP {}", words.join(" "));
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    for sb in mine {
        sb.remove().unwrap();
    }
    println!("NK-DONE");
}

fn run_processes(parent: &str, me: &str) {
    let n = sandboxes();
    let dir = ScratchDir::new(parent, "conp");
    let base = dir.0.as_path();
    let store = crate::image_run::store_at(base);
    let ns = host_netns(base);
    let host = host_of(base, &ns);
    let network = Network::create(&host, &bridge_spec(NET, SUBNET)).expect("network");
    let _clean = crate::world::CleanupOnDrop(base.to_owned());
    let (ipam, state) = (base.join("ipam"), base.join("state"));
    let scope = |owners: Vec<u32>| Scope {
        host: Some(&ns),
        ipam: Some(&ipam),
        store: Some(store.root()),
        state: Some(&state),
        owners,
        base: Some(base),
    };
    let before = Counts::take(&scope(vec![1])).outside();

    // Each helper's lines are read on a thread: its NK-UP line comes over the channel, and
    // a stuck helper hits the deadline instead of hanging the test.
    let (tx, rx) = mpsc::channel();
    let mut helpers = Vec::new();
    let mut readers = Vec::new();
    for i in 0..PROCESSES {
        let mut c = helper(module_path!(), me, base)
            .env(SHARE, format!("{i}/{PROCESSES}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("helper");
        let lines = BufReader::new(c.stdout.take().unwrap()).lines();
        helpers.push(c);
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            // Read to the end: the helper's test harness writes after NK-DONE.
            let mut done = false;
            for l in lines {
                let l = l.unwrap();
                if let Some((_, rest)) = l.split_once("NK-UP ") {
                    let _ = tx.send(rest.to_owned());
                }
                done |= l.contains("NK-DONE");
            }
            done
        }));
    }
    let pids: Vec<u32> = helpers.iter().map(|c| c.id()).collect();
    let kill = KillAll(&mut helpers);
    let mut ids = Vec::new();
    for _ in 0..PROCESSES {
        let line = rx.recv_timeout(patience()).expect("a helper is stuck creating (deadlock) or failed");
        for w in line.split_whitespace() {
            let (a, m) = w.split_once('/').unwrap();
            let mac: Vec<u8> = m.split(':').map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
            ids.push((a.parse::<IpAddr>().unwrap(), <[u8; 6]>::try_from(mac).unwrap()));
        }
    }
    assert_unique(base, &ids, n);
    let owners: std::collections::HashSet<_> =
        Ipam::open(&ipam).unwrap().allocations(NET).unwrap().into_iter().map(|(_, o)| o).collect();
    assert_eq!(owners.len(), PROCESSES, "each process holds its own addresses: {owners:?}");
    for c in kill.0.iter_mut() {
        writeln!(c.stdin.take().unwrap(), "go").unwrap();
    }
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        let _ = done_tx.send(r);
    });
    let done = done_rx.recv_timeout(patience()).expect("a helper is stuck removing (deadlock)");
    for c in kill.0.iter_mut() {
        assert!(c.wait().unwrap().success(), "a helper failed");
    }
    assert!(done.iter().all(|d| *d), "a helper did not finish: {done:?}");
    let what = format!("after {n} sandboxes from {PROCESSES} processes");
    before.assert_eventually(|| Counts::take(&scope(pids.clone())).outside(), 0, &what);
    println!("NK-CONC processes {n} sandboxes, {} addresses, no leak", ids.len());
    network.remove().unwrap();
    drop(host);
    drop(ns);
    crate::image_run::empty_store_at(&store);
}

/// Kills the helpers still running when the test ends (also on panic).
struct KillAll<'a>(&'a mut Vec<std::process::Child>);

impl Drop for KillAll<'_> {
    fn drop(&mut self) {
        for c in self.0.iter_mut() {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

#[test]
fn four_processes_sharing_one_network_with_state_on_a_real_disk() {
    const ME: &str = "four_processes_sharing_one_network_with_state_on_a_real_disk";
    if let Some(base) = helper_role(ME) {
        return process_share(&base);
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    run_processes(on_disk(), ME);
}

#[test]
fn four_processes_sharing_one_network_with_state_on_tmpfs() {
    const ME: &str = "four_processes_sharing_one_network_with_state_on_tmpfs";
    if let Some(base) = helper_role(ME) {
        return process_share(&base);
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    run_processes(on_tmpfs(), ME);
}
