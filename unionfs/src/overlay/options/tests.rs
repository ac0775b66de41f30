//! Pure tests: option rendering and escaping (no root, no syscalls).

use proptest::prelude::*;

use super::*;

fn stack(lowers: &[&str], upper: Upper) -> LayerStack {
    let mut s = LayerStack::new();
    s.lowers(lowers.iter().copied()).upper(upper);
    s
}

fn dir(upper: &str, work: &str) -> Upper {
    Upper::Dir { upper: upper.into(), work: work.into() }
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
