//! One network's state in memory, its JSON form, and the pure allocation logic on it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::validate::{self, ResolvedPool, from_u128, host_range, to_u128};
use super::{Allocation, IpFamily, IpamError, Owner, Pool, Request, ReservedKind};

/// The state file format version.
pub(crate) const VERSION: u32 = 1;

/// A pool with its allocation cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolState {
    pub(crate) subnet: IpNet,
    pub(crate) gateway: IpAddr,
    /// The last address handed out dynamically in this pool.
    pub(crate) cursor: Option<IpAddr>,
    /// Only this part of the subnet is handed out.
    pub(crate) range: Option<IpNet>,
}

/// A network: its pools and allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetworkState {
    pub(crate) name: String,
    pub(crate) pools: Vec<PoolState>,
    pub(crate) allocations: BTreeMap<IpAddr, Owner>,
    /// Being removed ([`super::Ipam::close_network`]): no more allocations.
    pub(crate) closing: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct VersionOnly {
    version: u32,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct NetworkFile {
    version: u32,
    network: String,
    pools: Vec<PoolFile>,
    allocations: Vec<AllocationFile>,
    /// Absent unless set, so the files of open networks keep their version-1 shape.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    closing: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PoolFile {
    subnet: IpNet,
    gateway: IpAddr,
    #[serde(default)]
    cursor: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    range: Option<IpNet>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AllocationFile {
    address: IpAddr,
    owner: Owner,
}

impl NetworkState {
    /// A new network without allocations (pools already validated).
    pub(crate) fn new(name: &str, pools: &[ResolvedPool]) -> NetworkState {
        NetworkState {
            name: name.to_owned(),
            pools: pools
                .iter()
                .map(|p| PoolState { subnet: p.subnet, gateway: p.gateway, cursor: None, range: p.range })
                .collect(),
            allocations: BTreeMap::new(),
            closing: false,
        }
    }

    /// Parses and checks the state file of network `name` read from `path`.
    pub(crate) fn from_json(path: &Path, name: &str, bytes: &[u8]) -> Result<NetworkState, IpamError> {
        let corrupt = |source| IpamError::Corrupt { path: path.to_owned(), source };
        let invalid = |source| IpamError::InvalidState { path: path.to_owned(), source: Box::new(source) };
        let VersionOnly { version } = serde_json::from_slice(bytes).map_err(corrupt)?;
        if version != VERSION {
            return Err(IpamError::UnsupportedVersion { path: path.to_owned(), version, expected: VERSION });
        }
        let file: NetworkFile = serde_json::from_slice(bytes).map_err(corrupt)?;
        if file.network != name {
            return Err(IpamError::NameMismatch { path: path.to_owned(), found: file.network });
        }
        let pools: Vec<Pool> =
            file.pools.iter().map(|p| Pool { range: p.range, ..Pool::with_gateway(p.subnet, p.gateway) }).collect();
        let resolved = validate::resolve_pools(name, &pools).map_err(|e| invalid(e.into()))?;
        let mut state = NetworkState::new(name, &resolved);
        state.closing = file.closing;
        for (pool, f) in state.pools.iter_mut().zip(&file.pools) {
            pool.cursor = f.cursor;
        }
        for a in file.allocations {
            state.check_static(a.address).map_err(invalid)?;
            if state.allocations.insert(a.address, a.owner).is_some() {
                return Err(invalid(IpamError::DuplicateAllocation { network: name.to_owned(), address: a.address }));
            }
        }
        Ok(state)
    }

    /// The state file's content.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let file = NetworkFile {
            version: VERSION,
            network: self.name.clone(),
            pools: self
                .pools
                .iter()
                .map(|p| PoolFile { subnet: p.subnet, gateway: p.gateway, cursor: p.cursor, range: p.range })
                .collect(),
            allocations: self
                .allocations
                .iter()
                .map(|(a, o)| AllocationFile { address: *a, owner: o.clone() })
                .collect(),
            closing: self.closing,
        };
        let mut out = serde_json::to_vec_pretty(&file).expect("IPAM state serializes (no maps with non-string keys)");
        out.push(b'\n');
        out
    }

    fn subnets(&self) -> Vec<IpNet> {
        self.pools.iter().map(|p| p.subnet).collect()
    }

    /// The pool `address` may be allocated from, or why it may not be (outside every pool,
    /// reserved). Does not look at the allocations.
    pub(crate) fn check_static(&self, address: IpAddr) -> Result<usize, IpamError> {
        let Some(i) = self.pools.iter().position(|p| p.subnet.contains(&address)) else {
            return Err(IpamError::AddressOutsidePools {
                network: self.name.clone(),
                address,
                subnets: self.subnets(),
            });
        };
        let pool = &self.pools[i];
        let kind = if address == pool.gateway {
            Some(ReservedKind::Gateway)
        } else {
            validate::reserved_by_subnet(&pool.subnet, address)
        };
        if let Some(kind) = kind {
            return Err(IpamError::AddressReserved { network: self.name.clone(), address, subnet: pool.subnet, kind });
        }
        if let Some(range) = pool.range.filter(|r| !r.contains(&address)) {
            return Err(IpamError::AddressOutsideRange { network: self.name.clone(), address, range });
        }
        Ok(i)
    }

    /// The next free address of pool `i` after its cursor (wrapping), or `None` when full.
    /// Takes at most (allocated in the pool + 2) steps.
    fn next_free(&self, i: usize) -> Option<IpAddr> {
        let pool = &self.pools[i];
        let (first, last) = host_range(&pool.subnet);
        // A range narrows the window (the gateway may lie inside it or not).
        let (first, last) = match pool.range {
            Some(r) => (first.max(to_u128(r.network())), last.min(to_u128(r.broadcast()))),
            None => (first, last),
        };
        if first > last {
            return None;
        }
        let gateway_inside = (first..=last).contains(&to_u128(pool.gateway));
        let in_pool = self.allocations.range(from_u128(&pool.subnet, first)..=from_u128(&pool.subnet, last)).count();
        // The window holds (last - first + 1) addresses, the gateway perhaps among them.
        let capacity = last - first + 1 - u128::from(gateway_inside);
        let used = in_pool as u128;
        if used >= capacity {
            return None;
        }
        let gateway = to_u128(pool.gateway);
        let mut n = match pool.cursor.filter(|c| pool.subnet.contains(c)).map(to_u128) {
            Some(c) if c >= first && c < last => c + 1,
            _ => first,
        };
        // Each step skips the gateway or an allocated address, or finds a free one.
        for _ in 0..used + 2 {
            let candidate = from_u128(&pool.subnet, n);
            if n != gateway && !self.allocations.contains_key(&candidate) {
                return Some(candidate);
            }
            n = if n == last { first } else { n + 1 };
        }
        None
    }

    /// Allocates per `request` (dead owners must have been reclaimed before).
    pub(crate) fn allocate(&mut self, request: Request, owner: &Owner) -> Result<Allocation, IpamError> {
        if self.closing {
            return Err(IpamError::NetworkClosing { network: self.name.clone() });
        }
        let (i, address) = match request {
            Request::Static(address) => {
                let i = self.check_static(address)?;
                if let Some(holder) = self.allocations.get(&address) {
                    return Err(IpamError::AddressInUse { network: self.name.clone(), address, owner: holder.clone() });
                }
                (i, address)
            }
            Request::AnyV4 | Request::AnyV6 => {
                let family = if request == Request::AnyV4 { IpFamily::V4 } else { IpFamily::V6 };
                let candidates: Vec<usize> =
                    (0..self.pools.len()).filter(|&i| IpFamily::of(self.pools[i].gateway) == family).collect();
                if candidates.is_empty() {
                    return Err(IpamError::NoPoolForFamily { network: self.name.clone(), family });
                }
                let found = candidates.iter().find_map(|&i| self.next_free(i).map(|a| (i, a)));
                let Some((i, address)) = found else {
                    return Err(IpamError::Exhausted {
                        network: self.name.clone(),
                        family,
                        subnets: candidates.iter().map(|&i| self.pools[i].subnet).collect(),
                    });
                };
                self.pools[i].cursor = Some(address);
                (i, address)
            }
        };
        self.allocations.insert(address, owner.clone());
        let pool = &self.pools[i];
        Ok(Allocation { address: IpNet::new_assert(address, pool.subnet.prefix_len()), gateway: pool.gateway })
    }

    /// Releases one address; whether it was allocated.
    pub(crate) fn release(&mut self, address: IpAddr) -> bool {
        self.allocations.remove(&address).is_some()
    }

    /// Releases the addresses of `owner`; how many.
    pub(crate) fn release_owner(&mut self, owner: &Owner) -> usize {
        let before = self.allocations.len();
        self.allocations.retain(|_, o| o != owner);
        before - self.allocations.len()
    }

    /// Releases the addresses whose owner `alive` says is gone (asking once per owner); how
    /// many.
    pub(crate) fn reclaim(&mut self, alive: impl FnMut(&Owner) -> bool) -> usize {
        self.reclaim_cached(&mut HashMap::new(), alive)
    }

    /// [`NetworkState::reclaim`], returning the addresses it released.
    pub(crate) fn reclaim_listed(&mut self, mut alive: impl FnMut(&Owner) -> bool) -> Vec<IpAddr> {
        let mut cache: HashMap<Owner, bool> = HashMap::new();
        let mut released = Vec::new();
        self.allocations.retain(|address, o| {
            let verdict = *cache.entry(o.clone()).or_insert_with(|| alive(o));
            if !verdict {
                released.push(*address);
            }
            verdict
        });
        released
    }

    /// [`NetworkState::reclaim`] with a verdict cache shared across networks.
    pub(crate) fn reclaim_cached(
        &mut self,
        cache: &mut HashMap<Owner, bool>,
        mut alive: impl FnMut(&Owner) -> bool,
    ) -> usize {
        let before = self.allocations.len();
        self.allocations.retain(|_, o| {
            if let Some(&verdict) = cache.get(o) {
                return verdict;
            }
            let verdict = alive(o);
            cache.insert(o.clone(), verdict);
            verdict
        });
        before - self.allocations.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn owner(pid: u32) -> Owner {
        Owner::Process { pid, start_time: 1 }
    }

    fn state(pools: &[Pool]) -> NetworkState {
        NetworkState::new("nk-test", &validate::resolve_pools("nk-test", pools).unwrap())
    }

    fn pool(s: &str) -> Pool {
        Pool::new(s.parse().unwrap())
    }

    fn any(st: &mut NetworkState, r: Request) -> IpAddr {
        st.allocate(r, &owner(1)).unwrap().address.addr()
    }

    #[test]
    fn v4_order_skips_gateway_and_never_gives_network_or_broadcast() {
        let mut st = state(&[pool("10.0.0.0/29")]);
        let a = st.allocate(Request::AnyV4, &owner(1)).unwrap();
        assert_eq!(a.address, "10.0.0.2/29".parse::<IpNet>().unwrap());
        assert_eq!(a.gateway, ip("10.0.0.1"));
        let rest: Vec<IpAddr> = (0..4).map(|_| any(&mut st, Request::AnyV4)).collect();
        assert_eq!(rest, ["10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"].map(ip));
        match st.allocate(Request::AnyV4, &owner(1)) {
            Err(e @ IpamError::Exhausted { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("nk-test") && msg.contains("10.0.0.0/29"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_range_limits_dynamic_and_static_addresses() {
        let range: IpNet = "10.0.0.8/30".parse().unwrap();
        let mut st = state(&[pool("10.0.0.0/24").with_range(range)]);
        let got: Vec<IpAddr> = (0..4).map(|_| any(&mut st, Request::AnyV4)).collect();
        assert_eq!(got, ["10.0.0.8", "10.0.0.9", "10.0.0.10", "10.0.0.11"].map(ip));
        assert!(matches!(st.allocate(Request::AnyV4, &owner(1)), Err(IpamError::Exhausted { .. })));
        let e = st.allocate(Request::Static(ip("10.0.0.20")), &owner(1)).unwrap_err();
        assert!(matches!(e, IpamError::AddressOutsideRange { range: r, .. } if r == range), "{e}");
        // The gateway inside the range is skipped; the range survives the state file.
        let mut st = state(&[pool("10.0.0.0/24").with_range("10.0.0.0/30".parse().unwrap())]);
        let got: Vec<IpAddr> = (0..2).map(|_| any(&mut st, Request::AnyV4)).collect();
        assert_eq!(got, ["10.0.0.2", "10.0.0.3"].map(ip));
        assert!(st.allocate(Request::AnyV4, &owner(1)).is_err());
        let back = NetworkState::from_json(Path::new("x"), "nk-test", &st.to_json()).unwrap();
        assert_eq!(back, st);
    }

    #[test]
    fn custom_gateway_is_skipped() {
        let mut st = state(&[Pool::with_gateway("10.0.0.0/29".parse().unwrap(), ip("10.0.0.3"))]);
        let got: Vec<IpAddr> = (0..5).map(|_| any(&mut st, Request::AnyV4)).collect();
        assert_eq!(got, ["10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"].map(ip));
        assert!(st.allocate(Request::AnyV4, &owner(1)).is_err());
    }

    #[test]
    fn released_address_is_not_reused_at_once_and_the_cursor_wraps() {
        let mut st = state(&[pool("10.0.0.0/29")]);
        let a = any(&mut st, Request::AnyV4);
        let b = any(&mut st, Request::AnyV4);
        assert!(st.release(a));
        assert!(!st.release(a), "second release is a no-op");
        let c = any(&mut st, Request::AnyV4);
        assert_ne!(c, a);
        assert_eq!(c, ip("10.0.0.4"));
        // Fill to the end; then the wrap finds the released one.
        let tail: Vec<IpAddr> = (0..2).map(|_| any(&mut st, Request::AnyV4)).collect();
        assert_eq!(tail, [ip("10.0.0.5"), ip("10.0.0.6")]);
        assert_eq!(any(&mut st, Request::AnyV4), a);
        assert!(st.allocations.contains_key(&b));
    }

    #[test]
    fn static_requests() {
        let mut st = state(&[pool("10.0.0.0/24"), pool("fd00::/64")]);
        let a = st.allocate(Request::Static(ip("10.0.0.7")), &owner(1)).unwrap();
        assert_eq!(a.address, "10.0.0.7/24".parse::<IpNet>().unwrap());
        match st.allocate(Request::Static(ip("10.0.0.7")), &owner(2)) {
            Err(IpamError::AddressInUse { owner: o, .. }) => assert_eq!(o, owner(1)),
            other => panic!("{other:?}"),
        }
        for (addr, kind) in [
            ("10.0.0.0", ReservedKind::NetworkAddress),
            ("10.0.0.255", ReservedKind::Broadcast),
            ("10.0.0.1", ReservedKind::Gateway),
            ("fd00::", ReservedKind::SubnetRouterAnycast),
            ("fd00::1", ReservedKind::Gateway),
        ] {
            match st.allocate(Request::Static(ip(addr)), &owner(1)) {
                Err(IpamError::AddressReserved { kind: k, .. }) => assert_eq!(k, kind, "{addr}"),
                other => panic!("{addr}: {other:?}"),
            }
        }
        assert!(matches!(
            st.allocate(Request::Static(ip("10.0.1.1")), &owner(1)),
            Err(IpamError::AddressOutsidePools { .. })
        ));
        // The last IPv6 address is a host address.
        st.allocate(Request::Static(ip("fd00::ffff:ffff:ffff:ffff")), &owner(1)).unwrap();
        // A static address does not move the cursor.
        assert_eq!(any(&mut st, Request::AnyV4), ip("10.0.0.2"));
    }

    #[test]
    fn families_and_missing_pools() {
        let mut st = state(&[pool("10.0.0.0/24")]);
        assert!(matches!(
            st.allocate(Request::AnyV6, &owner(1)),
            Err(IpamError::NoPoolForFamily { family: IpFamily::V6, .. })
        ));
        let mut st = state(&[pool("fd00:1::/64")]);
        let a = st.allocate(Request::AnyV6, &owner(1)).unwrap();
        assert_eq!(a.address, "fd00:1::2/64".parse::<IpNet>().unwrap());
        assert_eq!(a.gateway, ip("fd00:1::1"));
    }

    #[test]
    fn v6_small_subnet_never_gives_the_anycast_address() {
        let mut st = state(&[pool("fd00::/125")]);
        let got: HashSet<IpAddr> = (0..6).map(|_| any(&mut st, Request::AnyV6)).collect();
        let want: HashSet<IpAddr> = (2..=7).map(|i| ip(&format!("fd00::{i}"))).collect();
        assert_eq!(got, want);
        assert!(matches!(st.allocate(Request::AnyV6, &owner(1)), Err(IpamError::Exhausted { .. })));
    }

    #[test]
    fn huge_v6_subnets_are_not_iterated() {
        // A /0 cannot be walked; allocation must only step over the allocated addresses.
        let mut st = state(&[pool("::/0")]);
        let first: Vec<IpAddr> = (0..1000).map(|_| any(&mut st, Request::AnyV6)).collect();
        assert_eq!(first[0], ip("::2"));
        assert_eq!(first[999], ip("::3e9"));
        // Near the end of the space: the cursor wraps to the start and skips the taken ones.
        st.allocate(Request::Static(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")), &owner(1)).unwrap();
        st.pools[0].cursor = Some(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd"));
        assert_eq!(any(&mut st, Request::AnyV6), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(any(&mut st, Request::AnyV6), ip("::3ea"));
    }

    #[test]
    fn several_pools_fill_in_order() {
        let mut st = state(&[pool("10.0.0.0/30"), pool("10.0.1.0/30")]);
        assert_eq!(any(&mut st, Request::AnyV4), ip("10.0.0.2"));
        assert_eq!(any(&mut st, Request::AnyV4), ip("10.0.1.2"));
        match st.allocate(Request::AnyV4, &owner(1)) {
            Err(IpamError::Exhausted { subnets, .. }) => assert_eq!(subnets.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reclaim_asks_once_per_owner() {
        let mut st = state(&[pool("10.0.0.0/24")]);
        for pid in [1, 1, 2, 3, 3, 3] {
            st.allocate(Request::AnyV4, &owner(pid)).unwrap();
        }
        let mut asked = Vec::new();
        let n = st.reclaim(|o| {
            asked.push(o.clone());
            *o != owner(3)
        });
        assert_eq!(n, 3);
        assert_eq!(asked.len(), 3);
        assert_eq!(st.allocations.len(), 3);
        assert_eq!(st.release_owner(&owner(1)), 2);
        assert_eq!(st.release_owner(&owner(1)), 0);
    }

    #[test]
    fn json_round_trip_and_checks() {
        let path = PathBuf::from("/nk/state/nk-test.json");
        let mut st = state(&[pool("10.0.0.0/24"), pool("fd00::/64")]);
        st.allocate(Request::AnyV4, &owner(1)).unwrap();
        st.allocate(Request::AnyV6, &Owner::Netns { path: "/run/netns/nk".into() }).unwrap();
        let json = st.to_json();
        assert_eq!(NetworkState::from_json(&path, "nk-test", &json).unwrap(), st);

        assert!(matches!(NetworkState::from_json(&path, "other", &json), Err(IpamError::NameMismatch { .. })));
        match NetworkState::from_json(&path, "nk-test", b"{\"version\": 1, \"network\": ") {
            Err(e @ IpamError::Corrupt { .. }) => assert!(e.to_string().contains("/nk/state/nk-test.json")),
            other => panic!("{other:?}"),
        }
        let v2 = String::from_utf8(json.clone()).unwrap().replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(
            NetworkState::from_json(&path, "nk-test", v2.as_bytes()),
            Err(IpamError::UnsupportedVersion { version: 2, .. })
        ));
        let gw = String::from_utf8(json.clone()).unwrap().replace("\"10.0.0.2\"", "\"10.0.0.1\"");
        match NetworkState::from_json(&path, "nk-test", gw.as_bytes()) {
            Err(IpamError::InvalidState { source, .. }) => {
                assert!(matches!(*source, IpamError::AddressReserved { kind: ReservedKind::Gateway, .. }))
            }
            other => panic!("{other:?}"),
        }
        let bad_pool = String::from_utf8(json).unwrap().replace("10.0.0.0/24", "10.0.0.0/31");
        assert!(matches!(
            NetworkState::from_json(&path, "nk-test", bad_pool.as_bytes()),
            Err(IpamError::InvalidState { .. })
        ));
    }

    /// The state file cap holds the largest legitimate state with room to spare: a fully
    /// allocated /16 whose owners have the longest pids and start times.
    #[test]
    fn a_full_slash_16_fits_the_cap() {
        let mut st = state(&[pool("10.0.0.0/16")]);
        let worst = Owner::Process { pid: u32::MAX, start_time: u64::MAX };
        // Every host address but the gateway (10.0.0.1), inserted directly (allocating one by
        // one counts the pool each time).
        for n in 2u32..0xffff {
            st.allocations.insert(IpAddr::V4((0x0a00_0000 | n).into()), worst.clone());
        }
        assert_eq!(st.allocations.len(), 65_533);
        assert!(st.allocate(Request::AnyV4, &worst).is_err(), "full");
        let len = st.to_json().len() as u64;
        assert!(len * 2 < super::super::MAX_STATE_FILE, "{len} bytes");
        assert!(len > 8 << 20, "{len} bytes (the docs say about 11 MiB)");
    }
}
