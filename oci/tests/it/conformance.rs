//! Scenarios run against runc and nook-oci; what each observes must be equal (and right).

use std::path::Path;

use nook_testutil::require_root;
use serde_json::json;

use crate::harness::{compare, p};

#[test]
fn lifecycle_created_running_stopped() {
    require_root!();
    let obs = compare("lif", |tmp, rt| {
        let b = rt.bundle(tmp, "life", &["sleep", "1000"], |_| {});
        let pid_file = tmp.join(format!("{}.pid", rt.name));
        let mut o: Vec<String> = Vec::new();
        let c = rt.run(&["create", "--bundle", p(&b), "--pid-file", p(&pid_file), "life"]);
        o.push(format!("create {} {}", c.code, c.stderr.is_empty()));
        let st = rt.state("life").expect("state after create");
        let mut keys: Vec<&str> = st.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        o.push(format!("keys {keys:?}"));
        o.push(format!("status {} id {} bundle-ok {}", st["status"], st["id"], st["bundle"] == json!(p(&b))));
        let pid = st["pid"].as_u64().unwrap();
        let from_file: u64 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        o.push(format!("pid-file-matches {}", pid == from_file && pid > 0));
        o.push(format!("alive {}", Path::new(&format!("/proc/{pid}")).exists()));
        let procs_have_pid = rt.cgroup_dirs("life").iter().any(|d| {
            std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().lines().any(|l| l == pid.to_string())
        });
        o.push(format!("in-its-cgroup {procs_have_pid}"));
        o.push(format!("start {}", rt.run(&["start", "life"]).code));
        o.push(format!("status {}", rt.status("life")));
        o.push(format!("state.pid-unchanged {}", rt.state("life").unwrap()["pid"].as_u64() == Some(pid)));
        o.push(format!("kill {}", rt.run(&["kill", "life", "KILL"]).code));
        o.push(format!("status {}", rt.wait_status("life", "stopped")));
        o.push(format!("stopped-pid {}", rt.state("life").unwrap()["pid"]));
        o.push(format!("delete {}", rt.run(&["delete", "life"]).code));
        o.push(format!("state-after-delete {:?}", rt.state("life").map(|_| ())));
        o.push(format!("cgroup-left {}", !rt.cgroup_dirs("life").is_empty()));
        o
    });
    assert!(obs.contains(&"status \"created\" id \"life\" bundle-ok true".to_owned()), "{obs:#?}");
    for want in ["create 0 true", "start 0", "status running", "kill 0", "status stopped", "stopped-pid 0", "delete 0"]
    {
        assert!(obs.contains(&want.to_owned()), "missing {want:?} in {obs:#?}");
    }
    for want in
        ["pid-file-matches true", "alive true", "in-its-cgroup true", "state-after-delete None", "cgroup-left false"]
    {
        assert!(obs.contains(&want.to_owned()), "missing {want:?} in {obs:#?}");
    }
}

#[test]
fn run_exit_code_and_output() {
    require_root!();
    let obs = compare("run", |tmp, rt| {
        let b = rt.bundle(tmp, "r1", &["sh", "-c", "echo out-$(hostname); echo err >&2; exit 7"], |_| {});
        let out = rt.run(&["run", "--bundle", p(&b), "r1"]);
        // PID 1 ignores a SIGKILL from inside its namespace (the kernel protects a pid
        // namespace's init): both runtimes run the program as PID 1, so it goes on.
        let init = rt.bundle(tmp, "r2", &["sh", "-c", "kill -KILL $$; echo survived $$"], |_| {});
        let k = rt.run(&["run", "--bundle", p(&init), "r2"]);
        // run --detach: create + start, the container lives on.
        let d = rt.bundle(tmp, "r3", &["sleep", "1000"], |_| {});
        let detached = rt.run(&["run", "--detach", "--bundle", p(&d), "r3"]).code;
        let status = rt.status("r3");
        let deleted = rt.run(&["delete", "--force", "r3"]).code;
        (out.code, out.stdout, out.stderr, rt.state("r1").is_none(), k.code, k.stdout, detached, status, deleted)
    });
    assert_eq!(
        obs,
        (
            7,
            "out-runc\n".to_owned(),
            "err\n".to_owned(),
            true,
            0,
            "survived 1\n".to_owned(),
            0,
            "running".to_owned(),
            0
        )
    );
}

