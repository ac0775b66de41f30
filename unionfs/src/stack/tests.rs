//! Pure tests: validation and option rendering (no root, no syscalls).

use std::path::PathBuf;

use proptest::prelude::*;

use super::*;
use crate::Error;

fn stack(lowers: &[&str], upper: Upper) -> LayerStack {
    let mut s = LayerStack::new();
    s.lowers(lowers.iter().copied()).upper(upper);
    s
}

fn dir(upper: &str, work: &str) -> Upper {
    Upper::Dir { upper: upper.into(), work: work.into() }
}

#[track_caller]
fn refused(s: &LayerStack, what: &str, reason_has: &str) {
    match s.validate() {
        Err(Error::Invalid { what: w, reason, value }) => {
            assert_eq!(w, what, "value {value:?}, reason {reason:?}");
            assert!(reason.contains(reason_has), "reason {reason:?} lacks {reason_has:?}");
        }
        other => panic!("expected Invalid({what}), got {other:?}"),
    }
}

#[test]
fn mount_data_lists_lowers_top_first_then_upper_and_options() {
    let mut s = stack(&["/l/bottom", "/l/mid", "/l/top"], dir("/u/up", "/u/work"));
    s.options(OverlayOptions {
        volatile: true,
        index: Some(false),
        metacopy: Some(true),
        redirect_dir: Some(RedirectDir::On),
        userxattr: false,
        legacy_mount: true,
    });
    assert_eq!(
        s.mount_data().unwrap(),
        "lowerdir=/l/top:/l/mid:/l/bottom,upperdir=/u/up,workdir=/u/work,redirect_dir=on,index=off,metacopy=on,volatile"
    );
}

#[test]
fn mount_data_read_only_and_tmpfs_have_no_upperdir() {
    assert_eq!(stack(&["/a", "/b"], Upper::None).mount_data().unwrap(), "lowerdir=/b:/a");
    let mut s = stack(&["/a"], Upper::Tmpfs { size: None });
    s.options(OverlayOptions { userxattr: true, ..Default::default() });
    assert_eq!(s.mount_data().unwrap(), "lowerdir=/a,userxattr");
}

#[test]
fn mount_data_escapes_separators_and_backslashes() {
    let s = stack(&["/l/a:b", "/l/c,d\\e"], dir("/u/x,y", "/u/w:z"));
    assert_eq!(s.mount_data().unwrap(), "lowerdir=/l/c\\,d\\\\e:/l/a\\:b,upperdir=/u/x\\,y,workdir=/u/w\\:z");
    assert_eq!(escaped_len(b"a:b,c\\"), escaped(b"a:b,c\\").len());
}

#[test]
fn layer_counts() {
    refused(&LayerStack::new(), "lowers", "at least one");
    refused(&stack(&["/a"], Upper::None), "lowers", "at least two");
    stack(&["/a"], dir("/u", "/w")).validate().unwrap();
    stack(&["/a"], Upper::Tmpfs { size: None }).validate().unwrap();
    stack(&["/a", "/b"], Upper::None).validate().unwrap();
    let names: Vec<PathBuf> = (0..=MAX_LOWER_LAYERS).map(|i| PathBuf::from(format!("/l/{i}"))).collect();
    let mut s = LayerStack::new();
    s.lowers(names[..MAX_LOWER_LAYERS].iter().cloned());
    s.validate().unwrap();
    s.lower(names[MAX_LOWER_LAYERS].clone());
    refused(&s, "lowers", "at most 500");
}

#[test]
fn paths_must_be_absolute_clean_and_nul_free() {
    refused(&stack(&["/a", "rel"], Upper::None), "lower", "absolute");
    refused(&stack(&["/a", ""], Upper::None), "lower", "empty");
    refused(&stack(&["/a", "/b/../c"], Upper::None), "lower", "..");
    refused(&stack(&["/a", "/b\0c"], Upper::None), "lower", "NUL");
    refused(&stack(&["/a"], dir("up", "/w")), "upper", "absolute");
    refused(&stack(&["/a"], dir("/u", "w")), "work", "absolute");
}

