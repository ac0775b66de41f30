//! The `devices` controller. Device access rules: the same typed rules drive the v1 `devices` controller
//! (`devices.allow` / `devices.deny`) and, on v2, a `BPF_PROG_TYPE_CGROUP_DEVICE` program
//! built from them (as runc and crun do).
//!
//! Semantics: rules are checked from last to first; the first rule that matches an access
//! decides it; an access no rule matches gets the policy's `default`.
//!
//! One request may combine access types (`open(O_RDWR)` asks the kernel for read and write
//! in a single check): each type is then decided on its own, as above, and the request is
//! allowed only if every type in it is. A `deny c 1:3 w` therefore also refuses an
//! `O_RDWR` open of `/dev/null`, and `allow c 1:* r` plus `allow c 1:3 w` together allow
//! it. A request with no access type (an execute permission check on a device node) is
//! allowed. The v2 BPF program implements exactly [`DevicePolicy::permits`]; the v1
//! `devices` files approximate it (v1 needs one rule covering the whole request, and under
//! a deny default a `deny` only narrows an earlier `allow` of the very same device pattern).

use std::fmt;

use bitflags::bitflags;
use serde::{Deserialize, Serialize};

use super::{Controller, Part};
use crate::cgroup::{Cgroup, Dir};
use crate::error::{Result, SysContext, ValidationError};
use crate::hierarchy::Version;

/// Which devices a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// Every device, character and block (`a`).
    All,
    /// Character devices (`c`).
    Char,
    /// Block devices (`b`).
    Block,
}

impl DeviceKind {
    /// The v1 letter.
    pub const fn letter(self) -> char {
        match self {
            DeviceKind::All => 'a',
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        }
    }
}

bitflags! {
    /// Access types: read, write, mknod.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct DeviceAccess: u8 {
        /// `r`.
        const READ = 0b001;
        /// `w`.
        const WRITE = 0b010;
        /// `m` (mknod).
        const MKNOD = 0b100;
    }
}

impl DeviceAccess {
    /// `rwm`-style text.
    pub fn letters(self) -> String {
        let mut s = String::new();
        for (flag, c) in [(DeviceAccess::READ, 'r'), (DeviceAccess::WRITE, 'w'), (DeviceAccess::MKNOD, 'm')] {
            if self.contains(flag) {
                s.push(c);
            }
        }
        s
    }
}

/// One allow or deny rule. `None` for major/minor means any (`*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceRule {
    /// Allow (true) or deny (false).
    pub allow: bool,
    /// Which kind of device.
    pub kind: DeviceKind,
    /// Major number, or any.
    pub major: Option<u32>,
    /// Minor number, or any.
    pub minor: Option<u32>,
    /// Which accesses.
    pub access: DeviceAccess,
}

impl DeviceRule {
    /// Allows `access` to char device `major:minor`.
    pub fn allow_char(major: u32, minor: u32, access: DeviceAccess) -> Self {
        DeviceRule { allow: true, kind: DeviceKind::Char, major: Some(major), minor: Some(minor), access }
    }

    /// Denies `access` to char device `major:minor`.
    pub fn deny_char(major: u32, minor: u32, access: DeviceAccess) -> Self {
        DeviceRule { allow: false, kind: DeviceKind::Char, major: Some(major), minor: Some(minor), access }
    }

    /// The v1 line: `c 1:3 rwm`.
    pub fn v1_line(&self) -> String {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        match self.kind {
            DeviceKind::All => "a".to_owned(),
            kind => format!("{} {}:{} {}", kind.letter(), num(self.major), num(self.minor), self.access.letters()),
        }
    }

    /// Checks the rule is well formed: some access, and `All` without numbers.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let bad = |reason: &str| {
            Err(ValidationError::Malformed { field: "devices", value: self.to_string(), reason: reason.to_owned() })
        };
        if self.access.is_empty() {
            return bad("no access type (r, w or m)");
        }
        if self.kind == DeviceKind::All && (self.major.is_some() || self.minor.is_some()) {
            return bad("a rule for all devices cannot name a major or minor number");
        }
        if self.major.is_none() && self.minor.is_some() {
            return bad("a minor number needs a major number");
        }
        Ok(())
    }

    /// Whether this rule matches an access of `access` to device `kind major:minor`.
    pub fn matches(&self, kind: DeviceKind, major: u32, minor: u32, access: DeviceAccess) -> bool {
        (self.kind == DeviceKind::All || self.kind == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
            && self.access.contains(access)
    }
}

impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", if self.allow { "allow" } else { "deny" }, self.v1_line())
    }
}

/// A default plus ordered rules (see the module docs for how they combine).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DevicePolicy {
    /// Whether an access that no rule matches is allowed.
    pub default_allow: bool,
    /// The rules; later rules take precedence.
    pub rules: Vec<DeviceRule>,
}

impl DevicePolicy {
    /// Deny everything not allowed by a rule (what containers use).
    pub fn deny_by_default(rules: Vec<DeviceRule>) -> Self {
        DevicePolicy { default_allow: false, rules }
    }

