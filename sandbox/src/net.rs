//! Networking of a sandbox through `nook-netmodel` ([`crate::NetworkMode::Networks`]).
//!
//! The sandbox's init is cloned, paused, into a new network namespace; while it waits, the
//! facade adopts that namespace as a `nook_netmodel::Sandbox` ([`nook_netmodel::Sandbox::adopt`])
//! and connects it to each network in order (addresses from IPAM, the link created inside the
//! namespace, default route, published ports). `/etc/hosts` (its own addresses and its peers)
//! and `/etc/resolv.conf` are files in a private directory on the host
//! ([`NET_FILES_DIR`]`/<unique>`), bind-mounted read-only over the sandbox's: they are
//! named before the plan is built, created empty (once in the owner record) before the
//! clone, and filled in place once the addresses are known, before the child is released. Each endpoint is in the owner record
//! before it is connected, and its addresses and port rules once it is (see `attach`, and
//! "Dies with its owner" in the crate docs). Teardown, after the run or on `remove`: the
//! network sandbox (published ports, addresses back to IPAM, the namespace handle; the
//! kernel deletes the links with the namespace), then the files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nook_netmodel::files::DnsConfig;
use nook_netmodel::{EgressPolicy, Endpoint, EndpointOptions, Network};
use serde::{Deserialize, Serialize};

use nook_netmodel::ipam::Owner;

use crate::error::{Error, Result, ValidationError};
use crate::owner::Recorder;
use crate::spec::Mount;
use crate::state::Object;

/// Where the per-sandbox `/etc/hosts` and `/etc/resolv.conf` files live on the host (one
/// directory per sandbox, removed with it).
pub const NET_FILES_DIR: &str = "/run/nook/netfiles";

/// The networks a sandbox joins ([`crate::NetworkMode::Networks`]) and its resolver.
///
/// ```
/// use nook_netmodel::EndpointOptions;
/// use nook_netmodel::firewall::PortMapping;
/// use nook_sandbox::NetworkConfig;
///
/// let mut web = EndpointOptions::new();
/// web.port(PortMapping::tcp(8080, 80)).alias("web");
/// let mut config = NetworkConfig::new();
/// config.attach("front", web).attach("back", EndpointOptions::new());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct NetworkConfig {
    /// The networks, in order: the first gets `eth0` (and the default route of each family
    /// it has), the next `eth1`, ... unless an interface name is set.
    pub networks: Vec<NetworkAttachment>,
    /// The sandbox's `/etc/resolv.conf` (`--dns`, `--dns-search`, `--dns-option`), written
    /// as given. `None`: on a user-defined network, the embedded DNS server
    /// (`nameserver 127.0.0.11`, with the host's search domains and options; see
    /// `nook_netmodel::dns`); elsewhere the host's, with resolvers the sandbox cannot reach
    /// (loopback) dropped ([`DnsConfig::from_host`]).
    pub dns: Option<DnsConfig>,
    /// A fail-closed egress policy (`nook_netmodel::egress`): the sandbox reaches only the
    /// destinations and names it allows; everything else it sends is rejected by the host's
    /// firewall, bound to its bridge ports before its init is released. Names resolve
    /// through the embedded DNS of user-defined networks. `None`: no policy.
    pub egress: Option<EgressPolicy>,
}

/// One network of a sandbox: its name and the endpoint's options (static addresses,
/// published ports, aliases, interface name, MAC).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct NetworkAttachment {
    /// The network's name (as created: [`Network::name`]).
    pub network: String,
    /// How to connect.
    pub options: EndpointOptions,
}

impl NetworkAttachment {
    /// `network` with `options`.
    pub fn new(network: impl Into<String>, options: EndpointOptions) -> NetworkAttachment {
        NetworkAttachment { network: network.into(), options }
    }
}

impl NetworkConfig {
    /// No network yet, the host's resolvers.
    pub fn new() -> NetworkConfig {
        NetworkConfig::default()
    }

