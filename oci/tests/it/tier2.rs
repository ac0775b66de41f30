//! Tier 2 scenarios (and Tier 1's `kill` default and `run`'s signal relay) against runc and
//! nook-oci: `ps`, `pause`/`resume`, `update`, `features`, the OCI hooks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nook_testutil::{TempDir, require_root};
use serde_json::{Value, json};

use crate::harness::{Runtime, compare, p, runtimes};

/// A hang detector (not a timing check): 20 s, scaled.
fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20 * u64::from(nook_testutil::time_factor()));
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first of `files` found in the container's cgroup directories, trimmed.
fn cgroup_file(rt: &Runtime, id: &str, files: &[&str]) -> String {
    for f in files {
        for d in rt.cgroup_dirs(id) {
            if let Ok(s) = std::fs::read_to_string(d.join(f)) {
                return format!("{f}={}", s.trim());
            }
        }
    }
    "(none)".into()
}

/// Whether the kernel reports the container's cgroup frozen (v1 freezer or v2).
fn frozen(rt: &Runtime, id: &str) -> bool {
    rt.cgroup_dirs(id).iter().any(|d| {
        std::fs::read_to_string(d.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
            || std::fs::read_to_string(d.join("cgroup.events")).is_ok_and(|s| s.lines().any(|l| l == "frozen 1"))
    })
}

#[test]
fn ps_json_and_table() {
    require_root!();
    let obs = compare("ps", |tmp, rt| {
        let b = rt.bundle(tmp, "ps1", &["sleep", "1000"], |_| {});
        assert_eq!(rt.run(&["run", "--detach", "--bundle", p(&b), "ps1"]).code, 0);
        let pid = rt.state("ps1").unwrap()["pid"].as_u64().unwrap();
        let mut o = Vec::new();
        let j = rt.run(&["ps", "--format", "json", "ps1"]);
        let pids: Vec<u64> = serde_json::from_str(&j.stdout).unwrap_or_default();
        o.push(format!("json {} {:?} only-init {}", j.code, j.stdout.trim_start().chars().next(), pids == vec![pid]));
        assert_eq!(rt.run(&["exec", "--detach", "ps1", "sleep", "999"]).code, 0);
        let j = rt.run(&["ps", "-f", "json", "ps1"]);
        let pids: Vec<u64> = serde_json::from_str(&j.stdout).unwrap_or_default();
        o.push(format!("json after exec {} count {} has-init {}", j.code, pids.len(), pids.contains(&pid)));
        let t = rt.run(&["ps", "ps1"]);
        let lines: Vec<&str> = t.stdout.lines().collect();
        let header = lines.first().map(|h| h.split_whitespace().collect::<Vec<_>>().join(" "));
        // The PID column where the header says (procps: 2nd; busybox's ps in the v2 guest: 1st).
        let col = lines.first().and_then(|h| h.split_whitespace().position(|c| c == "PID")).unwrap_or(1);
        let pid_col: Vec<bool> = lines[1..]
            .iter()
            .map(|l| l.split_whitespace().nth(col).is_some_and(|c| pids.iter().any(|p| p.to_string() == c)))
            .collect();
        o.push(format!("table {} {header:?} rows {} pids-match {pid_col:?}", t.code, lines.len() - 1));
        o.push(format!("bad format fails {}", rt.run(&["ps", "--format", "xml", "ps1"]).code != 0));
        o.push(format!("unknown id fails {}", rt.run(&["ps", "--format", "json", "nk-nope"]).code != 0));
        o
    });
    assert!(obs[0].starts_with("json 0 Some('[') only-init true"), "{obs:#?}");
    assert_eq!(obs[1], "json after exec 0 count 2 has-init true");
    assert!(obs[2].contains("rows 2 pids-match [true, true]"), "{obs:#?}");
}

#[test]
fn pause_resume_and_their_errors() {
    require_root!();
    let obs = compare("pau", |tmp, rt| {
        let b = rt.bundle(tmp, "pz", &["sleep", "1000"], |_| {});
        let mut o = Vec::new();
        assert_eq!(rt.run(&["create", "--bundle", p(&b), "pz"]).code, 0);
        o.push(format!(
            "pause created {} -> {} frozen {}",
            rt.run(&["pause", "pz"]).code,
            rt.status("pz"),
            frozen(rt, "pz")
        ));
        o.push(format!("resume {} -> {} frozen {}", rt.run(&["resume", "pz"]).code, rt.status("pz"), frozen(rt, "pz")));
        o.push(format!("start {} -> {}", rt.run(&["start", "pz"]).code, rt.status("pz")));
        o.push(format!("resume running fails {}", rt.run(&["resume", "pz"]).code != 0));
        o.push(format!("pause {} -> {} frozen {}", rt.run(&["pause", "pz"]).code, rt.status("pz"), frozen(rt, "pz")));
        o.push(format!("delete paused fails {} -> {}", rt.run(&["delete", "pz"]).code != 0, rt.status("pz")));
        o.push(format!("resume {} -> {} frozen {}", rt.run(&["resume", "pz"]).code, rt.status("pz"), frozen(rt, "pz")));
        assert_eq!(rt.run(&["kill", "pz", "KILL"]).code, 0);
        o.push(format!("killed -> {}", rt.wait_status("pz", "stopped")));
        o.push(format!("pause stopped fails {}", rt.run(&["pause", "pz"]).code != 0));
        o.push(format!("resume stopped fails {}", rt.run(&["resume", "pz"]).code != 0));
        o.push(format!("delete {}", rt.run(&["delete", "pz"]).code));
        // delete --force of a paused container.
        let b = rt.bundle(tmp, "pf", &["sleep", "1000"], |_| {});
        assert_eq!(rt.run(&["run", "--detach", "--bundle", p(&b), "pf"]).code, 0);
        assert_eq!(rt.run(&["pause", "pf"]).code, 0);
        o.push(format!(
            "delete --force paused {} -> {:?}",
            rt.run(&["delete", "--force", "pf"]).code,
            rt.state("pf").map(|_| ())
        ));
        o.push(format!("pause unknown fails {}", rt.run(&["pause", "nk-nope"]).code != 0));
        o
    });
    let want = [
        "pause created 0 -> paused frozen true",
        "resume 0 -> created frozen false",
        "start 0 -> running",
        "resume running fails true",
        "pause 0 -> paused frozen true",
        "delete paused fails true -> paused",
        "resume 0 -> running frozen false",
        "killed -> stopped",
        "pause stopped fails true",
        "resume stopped fails true",
        "delete 0",
        "delete --force paused 0 -> None",
        "pause unknown fails true",
    ];
    assert_eq!(obs, want);
}

#[test]
fn update_changes_the_live_cgroup() {
    require_root!();
    let obs = compare("upd", |tmp, rt| {
        let b = rt.bundle(tmp, "up", &["sleep", "1000"], |c| {
            c["linux"]["resources"] = json!({
                "memory": {"limit": 67108864},
                "pids": {"limit": 100},
                "cpu": {"quota": 20000, "period": 100000}
            });
        });
        assert_eq!(rt.run(&["run", "--detach", "--bundle", p(&b), "up"]).code, 0);
        let read = |rt: &Runtime| {
            [
                cgroup_file(rt, "up", &["memory.limit_in_bytes", "memory.max"]),
                cgroup_file(rt, "up", &["pids.max"]),
                cgroup_file(rt, "up", &["cpu.cfs_quota_us", "cpu.max"]),
            ]
            .join(" ")
        };
        let mut o = vec![read(rt)];
        let u = rt.run(&["update", "--memory", "134217728", "--pids-limit", "50", "--cpu-quota", "30000", "up"]);
        o.push(format!("flags {} {}", u.code, read(rt)));
        let file = tmp.join(format!("{}-res.json", rt.name));
        std::fs::write(&file, r#"{"memory": {"limit": 100663296}, "pids": {"limit": 40}}"#).unwrap();
        let u = rt.run(&["update", "--resources", p(&file), "up"]);
        o.push(format!("file {} {}", u.code, read(rt)));
        // The kernel enforces the new pids limit: 40 processes at most.
        let e = rt.run(&[
            "exec",
            "up",
            "sh",
            "-c",
            "for i in $(seq 1 60); do sleep 30 & done 2>/dev/null; sleep 0; echo spawned",
        ]);
        o.push(format!("fork past the limit fails {}", !e.stdout.contains("spawned") || e.code != 0));
        o.push(format!("unknown id fails {}", rt.run(&["update", "--memory", "1000000", "nk-nope"]).code != 0));
        o
    });
    assert_eq!(
        obs[0].split(' ').map(|s| s.split('=').nth(1).unwrap_or("")).collect::<Vec<_>>()[..2],
        ["67108864", "100"],
        "{obs:#?}"
    );
    assert!(
        obs[1].starts_with("flags 0") && obs[1].contains("=134217728") && obs[1].contains("pids.max=50"),
        "{obs:#?}"
    );
    assert!(obs[1].contains("30000"), "{obs:#?}");
    assert!(
        obs[2].starts_with("file 0") && obs[2].contains("=100663296") && obs[2].contains("pids.max=40"),
        "{obs:#?}"
    );
}

#[test]
fn features_has_runcs_shape() {
    let tmp = TempDir::new("fea").unwrap();
    let rts = runtimes(&tmp, "fea");
    let docs: Vec<(i32, Value)> = rts
        .iter()
        .map(|rt| {
            let out = rt.run(&["features"]);
            (out.code, serde_json::from_str(&out.stdout).unwrap_or(Value::Null))
        })
        .collect();
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        k.sort();
        k
    };
    for (code, doc) in &docs {
        assert_eq!(*code, 0);
        assert_eq!(doc["ociVersionMin"], "1.0.0");
        assert_eq!(doc["hooks"], docs[0].1["hooks"], "the same hooks as runc");
        assert_eq!(keys(doc), keys(&docs[0].1));
        assert_eq!(keys(&doc["linux"]), keys(&docs[0].1["linux"]));
        assert_eq!(keys(&doc["linux"]["seccomp"]), keys(&docs[0].1["linux"]["seccomp"]));
        assert!(doc["linux"]["namespaces"].as_array().is_some_and(|n| n.contains(&json!("pid"))));
        assert!(doc["linux"]["capabilities"].as_array().is_some_and(|n| n.contains(&json!("CAP_SYS_ADMIN"))));
    }
    // nook's own answer is honest: no systemd cgroups, no AppArmor/SELinux.
    let nook = &docs.last().unwrap().1;
    assert_eq!(nook["linux"]["cgroup"]["systemd"], false);
    assert_eq!(nook["linux"]["apparmor"]["enabled"], false);
}

/// A hook that appends `NAME status` to `log` (host path `host`, or `/nkhooks` inside the
/// container, where the directory is bind-mounted).
fn hook(name: &str, host: &Path) -> Value {
    let script = format!(
        "read s; if [ -d {h} ]; then L={h}/log; else L=/nkhooks/log; fi; \
         echo {name} $(echo \"$s\" | grep -o '\"status\":\"[a-z]*\"') $(echo \"$s\" | grep -o '\"pid\":[0-9]*') >> $L",
        h = host.display()
    );
    json!({"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["PATH=/bin:/usr/bin"]})
}

#[test]
fn hooks_run_in_order_with_the_state() {
    require_root!();
    let obs = compare("hok", |tmp, rt| {
        let logdir: PathBuf = tmp.join(format!("hooks-{}", rt.name));
        std::fs::create_dir_all(&logdir).unwrap();
        std::fs::create_dir_all(tmp.join("rootfs/nkhooks")).unwrap();
        let hooks_of = |names: &[&str]| {
            let mut h = serde_json::Map::new();
            for n in names {
                h.insert((*n).to_owned(), json!([hook(n, &logdir)]));
            }
            Value::Object(h)
        };
        let all =
            hooks_of(&["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]);
        let mount =
            json!({"destination": "/nkhooks", "type": "bind", "source": p(&logdir), "options": ["rbind", "rw"]});
        let b = rt.bundle(tmp, "hk", &["sleep", "1000"], |c| {
            c["hooks"] = all.clone();
            c["mounts"].as_array_mut().unwrap().push(mount.clone());
        });
        let mut o = Vec::new();
        o.push(format!("create {}", rt.run(&["create", "--bundle", p(&b), "hk"]).code));
        let pid = rt.state("hk").unwrap()["pid"].as_u64().unwrap();
        o.push(format!("start {}", rt.run(&["start", "hk"]).code));
        assert_eq!(rt.run(&["kill", "hk", "KILL"]).code, 0);
        rt.wait_status("hk", "stopped");
        o.push(format!("delete {}", rt.run(&["delete", "hk"]).code));
        let log = std::fs::read_to_string(logdir.join("log")).unwrap_or_default();
        // The container's pid as the host sees it, written "PID".
        let lines: Vec<String> = log.lines().map(|l| l.replace(&format!("\"pid\":{pid}"), "\"pid\":PID")).collect();
        // runc 1.1 runs poststart at the end of create (status "created", a bug fixed in
        // runc 1.2); nook-oci where the runtime spec puts it: after the release, "running".
        if rt.name == "nook" {
            let names: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
            let spec_order =
                ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];
            assert_eq!(names, spec_order, "{lines:#?}");
            assert!(lines[4].contains("\"status\":\"running\""), "{lines:#?}");
        }
        o.extend(lines.into_iter().filter(|l| !l.starts_with("poststart ")));
        // A failing createRuntime hook fails create and leaves no container.
        let bad = rt.bundle(tmp, "hk2", &["sleep", "1000"], |c| {
            c["hooks"] = json!({"createRuntime": [{"path": "/bin/false", "args": ["false"]}]});
        });
        o.push(format!("failing hook: create fails {}", rt.run(&["create", "--bundle", p(&bad), "hk2"]).code != 0));
        o.push(format!("and leaves {:?}", rt.state("hk2").map(|s| s["status"].clone())));
        // A hook past its timeout is killed and fails create the same way.
        let slow = rt.bundle(tmp, "hk4", &["sleep", "1000"], |c| {
            c["hooks"] = json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "600"], "timeout": 1}]});
        });
        o.push(format!("timed-out hook: create fails {}", rt.run(&["create", "--bundle", p(&slow), "hk4"]).code != 0));
        o.push(format!("and leaves {:?}", rt.state("hk4").map(|s| s["status"].clone())));
        // A failing poststop hook is only logged.
        let bad = rt.bundle(tmp, "hk3", &["true"], |c| {
            c["hooks"] = json!({"poststop": [{"path": "/bin/false", "args": ["false"]}]});
        });
        o.push(format!("failing poststop: run {}", rt.run(&["run", "--bundle", p(&bad), "hk3"]).code));
        o
    });
    assert_eq!(&obs[..3], ["create 0", "start 0", "delete 0"], "{obs:#?}");
    assert_eq!(
        obs[3..8],
        [
            "prestart \"status\":\"creating\" \"pid\":PID",
            "createRuntime \"status\":\"creating\" \"pid\":PID",
            "createContainer \"status\":\"creating\" \"pid\":1",
            "startContainer \"status\":\"created\" \"pid\":1",
            "poststop \"status\":\"stopped\"",
        ]
    );
    assert_eq!(
        obs[8..],
        [
            "failing hook: create fails true",
            "and leaves None",
            "timed-out hook: create fails true",
            "and leaves None",
            "failing poststop: run 0"
        ]
    );
}

