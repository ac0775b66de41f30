//! The `net_prio` controller (v1 only): a priority per network interface.

use serde::{Deserialize, Serialize};

use super::{Controller, Part, unsupported};
use crate::cgroup::Dir;
use crate::error::{Result, ValidationError};
use crate::hierarchy::Version;

/// Per-interface priorities for net_prio.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NetPrio {
    /// `(interface, priority)` pairs.
    pub ifpriomap: Vec<(String, u32)>,
}

impl NetPrio {
    /// No setting yet (the kernel's defaults); set the fields with the setters.
    pub fn new() -> Self {
        NetPrio::default()
    }

    /// Adds the priority `prio` for interface `ifname`.
    pub fn priority(&mut self, ifname: impl Into<String>, prio: u32) -> &mut Self {
        self.ifpriomap.push((ifname.into(), prio));
        self
    }
}

impl Part for NetPrio {
    fn controller(&self) -> Controller {
        Controller::NetPrio
    }

    fn validate(&self) -> Result<(), ValidationError> {
        for (ifname, _) in &self.ifpriomap {
            if ifname.is_empty() || ifname.len() > 15 || ifname.contains([' ', '/', '\n', '\0']) {
                return Err(ValidationError::Malformed {
                    field: "net_prio.ifpriomap",
                    value: ifname.clone(),
                    reason: "not an interface name (1-15 bytes, no space or /)".to_owned(),
                });
            }
        }
        Ok(())
    }

    fn write(&self, dir: &Dir, version: Version) -> Result<()> {
        if version == Version::V2 {
            return Err(unsupported(Controller::NetPrio, "net_prio.ifpriomap", version));
        }
        for (ifname, prio) in &self.ifpriomap {
            dir.write("net_prio.ifpriomap", &format!("{ifname} {prio}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixture::Fixture;

    #[test]
    fn interface_names_are_checked_and_written_one_per_write() {
        for bad in ["", "a b", "a/b", "sixteen-chars-xx"] {
            let p = NetPrio { ifpriomap: vec![(bad.into(), 1)] };
            assert!(matches!(p.validate(), Err(ValidationError::Malformed { field: "net_prio.ifpriomap", .. })));
        }
        let f = Fixture::new(Version::V1, &[("net_prio.ifpriomap", "")]);
        NetPrio { ifpriomap: vec![("lo".into(), 5)] }.write(&f.dir, Version::V1).unwrap();
        assert_eq!(f.read("net_prio.ifpriomap"), "lo 5");
        assert!(NetPrio::default().write(&f.dir, Version::V2).is_err(), "no v2 equivalent");
    }
}