    /// Adds a network.
    pub fn attach(&mut self, network: impl Into<String>, options: EndpointOptions) -> &mut Self {
        self.networks.push(NetworkAttachment::new(network, options));
        self
    }

    /// Sets the resolver configuration.
    pub fn dns(&mut self, dns: DnsConfig) -> &mut Self {
        self.dns = Some(dns);
        self
    }

    /// Sets a fail-closed egress policy ([`NetworkConfig::egress`]).
    pub fn egress(&mut self, policy: EgressPolicy) -> &mut Self {
        self.egress = Some(policy);
        self
    }

    /// Pure checks: at least one network, none twice, each endpoint's options on their own
    /// (interface name, aliases, ports, MAC), no interface name twice, the resolver
    /// configuration. The checks against each network's spec (static addresses in its
    /// subnets, ports only where the driver publishes them) run at spawn, with the handles.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.networks.is_empty() {
            return Err(ValidationError::NoNetworks);
        }
        let mut ifnames: Vec<&str> = Vec::new();
        for (i, a) in self.networks.iter().enumerate() {
            if self.networks[..i].iter().any(|b| b.network == a.network) {
                return Err(ValidationError::DuplicateNetwork { network: a.network.clone() });
            }
            a.options
                .validate()
                .map_err(|source| ValidationError::NetworkOption { network: a.network.clone(), source })?;
            if let Some(n) = &a.options.ifname {
                if ifnames.contains(&n.as_str()) {
                    return Err(ValidationError::DuplicateInterface { ifname: n.clone() });
                }
                ifnames.push(n);
            }
        }
        if let Some(dns) = &self.dns {
            dns.validate().map_err(|source| ValidationError::Dns { source })?;
        }
        if let Some(policy) = &self.egress {
            policy.validate().map_err(|source| ValidationError::Egress { source })?;
        }
        Ok(())
    }
}

/// The networks resolved to handles and checked against them, and the (still empty) files:
/// everything before the clone.
#[derive(Debug)]
pub(crate) struct Prepared {
    attach: Vec<(Network, EndpointOptions)>,
    dns: Option<DnsConfig>,
    egress: Option<EgressPolicy>,
    files: FilesDir,
}

/// Resolves each network by name among `handles` and checks the options against it, then
/// names the files directory ([`Prepared::create_files`] creates it).
pub(crate) fn prepare(config: &NetworkConfig, handles: &[Network]) -> Result<Prepared> {
    let attach = resolve(config, handles)?;
    Ok(Prepared { attach, dns: config.dns.clone(), egress: config.egress.clone(), files: FilesDir::new() })
}

/// Finds each network by name among `handles` and checks the endpoint options against its
/// spec and driver (pure).
pub(crate) fn resolve(config: &NetworkConfig, handles: &[Network]) -> Result<Vec<(Network, EndpointOptions)>> {
    let mut attach = Vec::new();
    for a in &config.networks {
        let Some(network) = handles.iter().find(|n| n.name() == a.network) else {
            return Err(ValidationError::UnknownNetwork { network: a.network.clone() }.into());
        };
        match a.options.validate_for(network.spec(), network.driver()) {
            Ok(()) => {}
            Err(nook_netmodel::Error::Invalid(source)) => {
                return Err(ValidationError::NetworkOption { network: a.network.clone(), source }.into());
            }
            Err(nook_netmodel::Error::PortsUnsupported { network, driver, .. }) => {
                return Err(ValidationError::PortsUnsupported { network, driver }.into());
            }
            Err(e) => return Err(e.into()),
        }
        attach.push((network.clone(), a.options.clone()));
    }
    Ok(attach)
}