#[test]
fn overlapping_dirs_are_refused() {
    refused(&stack(&["/a", "/b", "/a/"], Upper::None), "lower", "same directory as lower layer 0");
    refused(&stack(&["/a", "/a/sub"], Upper::None), "lower", "inside lower layer 0");
    refused(&stack(&["/a/sub", "/a"], Upper::None), "lower", "inside lower layer 1");
    refused(&stack(&["/l"], dir("/l/up", "/w")), "upper", "inside lower layer 0");
    refused(&stack(&["/l"], dir("/u", "/u/work")), "work", "inside the upper dir");
    refused(&stack(&["/l"], dir("/w/u", "/w")), "upper", "inside the work dir");
    refused(&stack(&["/l"], dir("/u", "/u")), "work", "same directory as the upper dir");
    refused(&stack(&["/s/l"], dir("/s", "/w")), "lower", "inside the upper dir");
    // Siblings with a shared prefix are fine.
    stack(&["/a", "/ab", "/a-b"], dir("/a.u", "/a.w")).validate().unwrap();
}

#[test]
fn tmpfs_size_zero_is_refused() {
    refused(&stack(&["/a"], Upper::Tmpfs { size: Some(0) }), "tmpfs size", "unlimited");
    stack(&["/a"], Upper::Tmpfs { size: Some(1) }).validate().unwrap();
}

#[test]
fn option_conflicts() {
    let with = |upper: Upper, o: OverlayOptions| {
        let mut s = stack(&["/a", "/b"], upper);
        s.options(o);
        s
    };
    let up = || dir("/u", "/w");
    refused(
        &with(Upper::None, OverlayOptions { volatile: true, ..Default::default() }),
        "options.volatile",
        "read-only",
    );
    refused(
        &with(Upper::None, OverlayOptions { index: Some(true), ..Default::default() }),
        "options.index",
        "read-only",
    );
    with(Upper::None, OverlayOptions { index: Some(false), ..Default::default() }).validate().unwrap();
    with(Upper::None, OverlayOptions { metacopy: Some(true), ..Default::default() }).validate().unwrap();
    for r in [RedirectDir::Off, RedirectDir::Follow, RedirectDir::NoFollow] {
        let o = OverlayOptions { metacopy: Some(true), redirect_dir: Some(r), ..Default::default() };
        refused(&with(up(), o), "options.metacopy", "redirect_dir=on");
    }
    let o = OverlayOptions { metacopy: Some(true), redirect_dir: Some(RedirectDir::On), ..Default::default() };
    with(up(), o).validate().unwrap();
    let o = OverlayOptions { metacopy: Some(true), userxattr: true, ..Default::default() };
    refused(&with(up(), o), "options.metacopy", "userxattr");
    for r in [RedirectDir::On, RedirectDir::Follow, RedirectDir::Off] {
        let o = OverlayOptions { userxattr: true, redirect_dir: Some(r), ..Default::default() };
        refused(&with(up(), o), "options.redirect_dir", "nofollow");
    }
    let o = OverlayOptions {
        userxattr: true,
        redirect_dir: Some(RedirectDir::NoFollow),
        index: Some(true),
        ..Default::default()
    };
    with(up(), o).validate().unwrap();
    let o = OverlayOptions { volatile: true, ..Default::default() };
    with(Upper::Tmpfs { size: None }, o).validate().unwrap();
}

#[test]
fn settings_are_flags_or_key_values() {
    let o = OverlayOptions {
        volatile: true,
        index: Some(true),
        metacopy: Some(false),
        redirect_dir: Some(RedirectDir::NoFollow),
        userxattr: true,
        legacy_mount: false,
    };
    let got: Vec<_> = o.settings().map(|s| (s.key, s.value, s.op)).collect();
    assert_eq!(
        got,
        [
            ("redirect_dir", Some("nofollow"), "fsconfig(redirect_dir=nofollow)"),
            ("index", Some("on"), "fsconfig(index=on)"),
            ("metacopy", Some("off"), "fsconfig(metacopy=off)"),
            ("userxattr", None, "fsconfig(userxattr)"),
            ("volatile", None, "fsconfig(volatile)"),
        ]
    );
    assert_eq!(OverlayOptions::default().settings().count(), 0);
}