#[test]
fn kill_defaults_to_sigterm() {
    require_root!();
    let obs = compare("kdt", |tmp, rt| {
        // PID 1 gets only the signals it handles: stopping proves SIGTERM came.
        let b = rt.bundle(tmp, "kd", &["sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.1; done"], |_| {});
        assert_eq!(rt.run(&["run", "--detach", "--bundle", p(&b), "kd"]).code, 0);
        let k = rt.run(&["kill", "kd"]);
        (k.code, rt.wait_status("kd", "stopped"))
    });
    assert_eq!(obs, (0, "stopped".to_owned()));
}

#[test]
fn run_relays_signals_to_the_container() {
    require_root!();
    let obs = compare("sig", |tmp, rt| {
        let script = "trap 'echo got-term; exit 4' TERM; trap 'echo got-hup' HUP; echo ready; \
            while true; do sleep 0.1; done";
        let b = rt.bundle(tmp, "sg", &["sh", "-c", script], |_| {});
        let (mut child, out, _) = rt.spawn(&["run", "--bundle", p(&b), "sg"]);
        until("ready", || std::fs::read_to_string(&out).unwrap_or_default().contains("ready"));
        let runtime = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let send = |sig| rustix::process::kill_process(runtime, sig).unwrap();
        send(rustix::process::Signal::HUP);
        until("got-hup", || std::fs::read_to_string(&out).unwrap_or_default().contains("got-hup"));
        send(rustix::process::Signal::TERM);
        let status = child.wait().unwrap();
        (status.code(), std::fs::read_to_string(&out).unwrap())
    });
    assert_eq!(obs, (Some(4), "ready\ngot-hup\ngot-term\n".to_owned()));
}

