//! Commands on one container id at once, and a `create` killed midway: nook-oci's own
//! (runc 1.1 has no per-container lock to compare with).

use std::path::Path;
use std::time::{Duration, Instant};

use nook_testutil::{TempDir, require_root};
use serde_json::{Value, json};

use crate::harness::{Runtime, p, rootfs, runtimes};

fn nook(tmp: &TempDir, tag: &str) -> Runtime {
    runtimes(tmp, tag).pop().unwrap()
}

/// Polls until `path` exists (a hang detector, not a timing check).
fn wait_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20 * u64::from(nook_testutil::time_factor()));
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `createRuntime` hook running `script` in the host's shell.
fn hook(c: &mut Value, script: &str) {
    c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// Nothing of container `id` is left: no state directory, lock file or cgroup (that of
/// bundle `bundle`: the harness names the cgroup after it).
fn nothing_left(rt: &Runtime, id: &str, bundle: &str) {
    assert!(!rt.root().join(id).exists(), "{id}: state left behind");
    assert!(!rt.root().join(".locks").join(id).exists(), "{id}: lock file left behind");
    assert!(rt.cgroup_dirs(bundle).is_empty(), "{id}: cgroup left behind");
}

/// Four `create`s of one id at once: one makes the container, the others fail with
/// "already exists"; the container is whole (`created`, startable) and deletes cleanly.
#[test]
fn concurrent_creates_of_one_id() {
    require_root!();
    let tmp = TempDir::new("lkc").unwrap();
    rootfs(&tmp);
    let rt = nook(&tmp, "lkc");
    let b = rt.bundle(&tmp, "lkc", &["true"], |_| {});
    let runs: Vec<_> = (0..4).map(|_| rt.spawn(&["create", "--bundle", p(&b), "lkc"])).collect();
    let mut codes = Vec::new();
    for (mut child, _, err) in runs {
        let code = child.wait().unwrap().code();
        let err = std::fs::read_to_string(err).unwrap();
        if code != Some(0) {
            assert!(err.contains("already exists"), "{err}");
        }
        codes.push(code);
    }
    assert_eq!(codes.iter().filter(|c| **c == Some(0)).count(), 1, "{codes:?}");
    assert_eq!(rt.status("lkc"), "created");
    assert_eq!(rt.run(&["start", "lkc"]).code, 0);
    assert_eq!(rt.wait_status("lkc", "stopped"), "stopped");
    assert_eq!(rt.run(&["delete", "lkc"]).code, 0);
    nothing_left(&rt, "lkc", "lkc");
}

/// A `delete --force` issued while `create` runs its hook waits for the `create` to finish
/// (the hook's second mark is there when it returns), then removes the container.
#[test]
fn delete_waits_for_a_create_in_progress() {
    require_root!();
    let tmp = TempDir::new("lkd").unwrap();
    rootfs(&tmp);
    let rt = nook(&tmp, "lkd");
    let (m1, m2) = (tmp.join("nk-in-hook"), tmp.join("nk-hook-done"));
    let script = format!("touch {}; sleep 2; touch {}", m1.display(), m2.display());
    let b = rt.bundle(&tmp, "lkd", &["sleep", "1000"], |c| hook(c, &script));
    let (mut create, _, create_err) = rt.spawn(&["create", "--bundle", p(&b), "lkd"]);
    wait_file(&m1);
    // The OCI status while create runs its hooks.
    assert_eq!(rt.status("lkd"), "creating");
    let del = rt.run(&["delete", "--force", "lkd"]);
    assert_eq!(del.code, 0, "{del:?}");
    assert!(m2.exists(), "delete returned while create was still in its hook");
    let code = create.wait().unwrap().code();
    assert_eq!(code, Some(0), "{}", std::fs::read_to_string(create_err).unwrap());
    nothing_left(&rt, "lkd", "lkd");
}

/// `create` SIGKILLed in its hook (the container's process set up and waiting at the
/// fifo, its cgroup made, `state.json` written): `start` refuses the half-made container,
/// the next `create` of the id removes it and makes a new one; killed again, `delete
/// --force` removes it. Nothing is left, the killed creates' processes are gone.
#[test]
fn killed_create_is_cleaned_up() {
    require_root!();
    let tmp = TempDir::new("lkk").unwrap();
    rootfs(&tmp);
    let rt = nook(&tmp, "lkk");
    // The hook saves the state it is given (the container's pid) and its own pid, then
    // waits (killed by the test).
    let killed_create = |n: u32| -> u64 {
        let (state, mark) = (tmp.join(format!("nk-state-{n}")), tmp.join(format!("nk-hook-{n}")));
        let script = format!(
            "cat > {state}; echo $$ > {mark}.tmp; mv {mark}.tmp {mark}; exec sleep 1000",
            state = state.display(),
            mark = mark.display()
        );
        let b = rt.bundle(&tmp, &format!("lkk-b{n}"), &["sleep", "1000"], |c| hook(c, &script));
        let (mut create, _, _) = rt.spawn(&["create", "--bundle", p(&b), "lkk"]);
        wait_file(&mark);
        create.kill().unwrap();
        create.wait().unwrap();
        let hook_pid: i32 = std::fs::read_to_string(&mark).unwrap().trim().parse().unwrap();
        // SAFETY: kill(2) on the hook's pid, a process this test started.
        unsafe { libc::kill(hook_pid, libc::SIGKILL) };
        let state: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        state["pid"].as_u64().unwrap()
    };
    let first = killed_create(1);
    assert!(alive(first), "the container's process waits at the fifo");
    assert_eq!(rt.status("lkk"), "creating");
    assert!(!rt.cgroup_dirs("lkk-b1").is_empty());
    let start = rt.run(&["start", "lkk"]);
    assert_eq!(start.code, 1, "{start:?}");
    assert!(start.stderr.contains("did not finish"), "{start:?}");
    let b = rt.bundle(&tmp, "lkk-ok", &["sleep", "1000"], |_| {});
    let again = rt.run(&["create", "--bundle", p(&b), "lkk"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(!alive(first), "the killed create's container is gone");
    assert_eq!(rt.status("lkk"), "created");
    assert!(rt.cgroup_dirs("lkk-b1").is_empty(), "the killed create's cgroup is gone");
    assert_eq!(rt.run(&["delete", "--force", "lkk"]).code, 0);
    nothing_left(&rt, "lkk", "lkk-ok");

    let second = killed_create(2);
    assert!(alive(second));
    let del = rt.run(&["delete", "--force", "lkk"]);
    assert_eq!(del.code, 0, "{del:?}");
    assert!(!alive(second), "delete --force ended it");
    nothing_left(&rt, "lkk", "lkk-b2");
}
