//! The modes of `docker run --network=`: as objects ([`NetworkMode`]) and as parsed text
//! ([`NetworkModeName`]).

use std::fmt;
use std::str::FromStr;

use crate::endpoint::EndpointOptions;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::network::Network;
use crate::sandbox::Sandbox;
use crate::validation::ValidationError;

/// How a new sandbox gets its network (see [`Sandbox::new`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum NetworkMode<'a> {
    /// `--network=none`: its own namespace with only `lo`.
    None,
    /// `--network=host`: the host's namespace.
    Host(&'a Host),
    /// `--network=NAME` (`bridge` or a user-defined network): its own namespace, connected to
    /// the network with these options.
    Network(&'a Network, &'a EndpointOptions),
    /// `--network=container:OTHER`: `other`'s namespace.
    Container(&'a Sandbox),
}

/// The text of `--network=`, parsed: what to look up to build a [`NetworkMode`].
///
/// ```
/// use nook_netmodel::NetworkModeName;
///
/// assert_eq!("none".parse::<NetworkModeName>().unwrap(), NetworkModeName::None);
/// assert_eq!("container:web".parse::<NetworkModeName>().unwrap(), NetworkModeName::Container("web".into()));
/// assert_eq!("default".parse::<NetworkModeName>().unwrap(), NetworkModeName::Network("bridge".into()));
/// assert!("container:".parse::<NetworkModeName>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NetworkModeName {
    /// `none`.
    None,
    /// `host`.
    Host,
    /// A network name (`bridge`, the default, is one; `default` means `bridge`).
    Network(String),
    /// `container:NAME_OR_ID`.
    Container(String),
}

impl FromStr for NetworkModeName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Err(ValidationError::NetworkMode { value: s.to_owned() }.into());
        match s {
            "" => bad(),
            "none" => Ok(NetworkModeName::None),
            "host" => Ok(NetworkModeName::Host),
            "default" => Ok(NetworkModeName::Network("bridge".into())),
            _ => match s.strip_prefix("container:") {
                Some("") => bad(),
                Some(other) => Ok(NetworkModeName::Container(other.to_owned())),
                None => {
                    crate::name::NetworkName::validate(s)?;
                    Ok(NetworkModeName::Network(s.to_owned()))
                }
            },
        }
    }
}

impl fmt::Display for NetworkModeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkModeName::None => f.write_str("none"),
            NetworkModeName::Host => f.write_str("host"),
            NetworkModeName::Network(n) => f.write_str(n),
            NetworkModeName::Container(c) => write!(f, "container:{c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        for (text, mode) in [
            ("none", NetworkModeName::None),
            ("host", NetworkModeName::Host),
            ("bridge", NetworkModeName::Network("bridge".into())),
            ("nk-net.1", NetworkModeName::Network("nk-net.1".into())),
            ("container:abc123", NetworkModeName::Container("abc123".into())),
        ] {
            assert_eq!(text.parse::<NetworkModeName>().unwrap(), mode);
            assert_eq!(mode.to_string(), text);
        }
        for bad in ["", "container:", "bad name", "-x"] {
            assert!(bad.parse::<NetworkModeName>().is_err(), "{bad:?}");
        }
    }
}
