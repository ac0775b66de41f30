//! The v2 device controller: a `BPF_PROG_TYPE_CGROUP_DEVICE` program built from a
//! [`DevicePolicy`] and attached to the cgroup directory.

use std::os::fd::OwnedFd;
use std::path::Path;

use crate::devices::DevicePolicy;
use crate::error::Result;

/// Builds the program for `policy`, loads it and attaches it to `dir` (replacing
/// `previous`, the program this handle attached before, if any). Returns the new program's fd.
pub(crate) fn attach_device_policy(dir: &Path, policy: &DevicePolicy, previous: Option<&OwnedFd>) -> Result<OwnedFd> {
    let _ = (dir, policy, previous);
    todo!("helper implements")
}
