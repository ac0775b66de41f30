//! Crashes (issue 17 item 3), on the real kernel:
//!
//! - an owner process creating, running and removing full sandboxes (image root, limits, a
//!   published port on a bridge network) is SIGKILLed at random points, then **one**
//!   `cleanup()` from a fresh process leaves nothing — while a second, live owner's sandbox
//!   on the same network keeps running and keeps its container layer, address, port rule,
//!   cgroup and record throughout (10 points in CI, `NOOK_CRASH_POINTS=50` for the long run;
//!   3 with `NOOK_TEST_TIME_FACTOR=10`);
//! - a dead owner's container layer still mounted on its `merged` dir is unmounted and
//!   removed by the cleanup;
//! - SIGKILL of a sandbox's PID 1 (with an `exec`ed process in it) and of the payload (of a
//!   one-shot run, and of an `exec`ed process) is reported as such, and the sandbox's
//!   teardown leaves nothing (every count of [`crate::world`], in a helper process of its
//!   own).
//!
//! The owners and the cleaner are this binary re-executed in a role; the network lives in a
//! namespace the test creates to play the host.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nook_netmodel::Network;
use nook_ns::{NetNs, Stdio as NsStdio};
use nook_sandbox::image::ImageStore;
use nook_sandbox::state::{Object, ProcessId, StateDir};
use nook_sandbox::{Outcome, Sandbox, SandboxBuilder};
use nook_testutil::{TempDir, require_root, success_stdout, time_factor, unique_name};

use crate::owner::{TAG, clock_seed, exited, no_tagged_process_left, pidfd, xorshift};
use crate::world::{
    Counts, Places, RSS_SLACK_KIB, Scope, bridge_spec, helper, helper_role, host_netns, host_of, published,
    world_with_network,
};

/// Which helper a re-executed binary is: `live`, `victim` or `cleaner`.
const PART: &str = "NK_CRASH_PART";
const NET: &str = "nkcrash";
const SUBNET: &str = "10.142.0.0/24";

/// A full sandbox of `base`'s store on `network`, publishing `port`, tagged (if the helper
/// was) so the test can find its processes.
fn builder(base: &Path, store: &ImageStore, network: &Network, port: u16) -> SandboxBuilder {
    let mut b = Sandbox::builder();
    b.state_dir(base.join("state"))
        .image(store, "nk-app:1")
        .memory_max(64 << 20)
        .pids_max(32)
        .connect(network, published(port))
        .stdin(NsStdio::null())
        .stdout(NsStdio::null())
        .stderr(NsStdio::null());
    if let Ok(tag) = std::env::var(TAG) {
        b.env(TAG, tag);
    }
    b
}

/// The helpers' view of the test's network (created by the test: opened here).
fn open_world(base: &Path) -> (NetNs, nook_netmodel::Host, ImageStore) {
    let ns = NetNs::open_path(base.join("netns/nkhost")).expect("open host netns");
    let host = host_of(base, &ns);
    (ns, host, ImageStore::open(base.join("store")).expect("image store"))
}

fn helper_part(base: &Path) {
    let (_ns, host, store) = open_world(base);
    let network = Network::open(&host, NET).expect("open network");
    match std::env::var(PART).unwrap().as_str() {
        "live" => {
            let sb = builder(base, &store, &network, 8090).command("sleep 1000").spawn().expect("live");
            let id = sb.record_path().unwrap().file_stem().unwrap().to_string_lossy().into_owned();
            println!("NK-LIVE {} {id}", sb.id());
            std::thread::sleep(Duration::from_secs(600));
        }
        "victim" => {
            println!("NK-GO");
            loop {
                let sb = builder(base, &store, &network, 8080).create().expect("create");
                assert_eq!(sb.exec(["true"]).status().expect("exec"), Outcome::Exited(0));
                sb.remove().expect("remove");
                let run = builder(base, &store, &network, 8080).command("true").status().expect("one-shot run");
                assert_eq!(run, Outcome::Exited(0));
            }
        }
        "cleaner" => {
            // One cleanup, from a process that made none of it.
            let r = StateDir::new(base.join("state")).cleanup().expect("cleanup");
            println!("NK-CLEAN {} {} {} {}", r.removed.len(), r.live.len(), r.busy.len(), r.failed.len());
            assert!(r.failed.is_empty(), "{r:?}");
        }
        other => panic!("unknown part {other}"),
    }
}