#[test]
fn exec_codes_output_and_process_file() {
    require_root!();
    let obs = compare("exe", |tmp, rt| {
        let b = rt.bundle(tmp, "ex", &["sleep", "1000"], |_| {});
        assert_eq!(rt.run(&["create", "--bundle", p(&b), "ex"]).code, 0);
        assert_eq!(rt.run(&["start", "ex"]).code, 0);
        let mut o = Vec::new();
        let e = rt.run(&["exec", "ex", "sh", "-c", "echo in-exec; exit 5"]);
        o.push(format!("{} {:?}", e.code, e.stdout));
        let e = rt.run(&["exec", "--env", "NK_X=42", "--cwd", "/tmp", "ex", "sh", "-c", "echo $NK_X $(pwd)"]);
        o.push(format!("{} {:?}", e.code, e.stdout));
        let e = rt.run(&["exec", "--user", "1000:1001", "ex", "sh", "-c", "echo $(id -u) $(id -g)"]);
        o.push(format!("{} {:?}", e.code, e.stdout));
        let process = tmp.join(format!("{}-process.json", rt.name));
        let doc = json!({
            "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
            "args": ["sh", "-c", "echo from-process-file $NK_P; exit 3"],
            "env": ["PATH=/bin", "NK_P=yes"]
        });
        std::fs::write(&process, doc.to_string()).unwrap();
        let e = rt.run(&["exec", "--process", p(&process), "ex"]);
        o.push(format!("{} {:?}", e.code, e.stdout));
        let pid_file = tmp.join(format!("{}-exec.pid", rt.name));
        let e = rt.run(&["exec", "--detach", "--pid-file", p(&pid_file), "ex", "sleep", "1000"]);
        let pid_ok = std::fs::read_to_string(&pid_file).is_ok_and(|s| s.trim().parse::<u32>().is_ok());
        o.push(format!("detach {} pid-file {pid_ok}", e.code));
        o.push(format!("delete-force {}", rt.run(&["delete", "--force", "ex"]).code));
        o
    });
    assert_eq!(
        obs,
        [
            "5 \"in-exec\\n\"",
            "0 \"42 /tmp\\n\"",
            "0 \"1000 1001\\n\"",
            "3 \"from-process-file yes\\n\"",
            "detach 0 pid-file true",
            "delete-force 0"
        ]
    );
}

