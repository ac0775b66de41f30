//! Pure tests: validation and option rendering (no root, no syscalls).

use std::path::PathBuf;

use proptest::prelude::*;

use super::*;
use crate::error::{PathProblem, StackDir, ValidationError};

fn stack(lowers: &[&str], upper: Upper) -> LayerStack {
    let mut s = LayerStack::new();
    s.lowers(lowers.iter().copied()).upper(upper);
    s
}

fn dir(upper: &str, work: &str) -> Upper {
    Upper::Dir { upper: upper.into(), work: work.into() }
}

#[track_caller]
fn refused(s: &LayerStack, expected: ValidationError) {
    assert_eq!(s.validate(), Err(expected));
}

fn path(field: &'static str, p: &str, problem: PathProblem) -> ValidationError {
    ValidationError::Path { field, path: p.into(), problem }
}

fn overlap(dir: StackDir, p: &str, other: StackDir, other_path: &str) -> ValidationError {
    ValidationError::Overlap { dir, path: p.into(), other, other_path: other_path.into(), same: p == other_path }
}

#[test]
fn layer_counts() {
    refused(&LayerStack::new(), ValidationError::NoLowers);
    refused(&stack(&["/a"], Upper::None), ValidationError::SingleLowerWithoutUpper);
    stack(&["/a"], dir("/u", "/w")).validate().unwrap();
    stack(&["/a"], Upper::Tmpfs { size: None }).validate().unwrap();
    stack(&["/a", "/b"], Upper::None).validate().unwrap();
    let names: Vec<PathBuf> = (0..=MAX_LOWER_LAYERS).map(|i| PathBuf::from(format!("/l/{i}"))).collect();
    let mut s = LayerStack::new();
    s.lowers(names[..MAX_LOWER_LAYERS].iter().cloned());
    s.validate().unwrap();
    s.lower(names[MAX_LOWER_LAYERS].clone());
    refused(&s, ValidationError::TooManyLowers { count: 501 });
    assert!(s.validate().unwrap_err().to_string().contains("at most 500"));
}

#[test]
fn paths_must_be_absolute_clean_and_nul_free() {
    refused(&stack(&["/a", "rel"], Upper::None), path("lower", "rel", PathProblem::Relative));
    refused(&stack(&["/a", ""], Upper::None), path("lower", "", PathProblem::Empty));
    refused(&stack(&["/a", "/b/../c"], Upper::None), path("lower", "/b/../c", PathProblem::ParentDir));
    refused(&stack(&["/a", "/b\0c"], Upper::None), path("lower", "/b\0c", PathProblem::Nul));
    refused(&stack(&["/a"], dir("up", "/w")), path("upper", "up", PathProblem::Relative));
    refused(&stack(&["/a"], dir("/u", "w")), path("work", "w", PathProblem::Relative));
}

#[test]
fn overlapping_dirs_are_refused() {
    use StackDir::{Lower, Upper as U, Work};
    refused(&stack(&["/a", "/b", "/a/"], Upper::None), overlap(Lower(2), "/a", Lower(0), "/a"));
    refused(&stack(&["/a", "/a/sub"], Upper::None), overlap(Lower(1), "/a/sub", Lower(0), "/a"));
    refused(&stack(&["/a/sub", "/a"], Upper::None), overlap(Lower(0), "/a/sub", Lower(1), "/a"));
    refused(&stack(&["/l"], dir("/l/up", "/w")), overlap(U, "/l/up", Lower(0), "/l"));
    refused(&stack(&["/l"], dir("/u", "/u/work")), overlap(Work, "/u/work", U, "/u"));
    refused(&stack(&["/l"], dir("/w/u", "/w")), overlap(U, "/w/u", Work, "/w"));
    refused(&stack(&["/l"], dir("/u", "/u")), overlap(Work, "/u", U, "/u"));
    refused(&stack(&["/s/l"], dir("/s", "/w")), overlap(Lower(0), "/s/l", U, "/s"));
    let msg = stack(&["/l"], dir("/u", "/u/work")).validate().unwrap_err().to_string();
    assert!(msg.contains("the work dir is inside the upper dir"), "{msg}");
    // Siblings with a shared prefix are fine.
    stack(&["/a", "/ab", "/a-b"], dir("/a.u", "/a.w")).validate().unwrap();
}

#[test]
fn tmpfs_size_zero_is_refused() {
    refused(&stack(&["/a"], Upper::Tmpfs { size: Some(0) }), ValidationError::TmpfsSizeZero);
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
        ValidationError::OptionNeedsUpper { option: "volatile" },
    );
    refused(
        &with(Upper::None, OverlayOptions { index: Some(true), ..Default::default() }),
        ValidationError::OptionNeedsUpper { option: "index" },
    );
    with(Upper::None, OverlayOptions { index: Some(false), ..Default::default() }).validate().unwrap();
    with(Upper::None, OverlayOptions { metacopy: Some(true), ..Default::default() }).validate().unwrap();
    for r in [RedirectDir::Off, RedirectDir::Follow, RedirectDir::NoFollow] {
        let o = OverlayOptions { metacopy: Some(true), redirect_dir: Some(r), ..Default::default() };
        refused(&with(up(), o), ValidationError::MetacopyRedirect { redirect_dir: r });
    }
    let o = OverlayOptions { metacopy: Some(true), redirect_dir: Some(RedirectDir::On), ..Default::default() };
    with(up(), o).validate().unwrap();
    let o = OverlayOptions { metacopy: Some(true), userxattr: true, ..Default::default() };
    refused(&with(up(), o), ValidationError::MetacopyUserxattr);
    for r in [RedirectDir::On, RedirectDir::Follow, RedirectDir::Off] {
        let o = OverlayOptions { userxattr: true, redirect_dir: Some(r), ..Default::default() };
        refused(&with(up(), o), ValidationError::UserxattrRedirect { redirect_dir: r });
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
    refused(&stack(&["/", "/a"], Upper::None), overlap(StackDir::Lower(1), "/a", StackDir::Lower(0), "/"));
    refused(
        &stack(&["/a/./b", "/a//b/"], Upper::None),
        overlap(StackDir::Lower(1), "/a/b", StackDir::Lower(0), "/a/b"),
    );
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
