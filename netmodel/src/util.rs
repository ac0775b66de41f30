//! Small pure helpers: random ids, gateway computation, MAC formatting.

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::ipam::Pool;

/// 64 random bits. `RandomState` is seeded from the OS once per thread and its keys change
/// with every instance, and SipHash is a keyed PRF, so consecutive values are unpredictable
/// and distinct in practice. Good enough for names and ids (not for secrets).
pub(crate) fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}

/// `n` random hex digits.
pub(crate) fn random_hex(n: usize) -> String {
    let mut s = String::with_capacity(n + 16);
    while s.len() < n {
        s.push_str(&format!("{:016x}", random_u64()));
    }
    s.truncate(n);
    s
}

/// The gateway of a pool: as given, else the first host address of the subnet.
pub(crate) fn pool_gateway(pool: &Pool) -> IpAddr {
    pool.gateway.unwrap_or_else(|| first_host(&pool.subnet))
}

/// The subnet's network address + 1.
pub(crate) fn first_host(net: &IpNet) -> IpAddr {
    match net.network() {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1))),
    }
}

/// Formats a MAC address.
pub(crate) fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_is_hex_and_varies() {
        let a = random_hex(12);
        let b = random_hex(12);
        assert_eq!(a.len(), 12);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(random_hex(64).len(), 64);
    }

    #[test]
    fn gateways() {
        let pool = Pool { subnet: "10.1.2.0/24".parse().unwrap(), gateway: None, range: None };
        assert_eq!(pool_gateway(&pool), "10.1.2.1".parse::<IpAddr>().unwrap());
        let pool =
            Pool { subnet: "fd00:1::/64".parse().unwrap(), gateway: Some("fd00:1::fe".parse().unwrap()), range: None };
        assert_eq!(pool_gateway(&pool), "fd00:1::fe".parse::<IpAddr>().unwrap());
        assert_eq!(mac_string(&[2, 0x42, 0, 1, 0xab, 0xff]), "02:42:00:01:ab:ff");
    }
}
