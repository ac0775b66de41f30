//! `features`: what this runtime supports, in the runtime spec's features document
//! (oci-spec's `Features`, the shape runc prints) — only what nook honours: the mount
//! options `config.json` mappings accept, the namespaces it can create, the seccomp
//! actions/operators/architectures of the facade's compiler; no AppArmor, SELinux or
//! systemd cgroups (Intel RDT is left out, as runc 1.1 leaves it out).

use oci_spec::runtime::Features;
use serde_json::{Value, json};

use crate::error::Error;

/// The hooks nook-oci runs (see [`crate::hooks`]).
pub(crate) const HOOKS: [&str; 6] =
    ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];

/// The document, as printed.
pub(crate) fn document() -> Result<String, Error> {
    let caps: Vec<&str> = nook_ns::Capability::ALL.iter().map(|c| c.name()).collect();
    let doc = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_spec::runtime::VERSION,
        "hooks": HOOKS,
        // What `config.rs` takes on a bind, tmpfs or cgroup mount (`unbindable` and
        // `runbindable` only as `linux.rootfsPropagation`, not as mount options).
        "mountOptions": ["bind", "nodev", "noexec", "nosuid", "private", "rbind", "relatime", "ro", "rprivate",
            "rshared", "rslave", "rw", "shared", "slave", "strictatime"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"]
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false }
        },
        "annotations": { "org.opencontainers.runtime.nook-oci.version": env!("CARGO_PKG_VERSION") }
    });
    let json = |source| Error::Json { path: "features".into(), source };
    // Through oci-spec's type: the document is the spec's shape, or this fails.
    let typed: Features = serde_json::from_value(doc).map_err(json)?;
    let mut v = serde_json::to_value(&typed).map_err(json)?;
    strip_nulls(&mut v);
    serde_json::to_string_pretty(&v).map_err(json)
}

/// Drops `null` members (oci-spec serializes unset options as null; runc omits them).
fn strip_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, x| !x.is_null());
        m.values_mut().for_each(strip_nulls);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_has_runcs_top_level_shape() {
        let v: serde_json::Value = serde_json::from_str(&super::document().unwrap()).unwrap();
        for key in ["ociVersionMin", "ociVersionMax", "hooks", "mountOptions", "linux", "annotations"] {
            assert!(v.get(key).is_some(), "{key} missing: {v}");
        }
        assert_eq!(v["linux"]["cgroup"]["systemd"], false);
        assert_eq!(v["linux"]["seccomp"]["actions"][0], "SCMP_ACT_ALLOW");
        // Every kind `config.json` may ask to create (user and time included).
        for ns in ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"] {
            assert!(v["linux"]["namespaces"].as_array().unwrap().contains(&ns.into()), "{ns} missing: {v}");
        }
    }
}