/// Runs `part` of helper `me` on `base`, tagged `tag`; returns it and its stdout lines.
fn spawn_part(
    me: &str,
    base: &Path,
    part: &str,
    tag: &str,
) -> (std::process::Child, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let mut child =
        helper(module_path!(), me, base).env(PART, part).env(TAG, tag).stdout(Stdio::piped()).spawn().expect("helper");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Reads lines up to one holding `prefix`; the words after it.
fn words_after(lines: &mut std::io::Lines<BufReader<std::process::ChildStdout>>, prefix: &str) -> Vec<String> {
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(at) = line.find(prefix) {
            return line[at + prefix.len()..].split_whitespace().map(str::to_owned).collect();
        }
    }
    panic!("helper ended without {prefix}");
}

/// One cleanup from a fresh process: (removed, live, busy).
fn clean_from_a_fresh_process(me: &str, base: &Path) -> (usize, usize, usize) {
    let out = helper(module_path!(), me, base).env(PART, "cleaner").output().expect("cleaner");
    let text = success_stdout(out);
    let line = text.lines().find_map(|l| l.split_once("NK-CLEAN ").map(|(_, r)| r.to_owned())).expect("NK-CLEAN");
    let n: Vec<usize> = line.split_whitespace().map(|w| w.parse().unwrap()).collect();
    (n[0], n[1], n[2])
}

