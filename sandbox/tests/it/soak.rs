//! Soak (issue 17 item 1): full facade sandboxes — an image root (layers plus a container
//! layer), cgroup limits, a bridge network with a published port — created, run (an `exec`
//! and a one-shot run) and removed many times; afterwards every count of [`crate::world`]
//! equals the count before, and RSS has not grown beyond noise.
//!
//! The cycles run in a helper process of their own (this binary re-executed for just this
//! test), on a thread with a private mount namespace: descriptors, threads, children, mounts
//! and RSS are then the soak's alone, not those of the tests running beside it.
//!
//! CI runs 100 cycles (10 with `NOOK_TEST_TIME_FACTOR=10`); `NOOK_SOAK_CYCLES=1000` runs the
//! long version.

use std::path::Path;

use nook_netmodel::Network;
use nook_ns::Stdio as NsStdio;
use nook_sandbox::image::ImageStore;
use nook_sandbox::{Outcome, Sandbox};
use nook_testutil::{TempDir, require_root, success_stdout};

use crate::world::{Counts, Places, RSS_SLACK_KIB, helper, helper_role, published, world_with_network};

/// Cycles run before the first count: what a process sets up once (the seccomp filter, the
/// allocator's arenas, the layer store's directories) is not a leak.
const WARMUP: u32 = 3;

/// One cycle: a long-lived sandbox created, an `exec` in it, removed; then a one-shot run of
/// the same sandbox.
fn cycle(base: &Path, store: &ImageStore, network: &Network, n: u32) {
    let mut b = Sandbox::builder();
    b.state_dir(base.join("state"))
        .image(store, "nk-app:1")
        .memory_max(64 << 20)
        .pids_max(32)
        .connect(network, published(8080))
        .stdin(NsStdio::null())
        .stdout(NsStdio::null())
        .stderr(NsStdio::null());
    let sb = b.create().unwrap_or_else(|e| panic!("cycle {n}: create: {e}"));
    let st = sb.exec(["true"]).stdout(NsStdio::null()).status().unwrap_or_else(|e| panic!("cycle {n}: exec: {e}"));
    assert_eq!(st, Outcome::Exited(0), "cycle {n}: exec");
    sb.remove().unwrap_or_else(|e| panic!("cycle {n}: remove: {e}"));
    let st = b.command("true").status().unwrap_or_else(|e| panic!("cycle {n}: one-shot run: {e}"));
    assert_eq!(st, Outcome::Exited(0), "cycle {n}: one-shot run");
}

#[test]
fn facade_sandboxes_created_run_and_removed_many_times_leave_nothing() {
    const ME: &str = "facade_sandboxes_created_run_and_removed_many_times_leave_nothing";
    if let Some(base) = helper_role(ME) {
        let cycles = crate::world::scaled("NOOK_SOAK_CYCLES", 100, 10);
        nook_testutil::on_private_mount_ns(|| soak(&base, cycles));
        return;
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    let tmp = TempDir::new("soak").unwrap();
    let store = crate::image_run::store_with_app(&tmp);
    let _clean = crate::world::CleanupOnDrop(tmp.path().to_owned());
    let out = helper(module_path!(), ME, tmp.path()).output().expect("run the soak helper");
    let text = success_stdout(out);
    let figures = text.lines().find(|l| l.contains("NK-SOAK")).unwrap_or("(no figures)");
    println!("{figures}");
    for i in store.images().unwrap() {
        store.remove(&i.reference).unwrap();
    }
    store.prune().unwrap();
}

/// The helper's side: `cycles` cycles between two counts.
fn soak(base: &Path, cycles: u32) {
    let (ns, _host, network, store) = world_with_network(base, "nksoak", "10.141.0.0/24");
    let places = Places::new(base);
    let scope = places.scope(&ns);
    let links = Counts::take(&scope).counts["links"];
    for n in 0..WARMUP {
        cycle(base, &store, &network, n);
    }
    // Once the warm-up's veth ends are gone with their namespaces.
    let before = Counts::eventually(|| Counts::take(&scope), |c| c.counts["links"] == links);
    for n in 0..cycles {
        cycle(base, &store, &network, WARMUP + n);
    }
    let after = Counts::eventually(|| Counts::take(&scope), |c| c.counts == before.counts);
    println!(
        "NK-SOAK {cycles} cycles ({} sandboxes): counts {:?}; RSS {} -> {} KiB",
        2 * cycles,
        after.counts,
        before.rss_kib,
        after.rss_kib
    );
    before.assert_same(&after, RSS_SLACK_KIB, &format!("after {cycles} cycles"));
    network.remove().expect("remove network");
}
