//! nook-oci's own behaviour: refusals that name the field, the version text, json logs.

use std::path::PathBuf;
use std::process::Command;

use nook_testutil::{TempDir, require_root};
use serde_json::json;

use crate::harness::{Runtime, rootfs, runtimes};

fn nook(tmp: &TempDir, tag: &str) -> Runtime {
    runtimes(tmp, tag).pop().unwrap()
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nook-oci"))
}

#[test]
fn version_in_runc_format() {
    let out = Command::new(bin()).arg("--version").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("nook-oci version "), "{text}");
    assert_eq!(lines[2], format!("spec: {}", oci_spec::runtime::VERSION), "{text}");
}

#[test]
fn systemd_cgroup_is_refused() {
    let tmp = TempDir::new("sdc").unwrap();
    let out =
        Command::new(bin()).args(["--systemd-cgroup", "--root"]).arg(tmp.path()).args(["state", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--systemd-cgroup"), "{out:?}");
}

#[test]
fn json_log_has_the_error() {
    let tmp = TempDir::new("log").unwrap();
    let log = tmp.join("log.json");
    let out = Command::new(bin())
        .arg("--root")
        .arg(tmp.path())
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", "nk-nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("nk-nope does not exist"), "{line}");
    assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
}

/// Fields nook cannot honour fail `create`, naming the field, and leave nothing behind.
#[test]
fn unsupported_fields_are_refused_by_name() {
    require_root!();
    let tmp = TempDir::new("ref").unwrap();
    rootfs(&tmp);
    let rt = nook(&tmp, "ref");
    type Tweak = fn(&mut serde_json::Value);
    let cases: [(&str, Tweak); 9] = [
        ("process.ioPriority", |c| c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0})),
        // The rootfs would be set up in (and pivot the root of) nook-oci's own namespace.
        ("linux.namespaces[mount].path", |c| {
            c["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != "mount");
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "mount", "path": "/proc/self/ns/mnt"}));
        }),
        ("linux.uidMappings/gidMappings", |c| {
            c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}))
        }),
        ("mounts[/sys/fs/cgroup]", |c| {
            c["mounts"]
                .as_array_mut()
                .unwrap()
                .push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"}))
        }),
        ("linux.resources.blockIO", |c| c["linux"]["resources"] = json!({"blockIO": {"weight": 10}})),
        ("process.capabilities.ambient", |c| {
            c["process"]["user"]["uid"] = json!(1000);
            c["process"]["capabilities"]["ambient"] = json!(["CAP_KILL"]);
        }),
        ("mounts[/nk-unbindable]", |c| {
            c["mounts"].as_array_mut().unwrap().push(
                json!({"destination": "/nk-unbindable", "type": "bind", "source": "/tmp", "options": ["rbind", "runbindable"]}),
            )
        }),
        ("linux.timeOffsets", |c| c["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 10}})),
        ("linux.timeOffsets.realtime", |c| {
            c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "time"}));
            c["linux"]["timeOffsets"] = json!({"realtime": {"secs": 10}});
        }),
    ];
    for (i, (field, tweak)) in cases.iter().enumerate() {
        let id = format!("ref{i}");
        let b = rt.bundle(&tmp, &id, &["true"], tweak);
        let out = rt.run(&["create", "--bundle", b.to_str().unwrap(), &id]);
        assert_eq!(out.code, 1, "{field}: {out:?}");
        assert!(out.stderr.contains(field), "{field} not named in: {}", out.stderr);
        assert!(!rt.root().join(&id).exists(), "{field}: state left behind");
        assert!(rt.cgroup_dirs(&id).is_empty(), "{field}: cgroup left behind");
    }
}

/// An exec is confined as the container: a process file asking for more is refused.
#[test]
fn exec_with_other_confinement_is_refused() {
    require_root!();
    let tmp = TempDir::new("exr").unwrap();
    rootfs(&tmp);
    let rt = nook(&tmp, "exr");
    let b = rt.bundle(&tmp, "exr", &["sleep", "1000"], |_| {});
    assert_eq!(rt.run(&["create", "--bundle", b.to_str().unwrap(), "exr"]).code, 0);
    let process = tmp.join("process.json");
    let caps = json!(["CAP_SYS_ADMIN"]);
    let doc = json!({
        "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["true"],
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}
    });
    std::fs::write(&process, doc.to_string()).unwrap();
    let out = rt.run(&["exec", "--process", process.to_str().unwrap(), "exr"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("exec process.capabilities"), "{}", out.stderr);
    assert_eq!(rt.run(&["delete", "--force", "exr"]).code, 0);
}

/// `--debug` writes debug lines (json with `--log-format json`) to the log file.
#[test]
fn debug_lines_go_to_the_log() {
    require_root!();
    let tmp = TempDir::new("dbg").unwrap();
    rootfs(&tmp);
    let rt = nook(&tmp, "dbg");
    let b = rt.bundle(&tmp, "dbg", &["sleep", "1000"], |_| {});
    let log = tmp.join("debug.json");
    let log_s = log.to_str().unwrap();
    let out =
        rt.run(&["--debug", "--log", log_s, "--log-format", "json", "create", "--bundle", b.to_str().unwrap(), "dbg"]);
    assert_eq!(out.code, 0, "{out:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["level"], "debug", "{text}");
    assert!(line["msg"].as_str().unwrap().starts_with("created dbg: pid "), "{text}");
    assert_eq!(rt.run(&["delete", "--force", "dbg"]).code, 0);
}

/// `features` lists only mount options a `config.json` may use: each one, on a bind (or, for
/// the time options, a tmpfs), makes a container that runs.
#[test]
fn every_mount_option_features_lists_is_accepted() {
    require_root!();
    let tmp = TempDir::new("mopt").unwrap();
    rootfs(&tmp);
    let rt = nook(&tmp, "mopt");
    let out = Command::new(bin()).arg("features").output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let options: Vec<String> =
        doc["mountOptions"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_owned()).collect();
    assert!(options.iter().any(|o| o == "rshared") && !options.iter().any(|o| o.contains("unbindable")), "{options:?}");
    for (i, option) in options.iter().enumerate() {
        let id = format!("mo{i}");
        let mount = if ["relatime", "strictatime"].contains(&option.as_str()) {
            json!({"destination": "/nk-opt", "type": "tmpfs", "source": "tmpfs", "options": [option]})
        } else {
            json!({"destination": "/nk-opt", "type": "bind", "source": "/tmp", "options": ["rbind", option]})
        };
        let b = rt.bundle(&tmp, &id, &["true"], |c| c["mounts"].as_array_mut().unwrap().push(mount.clone()));
        let out = rt.run(&["run", "--bundle", b.to_str().unwrap(), &id]);
        assert_eq!(out.code, 0, "mount option {option}: {out:?}");
    }
}
