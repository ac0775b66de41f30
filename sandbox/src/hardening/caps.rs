//! The capabilities policy: Docker's default set and Docker's add/drop rules, over a
//! name table of every capability Linux defines (`<linux/capability.h>`, up to
//! `CAP_CHECKPOINT_RESTORE` = 40).
//!
//! Names are accepted as Docker accepts them: with or without the `CAP_` prefix, in any
//! case (`"net_admin"`, `"CAP_NET_ADMIN"`), plus `"ALL"`. A [`CapSet`] is a bit set over
//! the numbers; the mechanism (nook-ns) turns it into the bounding, effective, permitted,
//! inheritable and ambient sets of the child. Capabilities the running kernel does not know
//! (above `/proc/sys/kernel/cap_last_cap`) are the mechanism's business: this table only
//! names them.
//!
//! The table is deliberately thin (name ↔ number): when nook-ns's typed `Capability` enum
//! lands, [`CapSet`] converts to it one number at a time.

use std::fmt;

/// Every capability Linux defines, by number (index = number).
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default set (moby `oci/caps.DefaultCapabilities`), the set a sandbox gets
/// unless the spec says otherwise.
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A capability name that is not in [`CAPABILITIES`] (nor `"ALL"` where that is allowed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {name:?} (in {field})")]
#[non_exhaustive]
pub struct UnknownCapability {
    /// Where the name came from (`"cap_add"`, `"cap_drop"`, `"includes.caps"`, ...).
    pub field: &'static str,
    /// The name as given.
    pub name: String,
}

/// The number of a capability name (`"CAP_SYS_ADMIN"`, `"sys_admin"`, any case), or `None`.
pub fn number(name: &str) -> Option<u8> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    CAPABILITIES.iter().position(|c| *c == full).and_then(|i| u8::try_from(i).ok())
}

/// The canonical name (`CAP_...`) of a capability number, or `None` above the table.
pub fn name(number: u8) -> Option<&'static str> {
    CAPABILITIES.get(usize::from(number)).copied()
}

/// A set of capabilities (bit `n` = capability number `n`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct CapSet(u64);

impl CapSet {
    /// No capability.
    pub const fn empty() -> Self {
        CapSet(0)
    }

    /// Every capability in [`CAPABILITIES`].
    pub const fn all() -> Self {
        CapSet((1u64 << CAPABILITIES.len()) - 1)
    }

    /// Docker's default set ([`DOCKER_DEFAULT`]).
    pub fn docker_default() -> Self {
        let mut set = CapSet::empty();
        for n in DOCKER_DEFAULT {
            set.insert(number(n).unwrap_or(0));
        }
        set
    }

    /// The set as a bit mask (bit `n` = capability `n`), as `capset(2)` takes it.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The set of a bit mask (bits above the table are kept: a newer kernel's capability).
    pub const fn from_bits(bits: u64) -> Self {
        CapSet(bits)
    }

    /// Adds capability `number` (ignored above 63).
    pub fn insert(&mut self, number: u8) {
        if number < 64 {
            self.0 |= 1 << number;
        }
    }

    /// Removes capability `number`.
    pub fn remove(&mut self, number: u8) {
        if number < 64 {
            self.0 &= !(1 << number);
        }
    }

    /// Whether capability `number` is in the set.
    pub const fn contains(self, number: u8) -> bool {
        number < 64 && self.0 & (1 << number) != 0
    }

    /// Whether the capability named `name` is in the set (`false` for an unknown name).
    pub fn contains_name(self, name: &str) -> bool {
        number(name).is_some_and(|n| self.contains(n))
    }

    /// The numbers in the set, ascending.
    pub fn numbers(self) -> impl Iterator<Item = u8> {
        (0u8..64).filter(move |n| self.contains(*n))
    }

