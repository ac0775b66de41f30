//! The `net_cls` controller (v1 only): the class id that tc filters match on.

use serde::{Deserialize, Serialize};

use super::{Controller, Part, unsupported};
use crate::cgroup::Dir;
use crate::error::Result;
use crate::hierarchy::Version;

/// The net_cls class id (`0xAAAABBBB` = tc handle AAAA:BBBB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NetCls {
    /// The class id.
    pub classid: u32,
}

impl NetCls {
    /// The class id `classid` (`0xAAAABBBB` = tc handle AAAA:BBBB).
    pub fn new(classid: u32) -> Self {
        NetCls { classid }
    }
}

impl Part for NetCls {
    fn controller(&self) -> Controller {
        Controller::NetCls
    }

    fn write(&self, dir: &Dir, version: Version) -> Result<()> {
        if version == Version::V2 {
            return Err(unsupported(Controller::NetCls, "net_cls.classid", version));
        }
        dir.write("net_cls.classid", &self.classid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixture::Fixture;

    #[test]
    fn v1_writes_the_classid_and_v2_has_none() {
        let f = Fixture::new(Version::V1, &[("net_cls.classid", "")]);
        NetCls { classid: 0x0010_0001 }.write(&f.dir, Version::V1).unwrap();
        assert_eq!(f.read("net_cls.classid"), "1048577");
        let err = NetCls { classid: 1 }.write(&f.dir, Version::V2).unwrap_err();
        assert!(matches!(err, crate::Error::ControllerUnavailable { controller: Controller::NetCls, .. }), "{err:?}");
    }
}
