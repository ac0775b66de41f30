//! Unit tests that need the crate's internals.

use std::path::{Path, PathBuf};

use super::legacy::common_parent;
use super::*;

#[test]
fn common_parent_is_the_deepest_shared_dir() {
    let p = |v: &[&str]| {
        let v: Vec<&Path> = v.iter().map(Path::new).collect();
        common_parent(&v)
    };
    assert_eq!(p(&["/s/l/1", "/s/l/2", "/s/l/3/x"]), Some(PathBuf::from("/s/l")));
    assert_eq!(p(&["/s/l/1", "/s/m/2"]), Some(PathBuf::from("/s")));
    assert_eq!(p(&["/s/l/1"]), Some(PathBuf::from("/s/l")));
    assert_eq!(p(&["/a/1", "/b/2"]), None);
    assert_eq!(p(&["/a"]), None);
    assert_eq!(p(&[]), None);
}

#[test]
fn log_renders_into_the_error_message() {
    let e = Error::Mount {
        call: "fsconfig(lowerdir+)",
        path: "/l/0".into(),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
        log: vec!["e overlay: too many lower directories, limit is 500".into()],
    };
    let s = e.to_string();
    assert!(s.starts_with("fsconfig(lowerdir+) \"/l/0\": Invalid argument"), "{s}");
    assert!(s.ends_with("(kernel: e overlay: too many lower directories, limit is 500)"), "{s}");
}

/// Past validation, the kernel's own refusal of layer 501 reaches the error with its message.
#[test]
fn kernel_log_message_reaches_the_error() {
    nook_testutil::require_root!();
    if !supports_lowerdir_plus() {
        nook_testutil::skip_unsupported("kernel_log_message_reaches_the_error", "no fsconfig lowerdir+");
        return;
    }
    let tmp = nook_testutil::TempDir::new("ovlog").unwrap();
    let mut stack = LayerStack::new();
    for i in 0..=crate::MAX_LOWER_LAYERS {
        let d = tmp.join(format!("{i}"));
        std::fs::create_dir(&d).unwrap();
        stack.lower(d);
    }
    let err = configure_new_api(&stack, tmp.path(), None).unwrap_err();
    match &err {
        Error::Mount { call: op, path, source, log } => {
            assert_eq!(*op, "fsconfig(lowerdir+)");
            // Fed top first: the 501st given is the bottom layer.
            assert_eq!(path, &tmp.join("0"));
            assert_eq!(source.raw_os_error(), Some(libc::EINVAL));
            assert!(log.iter().any(|m| m.contains("too many lower directories")), "{log:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("limit is 500"), "{err}");
}

mod probe_decision {
    use super::super::probe::{Answer, Answers, CANARY_KEY, KernelSupport, decide};
    use Answer::*;

    fn answers(canary: Answer, lowerdir_plus: Answer, upperdir_fd: Answer) -> Answers {
        Answers { canary, lowerdir_plus, upperdir_fd }
    }

    /// The Linux 6.1 case of issue 20: the legacy wrapper accepts every key, `lowerdir+` too.
    #[test]
    fn a_context_that_accepts_an_unknown_key_is_legacy_whatever_else_it_says() {
        for lp in [Accepted, UnknownKey, BadType, Refused] {
            for fd in [Accepted, UnknownKey, BadType, Refused] {
                let k = decide(answers(Accepted, lp, fd));
                assert_eq!(k, KernelSupport { fsopen: true, ..KernelSupport::NONE }, "{lp:?} {fd:?}");
            }
        }
    }

    #[test]
    fn a_native_context_reports_the_keys_it_knows() {
        // 6.5-6.7: own parser, no lowerdir+.
        let k = decide(answers(UnknownKey, UnknownKey, BadType));
        assert!(k.fsopen && k.native_fs_context && !k.lowerdir_plus && !k.layers_by_fd, "{k:?}");
        // 6.8-6.12: lowerdir+, upperdir only as a string ("Bad value" for a descriptor).
        let k = decide(answers(UnknownKey, Accepted, BadType));
        assert!(k.native_fs_context && k.lowerdir_plus && !k.layers_by_fd, "{k:?}");
        // 6.13/6.14: descriptors, but not O_PATH ones (EBADF).
        assert!(!decide(answers(UnknownKey, Accepted, BadType)).layers_by_fd);
        // 6.15+: O_PATH descriptors accepted, or the key known and the dir refused.
        for fd in [Accepted, Refused] {
            let k = decide(answers(UnknownKey, Accepted, fd));
            assert!(k.lowerdir_plus && k.layers_by_fd, "{fd:?}: {k:?}");
        }
        // A known key whose probe value was refused ("/" as a layer) is still supported.
        assert!(decide(answers(UnknownKey, Refused, BadType)).lowerdir_plus);
    }

    #[test]
    fn a_canary_refused_for_another_reason_reports_nothing_native() {
        for canary in [BadType, Refused] {
            let k = decide(answers(canary, Accepted, Accepted));
            assert_eq!(k, KernelSupport { fsopen: true, ..KernelSupport::NONE }, "{canary:?}");
        }
    }

    #[test]
    fn answers_are_classified_by_errno_and_log() {
        use rustix::io::Errno;
        let log = |m: &str| vec![m.to_owned()];
        assert_eq!(Answer::of(Ok(()), &[]), Accepted);
        let unknown = log(&format!("e overlay: Unknown parameter '{CANARY_KEY}'"));
        assert_eq!(Answer::of(Err(Errno::INVAL), &unknown), UnknownKey);
        assert_eq!(Answer::of(Err(Errno::INVAL), &log("e overlay: Bad value for 'upperdir'")), BadType);
        assert_eq!(Answer::of(Err(Errno::BADF), &[]), BadType);
        assert_eq!(Answer::of(Err(Errno::INVAL), &log("e overlay: failed to resolve '/x': -2")), Refused);
        assert_eq!(Answer::of(Err(Errno::INVAL), &[]), Refused);
        assert_eq!(Answer::of(Err(Errno::NOENT), &unknown), Refused);
    }
}
