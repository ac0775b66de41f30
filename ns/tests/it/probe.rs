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

/// The ABI answer agrees with what the kernel does: where a version is reported, a real
/// ruleset (handling `LANDLOCK_ACCESS_FS_EXECUTE`, ABI 1) can be created; where the call is
/// refused, creating one is refused the same way.
#[test]
fn landlock_abi_agrees_with_creating_a_ruleset() {
    #[repr(C)]
    struct RulesetAttr {
        handled_access_fs: u64,
    }
    let attr = RulesetAttr { handled_access_fs: 1 };
    // SAFETY: a valid attribute struct of the size passed; the returned fd is closed below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    };
    let created = if fd >= 0 {
        // SAFETY: closing the descriptor just returned.
        unsafe { libc::close(fd as libc::c_int) };
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error())
    };
    match nook_ns::landlock_abi() {
        Ok(abi) => {
            assert!(abi >= 1, "ABI {abi}");
            assert_eq!(created, Ok(()), "ABI {abi} reported but no ruleset can be created");
        }
        Err(e) => {
            assert!(matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EOPNOTSUPP)), "{e}");
            assert_eq!(created, Err(e.raw_os_error()), "the probe and a real ruleset disagree");
        }
    }
}