/// Kills a helper when the test ends, also on panic.
struct Kill(Option<std::process::Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn owner_sigkilled_anywhere_then_one_cleanup_from_a_fresh_process_leaves_nothing_and_spares_a_live_owner() {
    const ME: &str =
        "owner_sigkilled_anywhere_then_one_cleanup_from_a_fresh_process_leaves_nothing_and_spares_a_live_owner";
    if let Some(base) = helper_role(ME) {
        return helper_part(&base);
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    let points = crate::world::scaled("NOOK_CRASH_POINTS", 10, 3);
    let tmp = TempDir::new("crash").unwrap();
    let store = crate::image_run::store_with_app(&tmp);
    let ns = host_netns(tmp.path());
    let host = host_of(tmp.path(), &ns);
    let network = Network::create(&host, &bridge_spec(NET, SUBNET)).expect("network");
    let _clean = crate::world::CleanupOnDrop(tmp.path().to_owned());
    let (ipam, state) = (tmp.join("ipam"), tmp.join("state"));
    let scope = |owners: Vec<u32>| Scope {
        host: Some(&ns),
        ipam: Some(&ipam),
        store: Some(store.root()),
        state: Some(&state),
        owners,
        base: Some(tmp.path()),
    };
    // No owner yet (pid 1 owns no sandbox of this test).
    let empty = Counts::take(&scope(vec![1])).outside();

    // The live owner: a running sandbox on the same network.
    let (live, mut lines) = spawn_part(ME, tmp.path(), "live", &unique_name("liv"));
    let mut live = Kill(Some(live));
    let live_pid = live.0.as_ref().unwrap().id();
    let w = words_after(&mut lines, "NK-LIVE ");
    std::thread::spawn(move || lines.for_each(drop));
    let live_init = pidfd(w[0].parse().unwrap());
    let live_id = w[1].clone();
    let with_live = Counts::take(&scope(vec![live_pid])).outside();
    assert_eq!(with_live.counts["container layers"], 1);
    assert_eq!(with_live.counts["ipam entries"], 1);

    let mut seed = clock_seed();
    let mut left = 0;
    let max_delay = 400 * u64::from(time_factor());
    for point in 0..points {
        let tag = unique_name("vic");
        let (victim, mut lines) = spawn_part(ME, tmp.path(), "victim", &tag);
        let mut victim = Kill(Some(victim));
        let victim_pid = victim.0.as_ref().unwrap().id();
        words_after(&mut lines, "NK-GO");
        std::thread::spawn(move || lines.for_each(drop));
        let delay = Duration::from_millis(xorshift(&mut seed) % max_delay);
        std::thread::sleep(delay);
        let mut v = victim.0.take().unwrap();
        v.kill().unwrap(); // SIGKILL
        v.wait().unwrap();
        let why = format!("point {point}: owner killed {delay:?} after NK-GO");
        assert_eq!(no_tagged_process_left(&tag), Vec::<u32>::new(), "{why}: processes outlived their owner");

        let (removed, live_records, busy) = clean_from_a_fresh_process(ME, tmp.path());
        assert_eq!((live_records, busy), (1, 0), "{why}: the live owner's record is live, nothing busy");
        left += removed;
        with_live.assert_eventually(|| Counts::take(&scope(vec![live_pid, victim_pid])).outside(), 0, &why);
        assert!(running(&live_init), "{why}: the live owner's sandbox stopped");
        assert_eq!(StateDir::new(&state).ids().unwrap(), [live_id.as_str()], "{why}");
    }
    println!("NK-CRASH {points} kill points, {left} left a sandbox for the cleanup, leaks: 0");

    // The live owner dies too: its sandbox goes with it, the cleanup takes the rest.
    let mut l = live.0.take().unwrap();
    l.kill().unwrap();
    l.wait().unwrap();
    assert!(exited(&live_init), "the live owner's init outlived it");
    assert_eq!(clean_from_a_fresh_process(ME, tmp.path()), (1, 0, 0));
    let after = || Counts::take(&scope(vec![live_pid])).outside();
    empty.assert_eventually(after, 0, "after the live owner's death and a cleanup");
    network.remove().unwrap();
    drop(host);
    drop(ns);
    for i in store.images().unwrap() {
        store.remove(&i.reference).unwrap();
    }
    store.prune().unwrap();
}

/// Whether the process behind `fd` is still running (its pidfd not readable), without waiting.
fn running(fd: &std::os::fd::OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })).expect("poll") == 0
}

/// A dead owner's container layer whose stack is still mounted on its `merged` dir (the
/// owner mounted it itself and died before unmounting): the cleanup detaches the mount and
/// removes the layer.
#[test]
fn a_dead_owners_still_mounted_container_layer_is_unmounted_and_removed() {
    require_root!();
    let tmp = TempDir::new("mnt-layer").unwrap();
    let store = crate::image_run::store_with_app(&tmp);
    nook_testutil::on_private_mount_ns(|| {
        let image = store.image("nk-app:1").unwrap();
        let layer = store.create_container("nk-mounted", &image).unwrap();
        layer.stack.mount(&layer.merged).unwrap().leak();
        assert!(layer.merged.join("bin").exists(), "the stack is mounted");
        assert!(store.layer_store().remove_container("nk-mounted").is_err(), "refused while mounted");
        let st = StateDir::new(tmp.join("state"));
        let mut dead = ProcessId::current().unwrap();
        dead.start_time += 1; // this pid with another start time: a dead owner
        let mut rec = st.create_record_for("nk-mounted", dead).unwrap();
        rec.add(Object::ContainerLayer { store: store.root().to_owned(), id: "nk-mounted".into() }).unwrap();
        drop(rec);
        let report = st.cleanup().unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.removed, ["nk-mounted"]);
        assert!(store.layer_store().container_ids().unwrap().is_empty());
        assert!(nook_testutil::mountinfo_line(&layer.merged).is_none(), "still mounted");
    });
    for i in store.images().unwrap() {
        store.remove(&i.reference).unwrap();
    }
    store.prune().unwrap();
}