#[test]
fn error_cases() {
    require_root!();
    let obs = compare("err", |tmp, rt| {
        let mut o = Vec::new();
        for cmd in
            [&["state", "nk-nope"][..], &["start", "nk-nope"], &["kill", "nk-nope", "KILL"], &["delete", "nk-nope"]]
        {
            o.push(format!("{cmd:?} fails {}", rt.run(cmd).code != 0));
        }
        let b = rt.bundle(tmp, "e1", &["sleep", "1000"], |_| {});
        assert_eq!(rt.run(&["create", "--bundle", p(&b), "e1"]).code, 0);
        o.push(format!("double create fails {}", rt.run(&["create", "--bundle", p(&b), "e1"]).code != 0));
        o.push(format!("still created {}", rt.status("e1")));
        assert_eq!(rt.run(&["start", "e1"]).code, 0);
        o.push(format!("second start fails {}", rt.run(&["start", "e1"]).code != 0));
        o.push(format!("delete running fails {}", rt.run(&["delete", "e1"]).code != 0));
        o.push(format!("still {}", rt.status("e1")));
        o.push(format!("delete --force running {}", rt.run(&["delete", "--force", "e1"]).code));
        o.push(format!("gone {}", rt.state("e1").is_none()));
        // A container that ended by itself: kill fails, delete works.
        let b = rt.bundle(tmp, "e2", &["true"], |_| {});
        assert_eq!(rt.run(&["create", "--bundle", p(&b), "e2"]).code, 0);
        assert_eq!(rt.run(&["start", "e2"]).code, 0);
        o.push(format!("e2 {}", rt.wait_status("e2", "stopped")));
        o.push(format!("kill stopped fails {}", rt.run(&["kill", "e2", "TERM"]).code != 0));
        o.push(format!("delete stopped {}", rt.run(&["delete", "e2"]).code));
        // kill --all of a created container; delete of a created one works without --force.
        let b = rt.bundle(tmp, "e3", &["sleep", "1000"], |_| {});
        assert_eq!(rt.run(&["create", "--bundle", p(&b), "e3"]).code, 0);
        o.push(format!("delete created {}", rt.run(&["delete", "e3"]).code));
        o.push(format!("e3 gone {}", rt.state("e3").is_none()));
        // A program that is not in the rootfs: create fails and leaves nothing.
        let b = rt.bundle(tmp, "e4", &["nk-no-such-program"], |_| {});
        o.push(format!("create of a missing program fails {}", rt.run(&["create", "--bundle", p(&b), "e4"]).code != 0));
        o.push(format!("e4 not there {}", rt.state("e4").is_none()));
        o.push(format!("e4 cgroup gone {}", rt.cgroup_dirs("e4").is_empty()));
        o
    });
    for line in &obs {
        assert!(!line.ends_with("false"), "{obs:#?}");
    }
    assert!(obs.contains(&"still created created".to_owned()) && obs.contains(&"still running".to_owned()), "{obs:#?}");
    assert!(obs.contains(&"delete --force running 0".to_owned()) && obs.contains(&"e2 stopped".to_owned()), "{obs:#?}");
    assert!(obs.contains(&"delete stopped 0".to_owned()) && obs.contains(&"delete created 0".to_owned()), "{obs:#?}");
}

/// The config fields both runtimes honour, seen from inside the container.
#[test]
fn config_fields_seen_inside() {
    require_root!();
    let script = "hostname; echo \"$NK_FOO\"; pwd; id -u; id -g; id -G; ulimit -n; ulimit -Hn; \
        grep -E '^(NoNewPrivs|CapBnd|CapEff|Seccomp):' /proc/self/status; cat /proc/self/oom_score_adj; \
        cat /proc/sys/net/ipv4/ip_forward; (touch /nk-x 2>/dev/null && echo root-rw) || echo root-ro; \
        echo kcore-bytes $(head -c 1 /proc/kcore 2>/dev/null | wc -c); echo acpi-entries $(ls /proc/acpi 2>/dev/null | wc -l); \
        (touch /proc/sys/kernel/nk 2>/dev/null && echo sys-rw) || echo sys-ro; ls /nk-tmp; ls /nk-bind";
    let obs = compare("cfg", |tmp, rt| {
        let share = tmp.join("share");
        std::fs::create_dir_all(&share).unwrap();
        std::fs::write(share.join("nk-file"), "x").unwrap();
        let b = rt.bundle(tmp, "cfg", &["sh", "-c", script], |c| {
            c["hostname"] = json!("nk-probe");
            c["process"]["env"] = json!(["PATH=/bin", "NK_FOO=bar"]);
            c["process"]["cwd"] = json!("/tmp");
            c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [2000, 2001]});
            c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]);
            c["process"]["noNewPrivileges"] = json!(true);
            c["process"]["oomScoreAdj"] = json!(100);
            let caps = json!(["CAP_KILL", "CAP_NET_BIND_SERVICE"]);
            c["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
            c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
            c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/nk-tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]}));
            c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/nk-bind", "type": "bind", "source": share.to_str().unwrap(), "options": ["rbind", "ro"]}));
        });
        let out = rt.run(&["run", "--bundle", p(&b), "cfg"]);
        (out.code, out.stdout)
    });
    assert_eq!(obs.0, 0, "{}", obs.1);
    for want in [
        "nk-probe\nbar\n/tmp\n1000\n1000\n",
        "123\n456\n",
        "NoNewPrivs:\t1",
        "Seccomp:\t0",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000420",
        "100\n1\nroot-ro\nkcore-bytes 0\nacpi-entries 0\n",
        "sys-ro\n",
        "nk-file",
    ] {
        assert!(obs.1.contains(want), "missing {want:?} in:\n{}", obs.1);
    }
}

