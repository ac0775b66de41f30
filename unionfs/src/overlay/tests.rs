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
        op: "fsconfig(lowerdir+)",
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
        Error::Mount { op, path, source, log } => {
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
