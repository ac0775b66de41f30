//! Docker's device-cgroup allowlist as a [`nook_cgroup::DevicePolicy`].
//!
//! Deny by default; read and write of `/dev/null` (1:3), `/dev/zero` (1:5), `/dev/full`
//! (1:7), `/dev/random` (1:8), `/dev/urandom` (1:9), `/dev/tty` (5:0), `/dev/ptmx` (5:2)
//! and the sandbox's pseudo-terminals (136:*). Stricter than Docker/runc in one point, as
//! issue 14 asks: runc also allows `mknod` of every character and block device
//! (`c *:* m`, `b *:* m`) and `rwm` on the listed ones; here `mknod` is denied for every
//! device (a sandbox that needs it adds the rule explicitly).

use nook_cgroup::{DeviceAccess, DevicePolicy, DeviceRule};

/// The character devices a sandbox may read and write by default: (name, major, minor).
pub const DEFAULT_DEVICES: [(&str, u32, u32); 7] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
    ("ptmx", 5, 2),
];

/// The major number of Unix 98 pseudo-terminal slaves (`/dev/pts/*`).
pub const PTS_MAJOR: u32 = 136;

/// The default device policy (see the module docs).
pub fn default_device_policy() -> DevicePolicy {
    let rw = DeviceAccess::READ | DeviceAccess::WRITE;
    let mut rules: Vec<DeviceRule> =
        DEFAULT_DEVICES.iter().map(|&(_, major, minor)| DeviceRule::allow_char(major, minor, rw)).collect();
    let mut pts = DeviceRule::allow_char(PTS_MAJOR, 0, rw);
    pts.minor = None;
    rules.push(pts);
    DevicePolicy::deny_by_default(rules)
}

#[cfg(test)]
mod tests {
    use nook_cgroup::DeviceKind;

    use super::*;

    #[test]
    fn allowlist_and_no_mknod() {
        let p = default_device_policy();
        p.validate().unwrap();
        p.check_v1().unwrap();
        let rw = DeviceAccess::READ | DeviceAccess::WRITE;
        for (_, major, minor) in DEFAULT_DEVICES {
            assert!(p.permits(DeviceKind::Char, major, minor, rw));
            assert!(!p.permits(DeviceKind::Char, major, minor, DeviceAccess::MKNOD));
        }
        assert!(p.permits(DeviceKind::Char, 136, 7, rw));
        // a disk, kmem, /dev/mem, a tun device, any block device: denied
        assert!(!p.permits(DeviceKind::Block, 8, 0, DeviceAccess::READ));
        assert!(!p.permits(DeviceKind::Char, 1, 1, DeviceAccess::READ));
        assert!(!p.permits(DeviceKind::Char, 1, 2, DeviceAccess::READ));
        assert!(!p.permits(DeviceKind::Char, 10, 200, rw));
        assert!(!p.permits(DeviceKind::Char, 5, 1, rw));
        assert!(!p.permits(DeviceKind::Block, 7, 0, DeviceAccess::MKNOD));
        assert!(!p.permits(DeviceKind::Char, 136, 0, DeviceAccess::MKNOD));
    }
}
