//! Pure, lexical checks on tar entry names and link targets (no syscalls).

use crate::UnsafeEntry;

/// Longest cleaned entry path accepted, in bytes (`PATH_MAX` less the NUL).
pub(crate) const MAX_PATH_BYTES: usize = 4095;
/// Most components a cleaned entry path may have.
pub(crate) const MAX_DEPTH: usize = 1024;
/// Longest single component (`NAME_MAX`).
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// Cleans a tar entry name into `out` (components joined by `/`, no `.`, no `..`, no empty
/// components, no trailing slash; empty for the root itself) and returns its depth.
///
/// Refuses an absolute name ([`UnsafeEntry::Absolute`]), a `..` that climbs above the root
/// ([`UnsafeEntry::ParentDir`]) and names deeper or longer than the limits above
/// ([`UnsafeEntry::TooDeep`]), stopping as soon as a limit is passed (a 10 000-deep name costs
/// no more than the first [`MAX_PATH_BYTES`]).
pub(crate) fn clean_path(raw: &[u8], out: &mut Vec<u8>) -> Result<usize, UnsafeEntry> {
    out.clear();
    if raw.first() == Some(&b'/') {
        return Err(UnsafeEntry::Absolute);
    }
    let mut depth = 0usize;
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if depth == 0 {
                    return Err(UnsafeEntry::ParentDir);
                }
                depth -= 1;
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            name => {
                if name.len() > MAX_NAME_BYTES {
                    return Err(UnsafeEntry::TooDeep);
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(UnsafeEntry::TooDeep);
                }
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(name);
                if out.len() > MAX_PATH_BYTES {
                    return Err(UnsafeEntry::TooDeep);
                }
            }
        }
    }
    Ok(depth)
}

/// Splits a cleaned path into (parent, name); the parent is empty for a top-level entry.
pub(crate) fn split_parent(clean: &[u8]) -> (&[u8], &[u8]) {
    match clean.iter().rposition(|&b| b == b'/') {
        Some(i) => (&clean[..i], &clean[i + 1..]),
        None => (&[], clean),
    }
}