impl Prepared {
    /// The read-only binds of the files over the sandbox's `/etc/hosts` and
    /// `/etc/resolv.conf` (not where the caller mounts something itself).
    pub(crate) fn mounts(&self, taken: &[Mount]) -> Vec<Mount> {
        let mut mounts = Vec::new();
        for (file, target) in [(self.files.hosts(), "/etc/hosts"), (self.files.resolv(), "/etc/resolv.conf")] {
            if !taken.iter().any(|m| m.target() == Path::new(target)) {
                mounts.push(Mount::bind_ro(file, target));
            }
        }
        mounts
    }

    /// Creates the files directory with the (empty) files, recorded first. On failure, what
    /// was made is removed: see [`Prepared::files_left`].
    pub(crate) fn create_files(&mut self, owner: &mut Recorder) -> Result<()> {
        owner.record(Object::NetFiles { dir: self.files.path.clone() })?;
        self.files.create()
    }

    /// Whether some of the files directory exists (after a failed creation).
    pub(crate) fn files_left(&self) -> bool {
        self.files.path.exists()
    }

    /// Removes the files (a spawn that failed before [`attach`]).
    pub(crate) fn discard(self) -> Vec<Error> {
        self.files.remove().err().into_iter().collect()
    }
}

/// The network part of a running sandbox: the adopted namespace with its endpoints, and
/// the files.
#[derive(Debug)]
pub(crate) struct Attached {
    sandbox: nook_netmodel::Sandbox,
    files: FilesDir,
}

/// Connects the (paused) process `pid`'s network namespace to the prepared networks and
/// fills the files. Each endpoint goes into the owner record before it is connected (see
/// [`recorded_endpoint`]) and is replaced there by its addresses and port rules once it
/// is. A failure undoes everything (the endpoints already made, the files) and says
/// whether something recorded could not be undone (then the record must stay).
pub(crate) fn attach(
    prepared: Prepared,
    pid: u32,
    name: &str,
    owner: &mut Recorder,
) -> std::result::Result<Attached, (Box<Error>, bool)> {
    let Prepared { attach, dns, egress, files } = prepared;
    let adopted = nook_ns::NetNs::of_pid(pid)
        .map_err(Error::from)
        .and_then(|netns| nook_netmodel::Sandbox::adopt(name, netns).map_err(Error::from));
    let mut sandbox = match adopted {
        Ok(s) => s,
        Err(e) => return Err((Box::new(Error::with_cleanup(e, files.remove().err().into_iter().collect())), false)),
    };
    // Who holds the addresses in IPAM: `adopt` allocates for the calling process.
    let ipam_owner = Owner::current_process();
    let mut step = || -> Result<()> {
        // Bound to each endpoint as it is connected, before its link is up.
        if egress.is_some() {
            sandbox.set_egress(egress.clone())?;
        }
        for (network, options) in &attach {
            let planned = if owner.is_active() {
                recorded_endpoint(network, options, egress.is_some(), &ipam_owner)?
            } else {
                None
            };
            if let Some((planned, _)) = &planned {
                owner.record(planned.clone())?;
            }
            sandbox.connect(network, options)?;
            if let Some((planned, firewall_ns)) = planned {
                let endpoint = sandbox.endpoint(network).ok_or_else(|| {
                    Error::Netmodel(nook_netmodel::Error::NotConnected {
                        sandbox: name.to_owned(),
                        network: network.name().to_owned(),
                    })
                })?;
                owner.replace_with(&planned, exact_objects(&planned, &endpoint, firewall_ns))?;
            }
        }
        files.write(files.hosts(), &sandbox.hosts_file()?)?;
        files.write(files.resolv(), &sandbox.resolv_conf(dns.as_ref())?)?;
        Ok(())
    };
    match step() {
        Ok(()) => Ok(Attached { sandbox, files }),
        Err(e) => {
            // An endpoint whose connect failed and could not be undone keeps what is left.
            let mut left = matches!(e, Error::Netmodel(nook_netmodel::Error::Cleanup { .. }));
            let mut cleanup = Vec::new();
            if let Err(t) = sandbox.remove() {
                left = true;
                cleanup.push(t.into());
            }
            if let Err(t) = files.remove() {
                cleanup.push(t);
            }
            Err((Box::new(Error::with_cleanup(e, cleanup)), left))
        }
    }
}