    /// The canonical names in the set (numbers above the table are left out).
    pub fn names(self) -> Vec<&'static str> {
        self.numbers().filter_map(name).collect()
    }

    /// A set from names (`"ALL"` means every capability).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, UnknownCapability> {
        let mut set = CapSet::empty();
        for n in names {
            let n = n.as_ref();
            if n.eq_ignore_ascii_case("ALL") {
                set = CapSet::all();
            } else {
                set.insert(number(n).ok_or_else(|| UnknownCapability { field: "capabilities", name: n.to_owned() })?);
            }
        }
        Ok(set)
    }

    /// Docker's `--cap-add` / `--cap-drop` over this base set (moby
    /// `oci/caps.TweakCapabilities`): `"ALL"` in `add` gives every capability except those
    /// in `drop`; otherwise `"ALL"` in `drop` gives exactly `add`; otherwise the base minus
    /// `drop` plus `add` (an add wins over a drop of the same name).
    pub fn tweak<A: AsRef<str>, D: AsRef<str>>(self, add: &[A], drop: &[D]) -> Result<Self, UnknownCapability> {
        let is_all = |s: &str| s.eq_ignore_ascii_case("ALL");
        let parse =
            |field: &'static str, s: &str| number(s).ok_or_else(|| UnknownCapability { field, name: s.to_owned() });
        let mut adds = CapSet::empty();
        let mut add_all = false;
        for a in add {
            if is_all(a.as_ref()) {
                add_all = true;
            } else {
                adds.insert(parse("cap_add", a.as_ref())?);
            }
        }
        let mut drops = CapSet::empty();
        let mut drop_all = false;
        for d in drop {
            if is_all(d.as_ref()) {
                drop_all = true;
            } else {
                drops.insert(parse("cap_drop", d.as_ref())?);
            }
        }
        Ok(if add_all {
            CapSet(CapSet::all().0 & !drops.0)
        } else if drop_all {
            adds
        } else {
            CapSet((self.0 & !drops.0) | adds.0)
        })
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_kernel_numbers() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("sys_admin"), Some(21));
        assert_eq!(number("cap_net_raw"), Some(13));
        assert_eq!(number("CAP_AUDIT_WRITE"), Some(29));
        assert_eq!(number("CAP_BPF"), Some(39));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_NOPE"), None);
        assert_eq!(name(21), Some("CAP_SYS_ADMIN"));
        assert_eq!(name(41), None);
    }

    #[test]
    fn docker_default_is_the_fourteen() {
        let d = CapSet::docker_default();
        assert_eq!(d.names().len(), 14);
        assert!(d.contains_name("NET_RAW") && d.contains_name("AUDIT_WRITE") && d.contains_name("SETPCAP"));
        assert!(!d.contains_name("SYS_ADMIN") && !d.contains_name("NET_ADMIN") && !d.contains_name("SYS_PTRACE"));
        assert!(!d.contains_name("DAC_READ_SEARCH"));
    }

    #[test]
    fn tweak_follows_docker() {
        let base = CapSet::docker_default();
        let t = base.tweak(&["NET_ADMIN"], &["cap_net_raw", "MKNOD"]).unwrap();
        assert!(t.contains_name("NET_ADMIN") && !t.contains_name("NET_RAW") && !t.contains_name("MKNOD"));
        assert!(t.contains_name("CHOWN"));
        // add wins over drop of the same name
        assert!(base.tweak(&["SYS_ADMIN"], &["SYS_ADMIN"]).unwrap().contains_name("SYS_ADMIN"));
        // drop ALL keeps only the adds
        let only = base.tweak(&["KILL"], &["ALL"]).unwrap();
        assert_eq!(only.names(), vec!["CAP_KILL"]);
        // add ALL minus drops
        let all = base.tweak(&["all"], &["SYS_MODULE"]).unwrap();
        assert!(all.contains_name("SYS_ADMIN") && !all.contains_name("SYS_MODULE"));
        assert_eq!(all.names().len(), CAPABILITIES.len() - 1);
        let err = base.tweak(&["CAP_FLY"], &[] as &[&str]).unwrap_err();
        assert_eq!(err, UnknownCapability { field: "cap_add", name: "CAP_FLY".into() });
        assert!(base.tweak(&[] as &[&str], &["bogus"]).is_err());
    }

    #[test]
    fn from_names_and_bits() {
        let s = CapSet::from_names(&["CHOWN", "CAP_KILL"]).unwrap();
        assert_eq!(s.bits(), 1 | 1 << 5);
        assert_eq!(CapSet::from_names(&["ALL"]).unwrap(), CapSet::all());
        assert_eq!(CapSet::from_bits(s.bits()), s);
        assert_eq!(format!("{s:?}"), r#"{"CAP_CHOWN", "CAP_KILL"}"#);
    }
}