    /// Allow everything not denied by a rule.
    pub fn allow_by_default(rules: Vec<DeviceRule>) -> Self {
        DevicePolicy { default_allow: true, rules }
    }

    /// Adds a rule (after, so taking precedence over, the ones there).
    pub fn rule(&mut self, rule: DeviceRule) -> &mut Self {
        self.rules.push(rule);
        self
    }

    /// Decides an access the way the kernel will (the oracle the BPF program is tested
    /// against): each access type in `access` by the last rule that matches the device and
    /// names that type (else the default); allowed only if every type is. An empty `access`
    /// is allowed.
    pub fn permits(&self, kind: DeviceKind, major: u32, minor: u32, access: DeviceAccess) -> bool {
        access.iter().all(|one| {
            self.rules.iter().rev().find(|r| r.matches(kind, major, minor, one)).map_or(self.default_allow, |r| r.allow)
        })
    }

    /// Checks every rule.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.rules.iter().try_for_each(DeviceRule::validate)
    }

    /// Checks that cgroup v1 can express the policy. v1 keeps one list of exceptions to the
    /// default, and a rule of the default's kind only removes access from an exception with
    /// exactly the same type and numbers: a narrower rule that overlaps a wider earlier
    /// exception (`allow c 1:* rw` then `deny c 1:3 w`) would be silently ignored by the
    /// kernel, so it is an error here. A rule for all devices must grant `rwm` on v1.
    pub fn check_v1(&self) -> Result<(), ValidationError> {
        let bad = |rule: &DeviceRule, reason: &str| {
            Err(ValidationError::Malformed { field: "devices", value: rule.to_string(), reason: reason.to_owned() })
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.kind == DeviceKind::All && rule.access != DeviceAccess::all() {
                return bad(rule, "cgroup v1 can only express a rule for all devices with rwm access");
            }
            if rule.allow == self.default_allow {
                let overlaps_inexactly = self.rules[..i].iter().any(|e| {
                    e.allow != self.default_allow
                        && overlaps(e, rule)
                        && (e.kind, e.major, e.minor) != (rule.kind, rule.major, rule.minor)
                });
                if overlaps_inexactly {
                    return bad(
                        rule,
                        "cgroup v1 cannot narrow an earlier, wider exception (it would be ignored); \
                         list the exact devices instead",
                    );
                }
            }
        }
        Ok(())
    }

    /// The v1 writes, in order: `(file, line)` with file `devices.allow` or `devices.deny`.
    pub fn v1_writes(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![(if self.default_allow { "devices.allow" } else { "devices.deny" }, "a".to_owned())];
        for r in &self.rules {
            out.push((if r.allow { "devices.allow" } else { "devices.deny" }, r.v1_line()));
        }
        out
    }
}

impl Part for DevicePolicy {
    fn controller(&self) -> Controller {
        Controller::Devices
    }

    fn validate(&self) -> Result<(), ValidationError> {
        DevicePolicy::validate(self)
    }

    /// v1: `devices.deny`/`devices.allow` lines. (v2 is a BPF program: see [`Part::apply`].)
    fn write(&self, dir: &Dir, _version: Version) -> Result<()> {
        self.check_v1()?;
        // Each run of lines to the same file through one open file (a deny of everything,
        // then the allowed devices: two opens instead of one per rule).
        let writes = self.v1_writes();
        for run in writes.chunk_by(|a, b| a.0 == b.0) {
            let lines: Vec<&str> = run.iter().map(|(_, line)| line.as_str()).collect();
            dir.write_each(run[0].0, &lines)?;
        }
        Ok(())
    }

    fn apply(&self, cg: &mut Cgroup) -> Result<()> {
        let (dir, version) = cg.require_dir(Controller::Devices)?;
        if version == Version::V1 {
            return self.write(dir, version);
        }
        let fd = dir.fd.try_clone().sys_at("dup", &dir.path)?;
        let old = cg.set_device_program(None);
        match crate::bpf::attach_device_policy(fd, self, old.as_ref()) {
            Ok(prog) => {
                cg.set_device_program(Some(prog));
                Ok(())
            }
            Err(e) => {
                // The old program is still attached: keep its fd so the next update
                // replaces it instead of stacking a second filter.
                cg.set_device_program(old);
                Err(e)
            }
        }
    }
}