/// Whether a symlink at depth `link_depth` (the depth of the link itself: 1 for a top-level
/// link) with `target` points outside the layer root when resolved lexically from the link's
/// directory.
///
/// Policy (Docker's): an absolute target is fine — inside a container it is resolved against
/// the container's root, and nook never follows it while extracting; a relative target whose
/// `..` climbs above the root at any point is refused.
pub(crate) fn symlink_escapes(link_depth: usize, target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return false;
    }
    // Depth of the directory holding the link.
    let mut depth = link_depth.saturating_sub(1) as isize;
    for comp in target.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(raw: &str) -> Result<(String, usize), UnsafeEntry> {
        let mut out = Vec::new();
        let d = clean_path(raw.as_bytes(), &mut out)?;
        Ok((String::from_utf8(out).unwrap(), d))
    }

    #[test]
    fn cleans_ordinary_names() {
        assert_eq!(clean("etc/passwd").unwrap(), ("etc/passwd".into(), 2));
        assert_eq!(clean("./etc//x/").unwrap(), ("etc/x".into(), 2));
        assert_eq!(clean("./").unwrap(), ("".into(), 0));
        assert_eq!(clean("a/b/../c").unwrap(), ("a/c".into(), 2));
        assert_eq!(clean("a/..").unwrap(), ("".into(), 0));
    }

    #[test]
    fn refuses_climbing_and_absolute() {
        assert_eq!(clean("../../x"), Err(UnsafeEntry::ParentDir));
        assert_eq!(clean("a/../../x"), Err(UnsafeEntry::ParentDir));
        assert_eq!(clean("/etc/passwd"), Err(UnsafeEntry::Absolute));
        assert_eq!(clean("./.."), Err(UnsafeEntry::ParentDir));
    }

    #[test]
    fn refuses_deep_and_long() {
        let deep = "a/".repeat(10_000);
        assert_eq!(clean(&deep), Err(UnsafeEntry::TooDeep));
        let long = "x".repeat(256);
        assert_eq!(clean(&long), Err(UnsafeEntry::TooDeep));
        let ok = format!("{}/y", "x".repeat(255));
        assert!(clean(&ok).is_ok());
        let too_long = vec!["y".repeat(200); 21].join("/");
        assert_eq!(clean(&too_long), Err(UnsafeEntry::TooDeep));
    }

    #[test]
    fn splits() {
        assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_parent(b"c"), (&b""[..], &b"c"[..]));
    }

    #[test]
    fn symlink_policy() {
        assert!(!symlink_escapes(1, b"/"));
        assert!(!symlink_escapes(3, b"/bin/busybox"));
        assert!(symlink_escapes(1, b"../../.."));
        assert!(symlink_escapes(1, b".."));
        assert!(!symlink_escapes(2, b".."));
        assert!(!symlink_escapes(3, b"../../lib/x"));
        assert!(symlink_escapes(3, b"../../../lib/x"));
        assert!(symlink_escapes(2, b"x/../../../y"));
        assert!(!symlink_escapes(1, b"b"));
        assert!(!symlink_escapes(1, b"./a/./b/.."));
    }

    /// Tar names built from components that matter to the cleaner (`.`, `..`, empty, short
    /// names, names with a byte that is not ASCII), sometimes absolute.
    fn raw_name() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let comp = prop_oneof![
            Just(b"".to_vec()),
            Just(b".".to_vec()),
            Just(b"..".to_vec()),
            Just(b"...".to_vec()),
            proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'.'), Just(0xffu8), Just(b'\\')], 1..4),
        ];
        (any::<bool>(), proptest::collection::vec(comp, 0..12)).prop_map(|(abs, comps)| {
            let mut raw = if abs { b"/".to_vec() } else { Vec::new() };
            raw.extend(comps.join(&b'/'));
            raw
        })
    }

    proptest::proptest! {
        /// `clean_path` agrees with a stack model: every accepted name cleans to plain
        /// components (never empty, `.` or `..`), as many as the depth it returns, and a name
        /// whose `..` climbs above the root at any point is refused.
        #[test]
        fn clean_path_matches_a_stack_model(raw in raw_name()) {
            let mut stack: Vec<&[u8]> = Vec::new();
            let mut escapes = false;
            for comp in raw.split(|&b| b == b'/') {
                match comp {
                    b"" | b"." => {}
                    b".." => escapes |= stack.pop().is_none(),
                    name => stack.push(name),
                }
            }
            let mut out = Vec::new();
            match clean_path(&raw, &mut out) {
                Ok(depth) => {
                    proptest::prop_assert!(raw.first() != Some(&b'/'));
                    proptest::prop_assert!(!escapes);
                    proptest::prop_assert_eq!(depth, stack.len());
                    proptest::prop_assert_eq!(out, stack.join(&b'/'));
                }
                Err(UnsafeEntry::Absolute) => proptest::prop_assert!(raw.first() == Some(&b'/')),
                Err(UnsafeEntry::ParentDir) => proptest::prop_assert!(escapes),
                Err(e) => proptest::prop_assert!(false, "{:?}", e),
            }
        }

        /// `symlink_escapes` agrees with resolving the target lexically from the link's dir.
        #[test]
        fn symlink_escapes_matches_a_model(depth in 1usize..5, target in raw_name()) {
            let mut level = depth as isize - 1;
            let mut escapes = false;
            if target.first() != Some(&b'/') {
                for comp in target.split(|&b| b == b'/') {
                    match comp {
                        b"" | b"." => {}
                        b".." => {
                            level -= 1;
                            escapes |= level < 0;
                        }
                        _ => level += 1,
                    }
                }
            }
            proptest::prop_assert_eq!(symlink_escapes(depth, &target), escapes);
        }
    }
}
