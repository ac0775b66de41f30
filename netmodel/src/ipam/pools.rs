//! Automatic subnets: Docker's default address pools, and the first subnet in them that
//! overlaps nothing in use.

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use super::validate::{from_u128, overlaps, to_u128};
use crate::validation::ValidationError;

/// A range automatic subnets are cut from: `base` split into subnets of prefix length `size`,
/// taken in address order — one entry of Docker's `default-address-pools`
/// (`{"base": "172.17.0.0/16", "size": 16}`).
///
/// ```
/// use nook_netmodel::ipam::AddressPool;
///
/// let pool = AddressPool::new("10.200.0.0/16".parse().unwrap(), 24);
/// assert!(pool.validate().is_ok());
/// assert!(AddressPool::new("10.200.0.0/16".parse().unwrap(), 8).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AddressPool {
    /// The range (no host bits).
    pub base: IpNet,
    /// The prefix length of each subnet cut from it.
    pub size: u8,
}

impl AddressPool {
    /// `base` cut into `/size` subnets.
    pub fn new(base: IpNet, size: u8) -> AddressPool {
        AddressPool { base, size }
    }

    /// No host bits in the base; the size between the base's prefix length and the smallest
    /// subnet IPAM accepts (`/30`, `/126`: a gateway plus one address).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.base.addr() != self.base.network() {
            return Err(ValidationError::HostBits {
                field: "address pool",
                value: self.base,
                network: self.base.trunc(),
            });
        }
        if self.size < self.base.prefix_len() || self.size > self.base.max_prefix_len() - 2 {
            return Err(ValidationError::AddressPoolSize { base: self.base, size: self.size });
        }
        Ok(())
    }

    /// The first `/size` subnet of the pool that overlaps none of `taken`. Skips past each
    /// overlapping range at once, so it takes at most (`taken.len()` + 1) steps however many
    /// subnets the pool holds.
    pub(crate) fn first_free(&self, taken: &[IpNet]) -> Option<IpNet> {
        let base = self.base;
        let step = 1u128 << (base.max_prefix_len() - self.size);
        let end = to_u128(base.broadcast());
        let mut n = to_u128(base.network());
        while n <= end {
            let candidate = IpNet::new(from_u128(&base, n), self.size).expect("size validated");
            let last_overlapping = taken
                .iter()
                .filter(|t| t.addr().is_ipv6() == base.addr().is_ipv6() && overlaps(t, &candidate))
                .map(|t| to_u128(t.broadcast()))
                .max();
            match last_overlapping {
                None => return Some(candidate),
                // The next subnet boundary after the overlapping range.
                Some(last) => match (last / step).checked_add(1).and_then(|k| k.checked_mul(step)) {
                    Some(next) => n = next,
                    None => return None,
                },
            }
        }
        None
    }
}

/// Docker's default address pools: `172.17.0.0/16` … `172.31.0.0/16` as one `/16` each, then
/// `192.168.0.0/16` cut into `/20`s (31 subnets in all).
pub fn default_address_pools() -> Vec<AddressPool> {
    let mut pools: Vec<AddressPool> = (17..=31)
        .map(|b| AddressPool::new(IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(172, b, 0, 0), 16)), 16))
        .collect();
    pools.push(AddressPool::new(IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16)), 20));
    pools
}

/// The first free subnet of `pools`, in order.
pub(crate) fn first_free(pools: &[AddressPool], taken: &[IpNet]) -> Option<IpNet> {
    pools.iter().find_map(|p| p.first_free(taken))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn docker_defaults() {
        let pools = default_address_pools();
        assert_eq!(pools.len(), 16);
        assert_eq!(pools[0], AddressPool::new(net("172.17.0.0/16"), 16));
        assert_eq!(pools[14], AddressPool::new(net("172.31.0.0/16"), 16));
        assert_eq!(pools[15], AddressPool::new(net("192.168.0.0/16"), 20));
        assert!(pools.iter().all(|p| p.validate().is_ok()));
        assert_eq!(first_free(&pools, &[]), Some(net("172.17.0.0/16")));
    }

    #[test]
    fn skips_what_is_taken() {
        let pools = default_address_pools();
        // A route inside the first pool, a network over the second.
        let taken = [net("172.17.5.0/24"), net("172.18.0.0/16")];
        assert_eq!(first_free(&pools, &taken), Some(net("172.19.0.0/16")));
        // Something covering all of 172.16.0.0/12 moves on to 192.168.0.0/20s.
        let taken = [net("172.16.0.0/12"), net("192.168.0.0/20"), net("192.168.17.0/24")];
        assert_eq!(first_free(&pools, &taken), Some(net("192.168.32.0/20")));
        // Everything taken.
        assert_eq!(first_free(&pools, &[net("0.0.0.0/1"), net("128.0.0.0/1")]), None);
        // Other families do not count.
        assert_eq!(first_free(&pools, &[net("::/0")]), Some(net("172.17.0.0/16")));
    }

    #[test]
    fn a_large_ipv6_pool_is_not_iterated() {
        let pool = AddressPool::new(net("fd00::/8"), 64);
        let taken = [net("fd00::/16"), net("fd01::/64")];
        assert_eq!(pool.first_free(&taken), Some(net("fd01:0:0:1::/64")));
        assert_eq!(pool.first_free(&[net("fd00::/8")]), None);
        assert_eq!(AddressPool::new(net("::/0"), 64).first_free(&[net("::/0")]), None);
    }

    #[test]
    fn validation() {
        assert!(matches!(
            AddressPool::new(net("10.0.0.1/16"), 24).validate(),
            Err(ValidationError::HostBits { field: "address pool", .. })
        ));
        for size in [15, 31, 32] {
            let e = AddressPool::new(net("10.0.0.0/16"), size).validate().unwrap_err();
            assert!(matches!(e, ValidationError::AddressPoolSize { size: s, .. } if s == size), "{e}");
        }
        assert!(AddressPool::new(net("10.0.0.0/16"), 30).validate().is_ok());
        assert!(AddressPool::new(net("fd00::/48"), 126).validate().is_ok());
        assert!(AddressPool::new(net("fd00::/48"), 127).validate().is_err());
    }
}