/// Whether two rules can match the same device.
fn overlaps(a: &DeviceRule, b: &DeviceRule) -> bool {
    let kinds = a.kind == DeviceKind::All || b.kind == DeviceKind::All || a.kind == b.kind;
    let num = |x: Option<u32>, y: Option<u32>| x.is_none() || y.is_none() || x == y;
    kinds && num(a.major, b.major) && num(a.minor, b.minor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixture::Fixture;

    #[test]
    fn v1_writes_the_default_then_each_rule() {
        // A plain file keeps the last write: one rule per file here (cgroupfs parses each).
        let f = Fixture::new(Version::V1, &[("devices.allow", ""), ("devices.deny", "")]);
        DevicePolicy::deny_by_default(vec![DeviceRule::allow_char(1, 3, DeviceAccess::READ)])
            .write(&f.dir, Version::V1)
            .unwrap();
        assert_eq!((f.read("devices.deny"), f.read("devices.allow")), ("a".to_owned(), "c 1:3 r".to_owned()));
        let rw = DeviceAccess::READ | DeviceAccess::WRITE;
        let wide = DeviceRule { allow: true, kind: DeviceKind::Char, major: Some(1), minor: None, access: rw };
        let narrowing = DevicePolicy::deny_by_default(vec![wide, DeviceRule::deny_char(1, 3, DeviceAccess::WRITE)]);
        let f = Fixture::new(Version::V1, &[("devices.allow", ""), ("devices.deny", "")]);
        assert!(narrowing.write(&f.dir, Version::V1).is_err(), "refused before any write");
        assert_eq!(f.read("devices.deny"), "");
    }

    #[test]
    fn v1_cannot_narrow_a_wider_exception() {
        let rw = DeviceAccess::READ | DeviceAccess::WRITE;
        let wide = DeviceRule { allow: true, kind: DeviceKind::Char, major: Some(1), minor: None, access: rw };
        let narrow = DevicePolicy::deny_by_default(vec![wide, DeviceRule::deny_char(1, 3, DeviceAccess::WRITE)]);
        assert!(narrow.check_v1().is_err());
        let exact = DevicePolicy::deny_by_default(vec![
            DeviceRule::allow_char(1, 3, rw),
            DeviceRule::deny_char(1, 3, DeviceAccess::WRITE),
        ]);
        assert_eq!(exact.check_v1(), Ok(()));
        let unrelated = DevicePolicy::deny_by_default(vec![wide, DeviceRule::deny_char(5, 1, rw)]);
        assert_eq!(unrelated.check_v1(), Ok(()));
        let partial_all = DevicePolicy::allow_by_default(vec![DeviceRule {
            allow: false,
            kind: DeviceKind::All,
            major: None,
            minor: None,
            access: DeviceAccess::MKNOD,
        }]);
        assert!(partial_all.check_v1().is_err());
    }

    #[test]
    fn last_matching_rule_wins() {
        let rw = DeviceAccess::READ | DeviceAccess::WRITE;
        let p = DevicePolicy::deny_by_default(vec![
            DeviceRule { allow: true, kind: DeviceKind::Char, major: Some(1), minor: None, access: rw },
            DeviceRule::deny_char(1, 3, rw),
        ]);
        assert!(p.permits(DeviceKind::Char, 1, 5, DeviceAccess::READ));
        assert!(!p.permits(DeviceKind::Char, 1, 3, DeviceAccess::READ));
        assert!(!p.permits(DeviceKind::Block, 1, 5, DeviceAccess::READ));
        assert!(!p.permits(DeviceKind::Char, 1, 5, DeviceAccess::MKNOD));
        assert!(p.permits(DeviceKind::Char, 1, 5, rw));
        assert!(!p.permits(DeviceKind::Char, 1, 5, DeviceAccess::all()), "mknod is not allowed");
        assert_eq!(p.v1_writes()[2], ("devices.deny", "c 1:3 rw".to_owned()));
    }

    #[test]
    fn combined_accesses_need_every_type() {
        let rw = DeviceAccess::READ | DeviceAccess::WRITE;
        let p = DevicePolicy::allow_by_default(vec![DeviceRule::deny_char(1, 3, DeviceAccess::WRITE)]);
        assert!(p.permits(DeviceKind::Char, 1, 3, DeviceAccess::READ));
        assert!(!p.permits(DeviceKind::Char, 1, 3, rw), "O_RDWR is refused by a write deny");
        assert!(p.permits(DeviceKind::Char, 1, 3, DeviceAccess::empty()));
        let p = DevicePolicy::deny_by_default(vec![
            DeviceRule { allow: true, kind: DeviceKind::Char, major: Some(1), minor: None, access: DeviceAccess::READ },
            DeviceRule::allow_char(1, 3, DeviceAccess::WRITE),
        ]);
        assert!(p.permits(DeviceKind::Char, 1, 3, rw), "read and write each allowed by a rule");
        assert!(!p.permits(DeviceKind::Char, 1, 5, rw));
    }

    #[test]
    fn malformed_rules_are_rejected() {
        let r =
            DeviceRule { allow: true, kind: DeviceKind::All, major: Some(1), minor: None, access: DeviceAccess::READ };
        assert!(r.validate().is_err());
        let r =
            DeviceRule { allow: true, kind: DeviceKind::Char, major: None, minor: Some(1), access: DeviceAccess::READ };
        assert!(r.validate().is_err());
        assert!(DeviceRule::allow_char(1, 3, DeviceAccess::empty()).validate().is_err());
        assert!(DeviceRule::allow_char(1, 3, DeviceAccess::all()).validate().is_ok());
    }
}
