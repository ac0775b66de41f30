//! Rendering a [`LayerStack`] into what overlayfs parses: the `mount(2)` data string
//! ([`LayerStack::mount_data`], [`render_data`]), the option settings one `fsconfig` each
//! ([`OverlayOptions`]' `settings`), and overlayfs's escaping.
//!
//! In `mount(2)` data, and in `upperdir=`/`workdir=` even through `fsconfig`, overlayfs reads
//! `\` as an escape, `:` as a layer separator and `,` as an option separator; all three are
//! escaped with a backslash. `lowerdir+` takes its path verbatim (no escaping).

use std::os::unix::ffi::OsStrExt;

#[cfg(doc)]
use crate::MAX_MOUNT_DATA;
use crate::ValidationError;
use crate::{LayerStack, OverlayOptions, RedirectDir, Upper};

/// The longest value `fsconfig(FSCONFIG_SET_STRING)` accepts (the kernel copies at most 256
/// bytes, NUL included). A longer layer path makes the driver use `mount(2)` instead.
pub(super) const MAX_FSCONFIG_STRING: usize = 255;

impl LayerStack {
    /// The `mount(2)` data string (`lowerdir=TOP:...:BOTTOM,upperdir=..,workdir=..,opts`): the
    /// lowers top first as the kernel wants them, `\`, `:` and `,` escaped with a backslash,
    /// options in a fixed order. Validates first.
    ///
    /// For [`Upper::Tmpfs`] the string has no `upperdir=`/`workdir=`: those dirs exist only
    /// inside the private tmpfs the mount creates. The string may be longer than
    /// [`MAX_MOUNT_DATA`]; the driver's `mount(2)` fallback compacts it (this function does
    /// not). Paths that are not UTF-8 are refused here (the driver itself takes any bytes).
    pub fn mount_data(&self) -> Result<String, ValidationError> {
        self.validate()?;
        let lowers: Vec<&[u8]> = self.lower_dirs().iter().rev().map(|p| p.as_os_str().as_bytes()).collect();
        let upper = match self.upper_layer() {
            Upper::Dir { upper, work } => Some((upper.as_os_str().as_bytes(), work.as_os_str().as_bytes())),
            Upper::None | Upper::Tmpfs { .. } => None,
        };
        let data = render_data(&lowers, upper, self.overlay_options());
        String::from_utf8(data)
            .map_err(|e| ValidationError::NotUtf8 { data: String::from_utf8_lossy(e.as_bytes()).into_owned() })
    }
}

/// Appends `raw` with overlayfs's option escapes (`\`, `:` and `,` get a backslash).
pub(crate) fn escape_into(out: &mut Vec<u8>, raw: &[u8]) {
    let mut start = 0;
    for (i, &b) in raw.iter().enumerate() {
        if matches!(b, b'\\' | b':' | b',') {
            out.extend_from_slice(&raw[start..i]);
            out.push(b'\\');
            start = i;
        }
    }
    out.extend_from_slice(&raw[start..]);
}

/// `raw` escaped for an overlay option value.
pub(crate) fn escaped(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 8);
    escape_into(&mut out, raw);
    out
}

/// Length of `raw` once escaped.
pub(crate) fn escaped_len(raw: &[u8]) -> usize {
    raw.len() + raw.iter().filter(|b| matches!(b, b'\\' | b':' | b',')).count()
}

/// One overlay option as the kernel takes it: `key` alone (a flag) or `key=value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OptionSetting {
    /// The key.
    pub key: &'static str,
    /// The value (`None` for a flag).
    pub value: Option<&'static str>,
    /// `"fsconfig(key=value)"`, for errors.
    pub op: &'static str,
}

impl OverlayOptions {
    /// The options to pass, in a fixed order (`legacy_mount` is ours, not the kernel's).
    pub(crate) fn settings(&self) -> impl Iterator<Item = OptionSetting> {
        let s = |key, value, op| OptionSetting { key, value, op };
        let redirect = self.redirect_dir.map(|r| match r {
            RedirectDir::On => s("redirect_dir", Some("on"), "fsconfig(redirect_dir=on)"),
            RedirectDir::Follow => s("redirect_dir", Some("follow"), "fsconfig(redirect_dir=follow)"),
            RedirectDir::NoFollow => s("redirect_dir", Some("nofollow"), "fsconfig(redirect_dir=nofollow)"),
            RedirectDir::Off => s("redirect_dir", Some("off"), "fsconfig(redirect_dir=off)"),
        });
        let index = self.index.map(|on| match on {
            true => s("index", Some("on"), "fsconfig(index=on)"),
            false => s("index", Some("off"), "fsconfig(index=off)"),
        });
        let metacopy = self.metacopy.map(|on| match on {
            true => s("metacopy", Some("on"), "fsconfig(metacopy=on)"),
            false => s("metacopy", Some("off"), "fsconfig(metacopy=off)"),
        });
        let userxattr = self.userxattr.then(|| s("userxattr", None, "fsconfig(userxattr)"));
        let volatile = self.volatile.then(|| s("volatile", None, "fsconfig(volatile)"));
        [redirect, index, metacopy, userxattr, volatile].into_iter().flatten()
    }
}

/// Renders `mount(2)` data from layer names as given (lowers top first; names are escaped
/// here) and the options.
pub(crate) fn render_data<L: AsRef<[u8]>, U: AsRef<[u8]>>(
    lowers_top_first: &[L],
    upper_work: Option<(U, U)>,
    options: &OverlayOptions,
) -> Vec<u8> {
    let guess: usize = lowers_top_first.iter().map(|l| l.as_ref().len() + 1).sum();
    let mut out = Vec::with_capacity(guess + 128);
    out.extend_from_slice(b"lowerdir=");
    for (i, l) in lowers_top_first.iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        escape_into(&mut out, l.as_ref());
    }
    if let Some((upper, work)) = upper_work {
        out.extend_from_slice(b",upperdir=");
        escape_into(&mut out, upper.as_ref());
        out.extend_from_slice(b",workdir=");
        escape_into(&mut out, work.as_ref());
    }
    for o in options.settings() {
        out.push(b',');
        out.extend_from_slice(o.key.as_bytes());
        if let Some(v) = o.value {
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests;