/// `list` (runc's; not a Tier 2 command, but what a user of runc types first) against runc:
/// empty, then a created, a running and a stopped container — ids sorted, status, pid (0
/// once stopped), bundle, rootfs, owner, the table's header and columns, `--quiet`, and the
/// JSON (`null` when empty).
#[test]
fn list_like_runc() {
    require_root!();
    let obs = compare("lst", |tmp, rt| {
        let mut o = Vec::new();
        let empty =
            (rt.run(&["list"]).stdout, rt.run(&["list", "--format", "json"]).stdout, rt.run(&["list", "-q"]).stdout);
        o.push(format!("empty: {:?}", (empty.0.trim_end(), empty.1.trim(), empty.2)));
        let mut bundles = Vec::new();
        for (id, args) in [("ls-b", vec!["sleep", "100"]), ("ls-a", vec!["sleep", "100"]), ("ls-c", vec!["true"])] {
            let b = rt.bundle(tmp, id, &args, |_| {});
            let how: &[&str] = if id == "ls-b" { &["create"] } else { &["run", "--detach"] };
            let mut cmd: Vec<&str> = how.to_vec();
            let bs = b.display().to_string();
            cmd.extend(["--bundle", &bs, id]);
            assert_eq!(rt.run(&cmd).code, 0, "{}: {id}", rt.name);
            bundles.push((id, b));
        }
        assert_eq!(rt.wait_status("ls-c", "stopped"), "stopped");
        o.push(format!("quiet: {:?}", rt.run(&["list", "-q"]).stdout));
        let json: Value = serde_json::from_str(&rt.run(&["list", "--format", "json"]).stdout).unwrap();
        for row in json.as_array().unwrap() {
            let id = row["id"].as_str().unwrap();
            let bundle = &bundles.iter().find(|(b, _)| *b == id).unwrap().1;
            o.push(format!(
                "json: {id} {} pid>0={} bundle-ok={} rootfs-ok={} owner={} created={} version={}",
                row["status"],
                row["pid"].as_u64().unwrap() > 0,
                Path::new(row["bundle"].as_str().unwrap()) == bundle.as_path(),
                row["rootfs"].as_str().unwrap().ends_with("/rootfs"),
                row["owner"],
                row["created"].as_str().is_some_and(|c| c.ends_with('Z') && c.contains('T')),
                row["ociVersion"].is_string(),
            ));
        }
        let table = rt.run(&["list"]).stdout;
        let mut lines = table.lines();
        let header = lines.next().unwrap_or_default().to_owned();
        o.push(format!("header: {:?}", header.split_whitespace().collect::<Vec<_>>()));
        let created_col = header.find("CREATED").unwrap();
        for line in lines {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let at_created = line.get(created_col..).is_some_and(|rest| rest.starts_with(cols[4]));
            o.push(format!("row: {} {} {} owner={} aligned={at_created}", cols[0], cols[1] != "0", cols[2], cols[5]));
        }
        for (id, _) in &bundles {
            rt.run(&["delete", "--force", id]);
        }
        o
    });
    assert_eq!(obs[0], r#"empty: ("ID          PID         STATUS      BUNDLE      CREATED     OWNER", "null", "")"#);
    assert_eq!(obs[1], r#"quiet: "ls-a\nls-b\nls-c\n""#);
    // (The owner's name is the guest's or host's `/etc/passwd`'s: compared with runc only.)
    let owner = |line: &str| line.split(" owner=").nth(1).map(|r| r.split(' ').next().unwrap().to_owned());
    let (json_owner, row_owner) = (owner(&obs[2]).unwrap(), owner(&obs[8]).unwrap());
    assert_eq!(json_owner.trim_matches('"'), row_owner);
    assert_eq!(
        obs[2],
        format!(
            r#"json: ls-a "running" pid>0=true bundle-ok=true rootfs-ok=true owner={json_owner} created=true version=true"#
        )
    );
    assert_eq!(obs[8], format!("row: ls-c false stopped owner={row_owner} aligned=true"));
}

/// `spec` (runc's starting `config.json`) against runc: the same process, root, namespaces,
/// mounts, masked and read-only paths; a second `spec` refuses to overwrite; `--rootless`
/// maps the caller to root in a new user namespace; and the file runs as it is (the process
/// and terminal changed) under nook-oci.
#[test]
fn spec_like_runc() {
    require_root!();
    let sorted = |v: &Value, key: &str| -> Vec<String> {
        let mut out: Vec<String> = v.as_array().map_or(Vec::new(), |a| {
            a.iter().map(|x| if key.is_empty() { x } else { &x[key] }).map(|x| x.as_str().unwrap().to_owned()).collect()
        });
        out.sort();
        out
    };
    let obs = compare("spc", |tmp, rt| {
        let mut o = Vec::new();
        for rootless in [false, true] {
            let dir = tmp.join(format!("{}-spec-{rootless}", rt.name));
            std::fs::create_dir(&dir).unwrap();
            let mut args = vec!["spec", "--bundle", p(&dir)];
            if rootless {
                args.push("--rootless");
            }
            assert_eq!(rt.run(&args).code, 0, "{} {args:?}", rt.name);
            o.push(format!("again: {}", rt.run(&args).code != 0));
            let c: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
            o.push(format!("process: {} {} {}", c["process"]["args"], c["process"]["terminal"], c["root"]["path"]));
            // nook's has a cgroup namespace too, as runc 1.2's (1.1's has none).
            let mut kinds = sorted(&c["linux"]["namespaces"], "type");
            kinds.retain(|k| k != "cgroup");
            o.push(format!("namespaces: {kinds:?}"));
            o.push(format!("mounts: {:?}", sorted(&c["mounts"], "destination")));
            o.push(format!("masked: {:?}", sorted(&c["linux"]["maskedPaths"], "")));
            o.push(format!("readonly: {:?}", sorted(&c["linux"]["readonlyPaths"], "")));
            o.push(format!("uid maps: {}", c["linux"]["uidMappings"]));
        }
        o
    });
    assert!(obs.iter().any(|l| l.contains("\"user\"")), "{obs:?}");
    assert!(obs.iter().any(|l| l.starts_with("uid maps: [{")), "{obs:?}");

    // nook-oci's runs.
    let tmp = TempDir::new("spr").unwrap();
    crate::harness::rootfs(&tmp);
    let rt = runtimes(&tmp, "spr").pop().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nook-oci"))
        .args(["spec", "--bundle", p(tmp.path())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let path = tmp.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["process"]["args"] = json!(["sh", "-c", "echo from-spec; hostname"]);
    c["process"]["terminal"] = json!(false);
    std::fs::write(&path, c.to_string()).unwrap();
    let out = rt.run(&["run", "--bundle", p(tmp.path()), "spr"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "from-spec\nnook\n"), "{out:?}");
}

/// `events` (runc's) against runc: `--stats` prints one event of runc's shape (the keys of
/// `data`; the running container's one process, memory and CPU time counted); the stream
/// prints a stats event each interval (`--interval` a Go duration, as runc's); a deleted
/// container is an error.
#[test]
fn events_like_runc() {
    require_root!();
    let obs = compare("evt", |tmp, rt| {
        let mut o = Vec::new();
        // Limits, so nook's cgroup has the memory and pids controllers on a v1 host too (it
        // joins the hierarchies of its limits only; runc joins them all).
        let b = rt.bundle(tmp, "ev1", &["sleep", "100"], |c| {
            c["linux"]["resources"] = json!({"memory": {"limit": 256 << 20}, "pids": {"limit": 100}});
        });
        assert_eq!(rt.run(&["run", "--detach", "--bundle", p(&b), "ev1"]).code, 0);
        // Right after `run --detach` runc's init may still be on its way to the exec (its
        // threads counted): wait for the one process.
        let stats = || {
            let out = rt.run(&["events", "--stats", "ev1"]);
            let v: Value =
                serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{}: {e}: {out:?}", rt.name));
            (out, v)
        };
        until("one process", || stats().1["data"]["pids"]["current"] == 1);
        let (out, v) = stats();
        let mut keys: Vec<String> = v["data"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        o.push(format!("stats: {} {} {} {keys:?}", out.code, v["type"], v["id"]));
        let data = &v["data"];
        o.push(format!("pids {}", data["pids"]["current"]));
        o.push(format!("memory used {}", data["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0));
        o.push(format!("cpu used {}", data["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0));
        let (mut stream, file, _) = rt.spawn(&["events", "--interval", "1s", "ev1"]);
        until("a streamed event", || std::fs::read_to_string(&file).is_ok_and(|s| s.contains('\n')));
        let _ = stream.kill();
        let _ = stream.wait();
        let text = std::fs::read_to_string(&file).unwrap();
        let first: Value =
            serde_json::from_str(text.lines().next().unwrap()).unwrap_or_else(|e| panic!("{}: {e}: {text:?}", rt.name));
        o.push(format!("stream: {} {}", first["type"], first["data"]["pids"]["current"]));
        assert_eq!(rt.run(&["delete", "--force", "ev1"]).code, 0);
        o.push(format!("deleted: fails {}", rt.run(&["events", "--stats", "ev1"]).code != 0));
        o
    });
    assert_eq!(obs[1..], ["pids 1", "memory used true", "cpu used true", "stream: \"stats\" 1", "deleted: fails true"]);
}

/// `events` reports an OOM in the container's cgroup (`{"type":"oom"}`) and ends when the
/// container stops (runc's stream never ends: nook-oci's alone).
#[test]
fn events_report_an_oom_and_end_with_the_container() {
    require_root!();
    let tmp = TempDir::new("evo").unwrap();
    crate::harness::rootfs(&tmp);
    let rt = runtimes(&tmp, "evo").pop().unwrap();
    let hog = "a=xxxxxxxxxxxxxxxx; while :; do a=$a$a; done";
    let b = rt.bundle(&tmp, "evo", &["sh", "-c", hog], |c| {
        c["linux"]["resources"] = json!({"memory": {"limit": 16 << 20, "swap": 16 << 20}});
    });
    assert_eq!(rt.run(&["create", "--bundle", p(&b), "evo"]).code, 0);
    let (mut stream, file, _) = rt.spawn(&["events", "--interval", "60s", "evo"]);
    assert_eq!(rt.run(&["start", "evo"]).code, 0);
    let deadline = Instant::now() + Duration::from_secs(30 * u64::from(nook_testutil::time_factor()));
    let status = loop {
        if let Some(s) = stream.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = stream.kill();
            panic!("the event stream did not end: {:?}", std::fs::read_to_string(&file));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(status.success(), "{status:?}: {text}");
    let oom = |l: &str| serde_json::from_str::<Value>(l).is_ok_and(|v| v == json!({"type": "oom", "id": "evo"}));
    assert!(text.lines().any(oom), "{text}");
    assert_eq!(rt.run(&["delete", "evo"]).code, 0);
}
