//! `nook_ns::probe()` on the running kernel (6.18 on the CI host, 6.1 in the VM lane): every
//! feature the crate uses is found, and what it reports agrees with what the kernel does.

use nook_ns::{Command, Namespace, NamespaceSet};

/// Everything nook-ns uses exists on the tested kernels (all since 5.12 or earlier). The probes
/// need no privilege; `setns` with a pidfd says `EPERM` without `CAP_SYS_ADMIN`, still "known".
#[test]
fn every_feature_is_found_on_the_tested_kernels() {
    let k = nook_ns::probe();
    assert!(k.clone3 && k.clone_into_cgroup && k.pidfd_open && k.pidfd_send_signal, "{k:?}");
    assert!(k.waitid_pidfd && k.mount_setattr && k.setns_pidfd, "{k:?}");
    for kind in Namespace::ALL {
        assert!(k.namespaces.has(kind), "{kind:?}: {k:?}");
    }
    assert_eq!(nook_ns::probe(), k, "cached");
}

/// The namespace kinds reported are the ones a child can be given.
#[test]
fn reported_namespaces_can_be_created() {
    nook_testutil::require_root!();
    let k = nook_ns::probe();
    let set: NamespaceSet = k.namespaces.kinds().filter(|n| *n != Namespace::User).collect();
    let status = Command::new("/bin/true").namespaces(set).spawn().unwrap().wait().unwrap();
    assert!(status.success(), "{status:?}");
}