/// Where a network's host namespace (its bridge, its nftables rules) is for a cleanup run by
/// another process.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostNs {
    /// Mounted at this path (persisted, like `ip netns add` does): reachable by it.
    Path(PathBuf),
    /// The owner's own network namespace: the cleaning process's, as the state dir is per
    /// host (see the [`state`](crate::state) module docs).
    Own,
    /// Neither: an anonymous namespace, which lives as long as its holders.
    Unreachable,
}

/// Finds `ns` among the nsfs mounts of the caller's mount namespace, else compares it with
/// the caller's own network namespace.
fn locate(ns: &nook_ns::NsFd) -> Result<HostNs> {
    use procfs_core::FromRead;
    use std::os::unix::fs::MetadataExt;
    let id = ns.id()?;
    // Unreadable mountinfo: no persisted path is known (the other checks still apply).
    let mounts = procfs_core::process::MountInfos::from_file("/proc/thread-self/mountinfo").ok();
    for m in mounts.iter().flat_map(|m| m.iter()).filter(|m| m.fs_type == "nsfs") {
        let same = std::fs::metadata(&m.mount_point).is_ok_and(|md| md.dev() == id.dev && md.ino() == id.ino);
        if same {
            return Ok(HostNs::Path(m.mount_point.clone()));
        }
    }
    if nook_ns::NsFd::current(nook_ns::Namespace::Net)?.id()? == id {
        return Ok(HostNs::Own);
    }
    Ok(HostNs::Unreachable)
}

/// What the owner record gets for an endpoint about to be connected to `network` (with the
/// namespace of its port rules, for [`exact_objects`]): an [`Object::Endpoint`] — whatever
/// `ipam_owner` will hold there, and the port rules towards it and its egress policy
/// (`egress`: the sandbox has one).
///
/// `None` when the endpoint publishes ports but its host namespace is [`HostNs::Unreachable`]
/// for a cleanup: its addresses are then left to IPAM's own reclaim of a dead owner's
/// addresses, which removes their port rules in the host's namespace before anyone gets them
/// (a cleanup here could only release them with the rules still there).
fn recorded_endpoint(
    network: &Network,
    options: &EndpointOptions,
    egress: bool,
    ipam_owner: &Owner,
) -> Result<Option<(Object, Option<PathBuf>)>> {
    let has_rules = (!options.ports.is_empty() && network.driver().publishes_ports(network.spec())) || egress;
    let netns = if has_rules {
        match locate(network.host().netns())? {
            HostNs::Path(p) => Some(p),
            HostNs::Own => None,
            HostNs::Unreachable => return Ok(None),
        }
    } else {
        None
    };
    let planned = Object::Endpoint {
        state_dir: network.host().ipam().dir().to_owned(),
        network: network.name().to_owned(),
        owner: ipam_owner.clone(),
        netns: netns.clone(),
        // The built-in backend's table: a `Host` with a backend of its own keeps rules the
        // cleanup does not know about.
        table: has_rules.then(|| nook_netmodel::firewall::DEFAULT_TABLE.to_owned()),
    };
    Ok(Some((planned, netns)))
}

/// What a connected endpoint is in the record: its addresses (each released only while
/// still held by its owner), then its published ports' rules (removed first by a cleanup,
/// which goes in reverse).
fn exact_objects(planned: &Object, endpoint: &Endpoint, netns: Option<PathBuf>) -> Vec<Object> {
    let Object::Endpoint { state_dir, network, owner, table, .. } = planned else { return vec![planned.clone()] };
    let mut objects: Vec<Object> = endpoint
        .addresses
        .iter()
        .map(|a| Object::IpamAddress {
            state_dir: state_dir.clone(),
            network: network.clone(),
            address: a.addr(),
            owner: Some(owner.clone()),
        })
        .collect();
    if let Some(table) = table {
        objects.push(Object::Firewall {
            netns,
            table: table.clone(),
            network: network.clone(),
            endpoint: Some(endpoint.id.clone()),
        });
    }
    objects
}

