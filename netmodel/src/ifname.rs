//! [`IfName`]: an interface name, checked once by the one rule set every part of the crate
//! uses (spec, endpoint options, netlink requests, firewall rules).

use crate::validation::{NameRule, ValidationError};

/// The longest interface name the kernel accepts (`IFNAMSIZ - 1`), in bytes.
pub const MAX_IFNAME: usize = 15;

/// A valid interface (link, bridge) name.
///
/// The rules are the kernel's `dev_valid_name` — 1 to [`MAX_IFNAME`] bytes, not `.` or `..`,
/// no `/`, `:` or whitespace — plus: no control character (NUL included), and no `%` (the
/// kernel would take the name as a template it fills in, e.g. `eth%d`, so no existing link
/// has one).
///
/// ```
/// use nook_netmodel::IfName;
///
/// let name: IfName = "eth0".parse().unwrap();
/// assert_eq!(name.as_str(), "eth0");
/// assert!(IfName::new("a/b").is_err());
/// assert!("0123456789abcdef".parse::<IfName>().is_err()); // 16 bytes
/// ```
///
/// Serialized as a plain string; deserializing checks it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

impl IfName {
    /// Checks `name` and wraps it ([`ValidationError::IfName`] of field `"ifname"`).
    pub fn new(name: impl Into<String>) -> Result<IfName, ValidationError> {
        IfName::for_field("ifname", name)
    }

    /// [`IfName::new`], naming `field` in the error.
    pub(crate) fn for_field(field: &'static str, name: impl Into<String>) -> Result<IfName, ValidationError> {
        let name = name.into();
        match IfName::check(&name) {
            Ok(()) => Ok(IfName(name)),
            Err(rule) => Err(ValidationError::IfName { field, value: name, rule }),
        }
    }

    /// The rule set: the rule `name` breaks, if any.
    pub fn check(name: &str) -> Result<(), NameRule> {
        if name.is_empty() {
            Err(NameRule::Empty)
        } else if name.len() > MAX_IFNAME {
            Err(NameRule::TooLong { max: MAX_IFNAME })
        } else if name == "." || name == ".." {
            Err(NameRule::DotOrDotDot)
        } else if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control()) {
            Err(NameRule::Forbidden { forbidden: "`/`, `:`, whitespace or a control character" })
        } else if name.contains('%') {
            Err(NameRule::Template)
        } else {
            Ok(())
        }
    }
}

crate::checked_name::checked_name!(IfName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_rule_set() {
        for good in ["eth0", "nk0123456789abc", "br-0.1", "veth_x", "a", "é"] {
            assert!(IfName::new(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:1",
            "a b",
            "a\tb",
            "a\u{a0}b",
            "a\0b",
            "a\u{1}b",
            "eth%d",
            "nk0123456789abcd",
            "0123456789abcdef",
            "ééééééé\u{e9}x", // 15 chars, 16 bytes
        ] {
            let e = IfName::new(bad).unwrap_err();
            assert!(matches!(&e, ValidationError::IfName { field: "ifname", value, .. } if value == bad), "{e}");
        }
    }

    #[test]
    fn conversions() {
        let n: IfName = "eth0".parse().unwrap();
        assert_eq!(n, "eth0");
        assert_eq!(n.to_string(), "eth0");
        assert_eq!(IfName::try_from("eth0").unwrap(), n);
        assert_eq!(IfName::try_from(String::from("eth0")).unwrap(), n);
        assert_eq!(n.len(), 4);
        assert_eq!(String::from(n.clone()), "eth0");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"eth0\"");
        assert_eq!(serde_json::from_str::<IfName>("\"eth0\"").unwrap(), n);
        let e = serde_json::from_str::<IfName>("\"a/b\"").unwrap_err();
        assert!(e.to_string().contains("invalid interface name"), "{e}");
    }
}