/// The kernel's parsing of mount(2) data, modelled on fs/overlayfs/params.c: options split
/// at unescaped `,` (ovl_next_opt), lowerdir split at unescaped `:`
/// (ovl_parse_param_split_lowerdirs), then each path unescaped (ovl_unescape).
fn kernel_parse(data: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    fn split(s: &[u8], sep: u8) -> Vec<Vec<u8>> {
        let (mut out, mut cur, mut i) = (Vec::new(), Vec::new(), 0);
        while i < s.len() {
            if s[i] == b'\\' && i + 1 < s.len() {
                cur.extend_from_slice(&s[i..i + 2]);
                i += 2;
                continue;
            }
            if s[i] == sep {
                out.push(std::mem::take(&mut cur));
            } else {
                cur.push(s[i]);
            }
            i += 1;
        }
        out.push(cur);
        out
    }
    fn unescape(s: &[u8]) -> Vec<u8> {
        let (mut out, mut i) = (Vec::new(), 0);
        while i < s.len() {
            if s[i] == b'\\' {
                i += 1;
            }
            if i < s.len() {
                out.push(s[i]);
            }
            i += 1;
        }
        out
    }
    let mut lowers = Vec::new();
    let mut others = Vec::new();
    for opt in split(data, b',') {
        if let Some(v) = opt.strip_prefix(b"lowerdir=") {
            lowers = split(v, b':').iter().map(|l| unescape(l)).collect();
        } else if let Some(v) = opt.strip_prefix(b"upperdir=").or_else(|| opt.strip_prefix(b"workdir=")) {
            others.push(unescape(v));
        }
    }
    (lowers, others)
}

proptest! {
    #[test]
    fn rendered_data_parses_back_to_the_same_paths(
        lowers in proptest::collection::vec("/[a-z:,\\\\ =]{1,12}", 1..8),
        upper in "/[a-z:,\\\\]{1,8}",
    ) {
        let data = render_data(&lowers, Some((upper.as_bytes(), b"/work".as_slice())), &OverlayOptions::default());
        let (parsed, others) = kernel_parse(&data);
        let want: Vec<Vec<u8>> = lowers.iter().map(|l| l.as_bytes().to_vec()).collect();
        prop_assert_eq!(parsed, want);
        prop_assert_eq!(others, vec![upper.as_bytes().to_vec(), b"/work".to_vec()]);
    }
}

#[test]
fn lexical_forms_and_order() {
    let lexical = |p: &'static str| checked_dir("lower", Path::new(p)).unwrap();
    assert!(matches!(lexical("/a/b"), Cow::Borrowed(_)));
    assert!(matches!(lexical("/"), Cow::Borrowed(_)));
    assert!(matches!(lexical("/a/.b/..c/c.."), Cow::Borrowed(_)));
    assert_eq!(&*lexical("/a//b/./c/"), b"/a/b/c");
    assert_eq!(&*lexical("/a/."), b"/a");
    assert_eq!(&*lexical("//"), b"/");
    assert!(checked_dir("lower", Path::new("/a/..")).is_err());
    assert!(checked_dir("lower", Path::new("/a/../b")).is_err());
    let mut v: Vec<&[u8]> = vec![b"/a-b", b"/a/c", b"/a", b"/a.b", b"/", b"/a/b/c"];
    v.sort_by(|a, b| dir_order(a, b));
    assert_eq!(v, [b"/".as_slice(), b"/a", b"/a/b/c", b"/a/c", b"/a-b", b"/a.b"]);
    assert!(is_within(b"/a/b", b"/a") && is_within(b"/a", b"/a") && is_within(b"/a", b"/"));
    assert!(!is_within(b"/ab", b"/a") && !is_within(b"/a", b"/a/b"));
}

#[test]
fn root_and_dot_spellings_overlap() {
    refused(&stack(&["/", "/a"], Upper::None), "lower", "inside lower layer 0");
    refused(&stack(&["/a/./b", "/a//b/"], Upper::None), "lower", "same directory");
}

proptest! {
    /// The fast byte-level overlap check agrees with `Path`'s component logic.
    #[test]
    fn overlap_check_matches_path_semantics(
        paths in proptest::collection::vec("(/(a|b|a-b|\\.|)){1,4}", 2..6),
    ) {
        let paths: Vec<PathBuf> = paths.into_iter().map(PathBuf::from).collect();
        let mut s = LayerStack::new();
        s.lowers(paths.iter().cloned());
        let mut overlap = false;
        for (i, a) in paths.iter().enumerate() {
            for b in &paths[i + 1..] {
                overlap |= a.starts_with(b) || b.starts_with(a);
            }
        }
        prop_assert_eq!(s.validate().is_err(), overlap, "{:?}", paths);
    }
}