impl Attached {
    /// The network sandbox (its namespace, endpoints, `run`).
    pub(crate) fn sandbox(&self) -> &nook_netmodel::Sandbox {
        &self.sandbox
    }

    /// Its endpoints.
    pub(crate) fn endpoints(&self) -> Vec<Endpoint> {
        self.sandbox.endpoints()
    }

    /// The `/etc/hosts` and `/etc/resolv.conf` files on the host.
    pub(crate) fn files(&self) -> [PathBuf; 2] {
        [self.files.hosts(), self.files.resolv()]
    }

    /// Rewrites `/etc/hosts` with the peers the networks have now.
    pub(crate) fn refresh_hosts(&self) -> Result<()> {
        self.files.write(self.files.hosts(), &self.sandbox.hosts_file()?)
    }

    /// Tears down in reverse: the network sandbox (published ports, addresses, namespace
    /// handle), then the files. Every failure is returned.
    pub(crate) fn teardown(self) -> Vec<Error> {
        let mut errors = Vec::new();
        if let Err(e) = self.sandbox.remove() {
            errors.push(e.into());
        }
        if let Err(e) = self.files.remove() {
            errors.push(e);
        }
        errors
    }
}

/// What `container:` mode takes from the other sandbox when the builder is given it: its
/// network namespace (opened then, checked against its init's pidfd) and its `/etc` files.
#[derive(Debug)]
pub(crate) struct ContainerNet {
    netns: Option<nook_ns::NsFd>,
    files: Option<[PathBuf; 2]>,
}

impl ContainerNet {
    /// Takes the other sandbox's namespace and files (a failure to open the namespace is
    /// reported at spawn, by opening it again by pid).
    pub(crate) fn of(other: &crate::Sandbox) -> ContainerNet {
        let netns = nook_ns::NsFd::of_pid(other.id(), nook_ns::Namespace::Net)
            .ok()
            // Opened by pid: if the init had ended (and the pid been reused), its pidfd says so.
            .filter(|_| !matches!(crate::run::wait_readable(other.pidfd(), std::time::Instant::now()), Ok(true)));
        let files = other.net_files();
        ContainerNet { netns, files }
    }
}

/// The network namespace to join for `container:` mode.
pub(crate) fn container_netns(pid: u32, given: Option<&ContainerNet>) -> Result<nook_ns::NsFd> {
    match given.and_then(|g| g.netns.as_ref()) {
        Some(ns) => Ok(ns.try_clone()?),
        None => Ok(nook_ns::NsFd::of_pid(pid, nook_ns::Namespace::Net)?),
    }
}

/// The read-only binds of the other sandbox's `/etc` files (where the caller mounts nothing).
pub(crate) fn container_mounts(given: Option<&ContainerNet>, taken: &[Mount]) -> Vec<Mount> {
    let Some([hosts, resolv]) = given.and_then(|g| g.files.clone()) else { return Vec::new() };
    [(hosts, "/etc/hosts"), (resolv, "/etc/resolv.conf")]
        .into_iter()
        .filter(|(_, target)| !taken.iter().any(|m| m.target() == Path::new(target)))
        .map(|(file, target)| Mount::bind_ro(file, target))
        .collect()
}

/// `NET_FILES_DIR/<unique>` with `hosts` and `resolv.conf`; removed by [`FilesDir::remove`]
/// or, best effort, on drop.
#[derive(Debug)]
struct FilesDir {
    path: PathBuf,
    created: bool,
    removed: bool,
}