/// The payload (pid 2 in the sandbox) of init `init`: its one child.
fn payload_of(init: u32) -> u32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10 * u64::from(time_factor()));
    loop {
        let kids = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap_or_default();
        if let Some(p) = kids.split_whitespace().next() {
            return p.parse().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "init {init} has no child");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sigkill(pid: u32) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), rustix::process::Signal::KILL)
        .expect("kill");
}

#[test]
fn sigkill_of_a_sandboxs_init_or_payload_is_reported_and_leaves_nothing() {
    const ME: &str = "sigkill_of_a_sandboxs_init_or_payload_is_reported_and_leaves_nothing";
    if let Some(base) = helper_role(ME) {
        nook_testutil::on_private_mount_ns(|| kills(&base));
        return;
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    let tmp = TempDir::new("kill1").unwrap();
    let store = crate::image_run::store_with_app(&tmp);
    let _clean = crate::world::CleanupOnDrop(tmp.path().to_owned());
    let out = helper(module_path!(), ME, tmp.path()).output().expect("helper");
    success_stdout(out);
    for i in store.images().unwrap() {
        store.remove(&i.reference).unwrap();
    }
    store.prune().unwrap();
}

/// The helper's side: each kill, then every count as before.
fn kills(base: &Path) {
    let (ns, _host, network, store) = world_with_network(base, "nkkill", "10.143.0.0/24");
    let places = Places::new(base);
    let scope = places.scope(&ns);
    // Warm-up: one sandbox through its whole life.
    let links = Counts::take(&scope).counts["links"];
    builder(base, &store, &network, 8080).create().unwrap().remove().unwrap();
    let before = Counts::eventually(|| Counts::take(&scope), |c| c.counts["links"] == links);

    // PID 1 of a long-lived sandbox, with an exec'd process in it: the process dies with the
    // pid namespace, the sandbox ends killed by SIGKILL, and remove takes the rest.
    let mut sb = builder(base, &store, &network, 8080).create().unwrap();
    let mut child = sb.exec(["sleep", "1000"]).spawn().unwrap();
    sigkill(sb.id());
    let st = child.wait().unwrap();
    assert!(!st.success(), "the exec'd process survived its init: {st:?}");
    drop(child);
    assert_eq!(sb.wait().unwrap(), Outcome::Signaled(libc::SIGKILL));
    sb.remove().unwrap();
    before.assert_eventually(|| Counts::take(&scope), RSS_SLACK_KIB, "after SIGKILL of PID 1");

    // The payload of a one-shot run: the init reports it (128 + 9) and ends.
    let mut sb = builder(base, &store, &network, 8080).command("sleep 1000").spawn().unwrap();
    sigkill(payload_of(sb.id()));
    assert_eq!(sb.wait().unwrap(), Outcome::Exited(128 + libc::SIGKILL));
    drop(sb);
    before.assert_eventually(|| Counts::take(&scope), RSS_SLACK_KIB, "after SIGKILL of a one-shot payload");

    // An exec'd process of a long-lived sandbox: it alone dies; the sandbox goes on.
    let sb = builder(base, &store, &network, 8080).create().unwrap();
    let mut child = sb.exec(["sleep", "1000"]).spawn().unwrap();
    sigkill(child.id());
    let st = child.wait().unwrap();
    assert!(!st.success(), "{st:?}");
    assert_eq!(sb.exec(["true"]).status().unwrap(), Outcome::Exited(0), "the sandbox still runs");
    drop(child);
    sb.remove().unwrap();
    before.assert_eventually(|| Counts::take(&scope), RSS_SLACK_KIB, "after SIGKILL of an exec'd process");
    network.remove().unwrap();
}
