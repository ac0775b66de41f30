//! Fault injection (issue 17 item 2): every setup step of a full sandbox (image root with a
//! container layer, cgroup limits, a published port on a bridge network, an owner record)
//! is made to fail in turn through the failpoints the crates compile in for tests
//! (`nook_ns::failpoint`, the `failpoints` feature this test binary turns on); after each,
//! the error must name the step and everything set up before it must be undone — every
//! count of [`crate::world`] as before.
//!
//! The steps are not listed by hand: one clean `create()` runs with the failpoints
//! recording, and each hit it made (cgroup directories and each limit written, the container
//! layer's directories, each netlink request, the firewall apply, the IPAM allocation, each
//! write of the owner record) is then failed on its own — the `k`-th hit of its name. Then
//! every stage of the child between clone and exec is failed (each mount step on its own;
//! with `NOOK_TEST_TIME_FACTOR` above 1, the first mount step only).
//! A layer apply is failed on an image import. The run is in a helper process of its own:
//! armed failpoints are process-wide.

use std::collections::BTreeMap;
use std::path::Path;

use nook_netmodel::Network;
use nook_ns::Stdio as NsStdio;
use nook_ns::failpoint;
use nook_sandbox::image::ImageStore;
use nook_sandbox::{Sandbox, SandboxBuilder};
use nook_testutil::{TempDir, require_root, success_stdout};

use crate::world::{Counts, Places, RSS_SLACK_KIB, helper, helper_role, published, world_with_network};

fn builder(base: &Path, store: &ImageStore, network: &Network) -> SandboxBuilder {
    let mut b = Sandbox::builder();
    b.state_dir(base.join("state"))
        .image(store, "nk-app:1")
        .memory_max(64 << 20)
        .pids_max(32)
        // So that the child's rlimit stage runs too.
        .rlimit(nook_ns::Resource::Nofile, 512, 512)
        .connect(network, published(8080))
        .stdin(NsStdio::null())
        .stdout(NsStdio::null())
        .stderr(NsStdio::null());
    b
}

/// The error with its sources, as one text.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(" / ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[test]
fn each_setup_step_failing_names_the_step_and_undoes_everything_before_it() {
    const ME: &str = "each_setup_step_failing_names_the_step_and_undoes_everything_before_it";
    if let Some(base) = helper_role(ME) {
        nook_testutil::on_private_mount_ns(|| faults(&base));
        return;
    }
    require_root!();
    let _serial = crate::sandbox::serial();
    let tmp = TempDir::new("faults").unwrap();
    let store = crate::image_run::store_with_app(&tmp);
    let _clean = crate::world::CleanupOnDrop(tmp.path().to_owned());
    let out = helper(module_path!(), ME, tmp.path()).output().expect("run the fault helper");
    let text = success_stdout(out);
    for l in text.lines().filter(|l| l.contains("NK-FAULTS")) {
        println!("{l}");
    }
    crate::image_run::empty_store_at(&store);
}

fn faults(base: &Path) {
    let (ns, _host, network, store) = world_with_network(base, "nkfault", "10.145.0.0/24");
    let places = Places::new(base);
    let scope = places.scope(&ns);
    let links = Counts::take(&scope).counts["links"];
    builder(base, &store, &network).create().unwrap().remove().unwrap();
    let before = Counts::eventually(|| Counts::take(&scope), |c| c.counts["links"] == links);

    // The steps of one clean create.
    failpoint::record(true);
    let sb = builder(base, &store, &network).create().unwrap();
    let hits = failpoint::recorded();
    failpoint::record(false);
    sb.remove().unwrap();
    assert!(!hits.is_empty(), "no failpoint hit: is the failpoints feature on?");

    let mut nth: BTreeMap<&str, usize> = BTreeMap::new();
    let mut injected = 0;
    let mut per_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, detail) in &hits {
        let k = *nth.entry(name).and_modify(|k| *k += 1).or_insert(1);
        let what = format!("{name} #{k} ({detail})");
        failpoint::arm(name, k);
        let r = builder(base, &store, &network).create();
        let fired = failpoint::last_injected();
        failpoint::disarm();
        let e = match r {
            Err(e) => e,
            Ok(sb) => {
                sb.remove().unwrap();
                panic!("{what}: create succeeded although the step failed (fired: {fired:?})");
            }
        };
        let (_, fired_detail) = fired.unwrap_or_else(|| panic!("{what}: did not fire, yet create failed: {e}"));
        let text = chain(&e);
        assert!(text.contains(&fired_detail), "{what}: the error does not name the step ({fired_detail}): {text}");
        before.assert_eventually(|| Counts::take(&scope), RSS_SLACK_KIB, &format!("after {what} failed: {text}"));
        injected += 1;
        *per_name.entry(name).or_default() += 1;
    }
    println!("NK-FAULTS {injected} setup steps failed in turn: {per_name:?}");

    // Every stage of the child (each mount step on its own).
    let mut stages = Vec::new();
    for raw in 0..64u32 {
        let Some(stage) = nook_ns::Stage::from_raw(raw) else { continue };
        // Each mount step on its own; under emulation (time factor above 1) the first
        // only.
        let each_mount = nook_testutil::time_factor() == 1;
        let steps: Vec<Option<u32>> =
            if stage == nook_ns::Stage::Mount && each_mount { (0..64).map(Some).collect() } else { vec![None] };
        for step in steps {
            failpoint::arm_child_stage(raw, step);
            let r = builder(base, &store, &network).create();
            failpoint::disarm();
            match r {
                Ok(sb) => {
                    sb.remove().unwrap();
                    if step.is_some() {
                        break; // past the last mount step
                    }
                    // A stage this sandbox's child does not go through.
                }
                Err(e) => {
                    let text = chain(&e);
                    let named = format!("stage {stage}");
                    assert!(text.contains(&named), "child {named} {step:?}: the error does not name it: {text}");
                    let what = format!("child {named} {step:?} failed: {text}");
                    before.assert_eventually(|| Counts::take(&scope), RSS_SLACK_KIB, &what);
                    stages.push(format!("{stage}{}", step.map(|s| format!("#{s}")).unwrap_or_default()));
                }
            }
        }
    }
    println!("NK-FAULTS {} child stages failed in turn: {}", stages.len(), stages.join(" "));
    assert!(stages.len() >= 10, "too few child stages reached: {stages:?}");

    // A layer apply, on an image import: nothing staged is left.
    failpoint::arm("layer.apply", 1);
    let r = crate::image_run::import_app(&store, base, "nk-app:2");
    let fired = failpoint::last_injected();
    failpoint::disarm();
    let e = r.expect_err("the import succeeded although its layer apply failed");
    let (_, detail) = fired.expect("layer.apply fired");
    assert!(chain(&e).contains(&detail), "{}", chain(&e));
    assert!(store.image("nk-app:2").is_err(), "no image record");
    before.assert_eventually(|| Counts::take(&scope), RSS_SLACK_KIB, "after a failed layer apply");
    println!("NK-FAULTS 1 layer apply failed");
    network.remove().unwrap();
}