impl FilesDir {
    /// A name unique on this host, `nk-<pid>-<n>-<nanos>` (nothing is created yet: the
    /// owner record lists it first). The nanoseconds keep a later process with a dead
    /// one's pid off the dead one's directory, which a cleanup may be removing.
    fn new() -> FilesDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name = format!("nk-{}-{}-{nanos:08x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        FilesDir { path: Path::new(NET_FILES_DIR).join(name), created: false, removed: false }
    }

    /// Creates the directory with the two files, empty; on failure removes what it made.
    fn create(&mut self) -> Result<()> {
        let base = Path::new(NET_FILES_DIR);
        let mut tries = 0;
        loop {
            std::fs::create_dir_all(base).map_err(|source| sys("mkdir", base, source))?;
            match std::fs::create_dir(&self.path) {
                Ok(()) => break,
                // Another sandbox's teardown removed the (then empty) base just now.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 3 => tries += 1,
                Err(source) => return Err(sys("mkdir", &self.path, source)),
            }
        }
        self.created = true;
        for file in [self.hosts(), self.resolv()] {
            if let Err(source) = std::fs::write(&file, b"") {
                let cleanup = std::fs::remove_dir_all(&self.path).err().map(|c| sys("rmdir", &self.path, c));
                self.created = false;
                return Err(Error::with_cleanup(sys("write", &file, source), cleanup.into_iter().collect()));
            }
        }
        Ok(())
    }

    fn hosts(&self) -> PathBuf {
        self.path.join("hosts")
    }

    fn resolv(&self) -> PathBuf {
        self.path.join("resolv.conf")
    }

    /// Replaces the contents in place (same inode: the sandbox's bind mount shows them).
    fn write(&self, file: PathBuf, contents: &str) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&file)
            .map_err(|source| sys("open", &file, source))?;
        f.write_all(contents.as_bytes()).map_err(|source| sys("write", &file, source))
    }

    /// Removes the directory, and [`NET_FILES_DIR`] too when that is left empty (it is
    /// made again on demand).
    fn remove(mut self) -> Result<()> {
        self.removed = true;
        let removed = match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(sys("rmdir", &self.path, source)),
        };
        // Fails while other sandboxes have files there: then it stays.
        let _ = std::fs::remove_dir(NET_FILES_DIR);
        removed
    }
}

impl Drop for FilesDir {
    fn drop(&mut self) {
        if self.created && !self.removed {
            let _ = std::fs::remove_dir_all(&self.path);
            let _ = std::fs::remove_dir(NET_FILES_DIR);
        }
    }
}

fn sys(call: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Sys { call, path: Some(path.to_owned()), source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nook_netmodel::firewall::PortMapping;

    #[test]
    fn validation() {
        assert!(matches!(NetworkConfig::new().validate(), Err(ValidationError::NoNetworks)));
        let mut c = NetworkConfig::new();
        c.attach("a", EndpointOptions::new()).attach("a", EndpointOptions::new());
        assert!(matches!(c.validate(), Err(ValidationError::DuplicateNetwork { network }) if network == "a"));
        let mut bad = EndpointOptions::new();
        bad.port(PortMapping::tcp(0, 80));
        let mut c = NetworkConfig::new();
        c.attach("a", bad);
        assert!(matches!(c.validate(), Err(ValidationError::NetworkOption { network, .. }) if network == "a"));
        let mut e0 = EndpointOptions::new();
        e0.ifname("eth7");
        let mut c = NetworkConfig::new();
        c.attach("a", e0.clone()).attach("b", e0);
        assert!(matches!(c.validate(), Err(ValidationError::DuplicateInterface { ifname }) if ifname == "eth7"));
        let mut c = NetworkConfig::new();
        c.attach("a", EndpointOptions::new());
        c.validate().unwrap();
        let json = serde_json::to_string(&crate::NetworkMode::Networks(c.clone())).unwrap();
        assert_eq!(serde_json::from_str::<crate::NetworkMode>(&json).unwrap(), crate::NetworkMode::Networks(c));
    }
}