/// linux.resources (memory, pids, cpu) in the container's cgroup, read from the host.
#[test]
fn resources_in_the_cgroup() {
    require_root!();
    let obs = compare("res", |tmp, rt| {
        let b = rt.bundle(tmp, "res", &["sleep", "1000"], |c| {
            c["linux"]["resources"] = json!({
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"limit": 67108864},
                "pids": {"limit": 42},
                "cpu": {"quota": 50000, "period": 100000}
            });
        });
        assert_eq!(rt.run(&["create", "--bundle", p(&b), "res"]).code, 0);
        let mut o = Vec::new();
        for file in
            ["memory.limit_in_bytes", "memory.max", "pids.max", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.max"]
        {
            for d in rt.cgroup_dirs("res") {
                if let Ok(v) = std::fs::read_to_string(d.join(file)) {
                    o.push(format!("{file}={}", v.trim()));
                }
            }
        }
        o.sort();
        o.dedup();
        assert_eq!(rt.run(&["delete", "--force", "res"]).code, 0);
        o
    });
    let has = |s: &str| obs.iter().any(|l| l == s);
    assert!(has("pids.max=42"), "{obs:?}");
    assert!(has("memory.limit_in_bytes=67108864") || has("memory.max=67108864"), "{obs:?}");
    assert!(has("cpu.cfs_quota_us=50000") || has("cpu.max=50000 100000"), "{obs:?}");
}

/// A program that cannot be exec'd: missing, `create` fails naming it (runc checks it
/// there); found but failing at the exec itself (a script whose interpreter is missing),
/// `create` and `start` succeed, the process writes runc's `exec NAME: no such file or
/// directory` to its stderr and ends with status 1 (what a foreground `run` exits with).
#[test]
fn exec_failures_as_runc() {
    require_root!();
    let obs = compare("xf", |tmp, rt| {
        let script = tmp.join("rootfs/bin/nk-noint");
        std::fs::write(&script, "#!/nk-missing-interpreter\necho hi\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let mut o = Vec::new();
        let b = rt.bundle(tmp, "xf1", &["/nk-missing"], |_| {});
        let out = rt.run(&["create", "--bundle", p(&b), "xf1"]);
        // runc's stderr is logfmt (`exec: \"/nk-missing\": stat …`), nook-oci's plain.
        let names = out.stderr.contains("exec: ") && out.stderr.contains("/nk-missing");
        o.push(format!("missing: create {} names it {names}", out.code));
        o.push(format!("missing: status {}", rt.status("xf1")));
        let b = rt.bundle(tmp, "xf2", &["/bin/nk-noint"], |_| {});
        let (mut create, _, err) = rt.spawn(&["create", "--bundle", p(&b), "xf2"]);
        o.push(format!("script: create {:?}", create.wait().unwrap().code()));
        o.push(format!("script: start {}", rt.run(&["start", "xf2"]).code));
        o.push(format!("script: {}", rt.wait_status("xf2", "stopped")));
        let said = std::fs::read_to_string(err).unwrap();
        o.push(format!("script: says {}", said.contains("exec /bin/nk-noint: no such file or directory")));
        o.push(format!("script: delete {}", rt.run(&["delete", "xf2"]).code));
        let b = rt.bundle(tmp, "xf3", &["/bin/nk-noint"], |_| {});
        let out = rt.run(&["run", "--bundle", p(&b), "xf3"]);
        let said = out.stderr.contains("exec /bin/nk-noint: no such file or directory");
        o.push(format!("script: run {} says {said}", out.code));
        o
    });
    assert_eq!(
        obs,
        [
            "missing: create 1 names it true",
            "missing: status (none)",
            "script: create Some(0)",
            "script: start 0",
            "script: stopped",
            "script: says true",
            "script: delete 0",
            "script: run 1 says true",
        ]
    );
}
