//! The layer tar applier and the whiteout converter.

use std::collections::BTreeSet;
use std::path::Path;

use nook_unionfs::{ApplyOptions, Limits, WhiteoutFormat, apply_layer, convert};

use crate::jail::Jail;
use crate::tree::{Kind, Tree, snapshot};

/// Small bounds: a fuzz input never needs more, and big sparse files would only slow it.
pub fn small_limits() -> Limits {
    let mut l = Limits::default();
    l.max_bytes = 4 << 20;
    l.max_entries = 4096;
    l.ratio_grace = 4 << 20;
    l.max_trailing = 64 << 10;
    l
}

const FORMATS: [WhiteoutFormat; 3] = [WhiteoutFormat::Aufs, WhiteoutFormat::Overlay, WhiteoutFormat::OverlayUserXattr];

/// Input: one selector byte (whiteout format of the apply, target format of the conversion),
/// then the layer (tar, gzip or zstd). Applies it into a fresh dir in the jail; nothing may
/// appear outside that dir. Then converts the layer to another whiteout format and back:
/// a refused conversion leaves the layer as it was, a done one keeps every non-whiteout entry
/// (kind, content, mode, xattrs) and, from an overlay format, adds no whiteout.
pub fn layer_apply(data: &[u8]) {
    let Some((&sel, tar)) = data.split_first() else { return };
    let jail = Jail::get("layer");
    let root = jail.fresh("w");
    let from = match sel % 4 {
        0 => None,
        n => Some(FORMATS[usize::from(n - 1)]),
    };
    let mut options = ApplyOptions::default();
    options.whiteouts = from;
    options.limits = small_limits();
    let applied = apply_layer(tar, &root, options);
    crate::verbose("apply", &applied.as_ref().map(|a| a.entries));
    jail.check();
    if let (Ok(_), Some(from)) = (applied, from) {
        let others: Vec<_> = FORMATS.iter().copied().filter(|f| *f != from).collect();
        let to = others[usize::from(sel / 4) % 2];
        convert_roundtrip(&root, from, to);
        jail.check();
    }
}

/// Converts `root` from `from` to `to` and back, checking the invariants above.
pub fn convert_roundtrip(root: &Path, from: WhiteoutFormat, to: WhiteoutFormat) {
    let before = snapshot(root);
    let converted = convert(root, from, to);
    crate::verbose("convert", &converted);
    if converted.is_err() {
        assert_eq!(snapshot(root), before, "a refused conversion {from:?} -> {to:?} changed the layer");
        return;
    }
    let mid = snapshot(root);
    assert_eq!(content(&mid, to), content(&before, from), "conversion {from:?} -> {to:?} changed content");
    if convert(root, to, from).is_err() {
        assert_eq!(snapshot(root), mid, "a refused conversion {to:?} -> {from:?} changed the layer");
        return;
    }
    let after = snapshot(root);
    assert_eq!(
        content(&after, from),
        content(&before, from),
        "conversion {from:?} -> {to:?} -> {from:?} changed content"
    );
    if from.is_overlay() {
        let (b, a) = (whiteouts(&before, from), whiteouts(&after, from));
        assert!(a.is_subset(&b), "conversion {from:?} -> {to:?} -> {from:?} added whiteouts: {:?}", a.difference(&b));
    }
}

fn base_name(rel: &[u8]) -> &[u8] {
    rel.rsplit(|b| *b == b'/').next().unwrap_or(rel)
}

fn is_whiteout(rel: &[u8], e: &crate::tree::Entry, format: WhiteoutFormat) -> bool {
    match format {
        WhiteoutFormat::Aufs => base_name(rel).starts_with(b".wh."),
        _ => e.kind == Kind::Char(0),
    }
}

/// The entries that are not whiteouts, without overlay's xattrs (and without dir modes of
/// the root, which a conversion does not touch anyway).
fn content(t: &Tree, format: WhiteoutFormat) -> Tree {
    t.iter()
        .filter(|(rel, e)| !is_whiteout(rel, e, format))
        .map(|(rel, e)| {
            let mut e = e.clone();
            e.xattrs.retain(|k, _| !k.starts_with(b"trusted.overlay.") && !k.starts_with(b"user.overlay."));
            (rel.clone(), e)
        })
        .collect()
}

fn whiteouts(t: &Tree, format: WhiteoutFormat) -> BTreeSet<Vec<u8>> {
    t.iter().filter(|(rel, e)| is_whiteout(rel, e, format)).map(|(rel, _)| rel.clone()).collect()
}
