//! What a process and its test "host" hold, counted: the before/after snapshot of the
//! reliability tests (soak, crashes, concurrency, faults). Everything a sandbox can leak has a
//! count here — descriptors, threads, mounts, cgroups, links, network namespaces, nftables
//! rules, IPAM entries, layer-store temporary entries and container layers, owner records,
//! `/etc` files directories, child processes — plus the resident set size, which is compared
//! with a tolerance rather than exactly.
//!
//! Counts are of this process (descriptors, threads, children, RSS), of the calling thread's
//! mount namespace (mounts, persisted namespaces), of the `nk-sandbox-<pid>-*` cgroups and
//! `nk-<pid>-*` files directories of the pids given, and of the test-made host namespace,
//! IPAM dir, layer store and state dir given: nothing the machine's other users do counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use nook_netmodel::ipam::Ipam;
use nook_netmodel::netlink::Netlink;
use nook_ns::NetNs;

/// Where a test's objects live (each part optional).
#[derive(Default)]
pub(crate) struct Scope<'a> {
    /// The test-made host namespace (links and nftables rules are counted there).
    pub(crate) host: Option<&'a NetNs>,
    /// The IPAM state dir.
    pub(crate) ipam: Option<&'a Path>,
    /// The image store root (its layer store's `tmp`, `containers`; the image store's
    /// `image-tmp`).
    pub(crate) store: Option<&'a Path>,
    /// The facade's state dir (owner records).
    pub(crate) state: Option<&'a Path>,
    /// The owner pids whose cgroups and `/etc` files directories count (default: this one).
    pub(crate) owners: Vec<u32>,
    /// A directory whose mounts (in the calling thread's mount namespace) count.
    pub(crate) base: Option<&'a Path>,
}

/// One snapshot. Compared with [`Counts::assert_same`]: every count equal, RSS within a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) counts: BTreeMap<&'static str, usize>,
    /// VmRSS of this process in KiB.
    pub(crate) rss_kib: u64,
}

impl Counts {
    pub(crate) fn take(scope: &Scope<'_>) -> Counts {
        let me = std::process::id();
        let owners = if scope.owners.is_empty() { vec![me] } else { scope.owners.clone() };
        let mut c = BTreeMap::new();
        c.insert("fds", dir_len("/proc/self/fd"));
        c.insert("threads", dir_len("/proc/self/task"));
        c.insert("mounts", mountinfo().len());
        c.insert("children", children(me).len());
        c.insert("netns", netns_reachable(me).len());
        c.insert("cgroups", owners.iter().map(|p| crate::owner::cgroups_of(*p).len()).sum());
        c.insert("net files dirs", owners.iter().map(|p| net_files_of(*p)).sum());
        if let Some(ns) = scope.host {
            c.insert("links", links(ns).len());
            c.insert("nft rules", nft_lines(ns));
        }
        if let Some(dir) = scope.ipam {
            c.insert("ipam entries", ipam_entries(dir));
        }
        if let Some(store) = scope.store {
            c.insert("store tmp entries", dir_len(store.join("tmp")) + dir_len(store.join("image-tmp")));
            c.insert("container layers", dir_len(store.join("containers")));
        }
        if let Some(base) = scope.base {
            let below = mountinfo()
                .iter()
                .filter(|l| {
                    l.split(' ').nth(4).is_some_and(|p| nook_testutil::unescape_mount_path(p).starts_with(base))
                })
                .count();
            c.insert("mounts below the test dir", below);
        }
        if let Some(state) = scope.state {
            c.insert("state records", dir_len(state.join("sandboxes")));
        }
        Counts { counts: c, rss_kib: rss_kib() }
    }

    /// Only what lives outside this process (for a test whose process is shared with other
    /// tests): cgroups, files dirs, links, rules, IPAM, store, records, mounts below the test
    /// dir.
    pub(crate) fn outside(mut self) -> Counts {
        for k in ["fds", "threads", "mounts", "children", "netns"] {
            self.counts.remove(k);
        }
        self.rss_kib = 0;
        self
    }

    /// Takes counts with `take` until `settled` holds of them, up to a deadline only a leak
    /// reaches (then returns the last): a network namespace is freed by the kernel after its
    /// last reference goes, and the host ends of its veth pairs go with it, asynchronously.
    pub(crate) fn eventually(take: impl Fn() -> Counts, settled: impl Fn(&Counts) -> bool) -> Counts {
        let deadline = std::time::Instant::now() + SETTLE * nook_testutil::time_factor();
        loop {
            let c = take();
            if settled(&c) || std::time::Instant::now() > deadline {
                return c;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// [`Counts::assert_same`] on counts taken with `take` once they settle (see
    /// [`Counts::eventually`]).
    #[track_caller]
    pub(crate) fn assert_eventually(&self, take: impl Fn() -> Counts, rss_slack_kib: u64, what: &str) {
        let after = Counts::eventually(take, |c| c.counts == self.counts);
        self.assert_same(&after, rss_slack_kib, what);
    }

    /// Every count equal (`what` names the moment in the failure), and RSS grown by at most
    /// `rss_slack_kib`.
    #[track_caller]
    pub(crate) fn assert_same(&self, after: &Counts, rss_slack_kib: u64, what: &str) {
        let diff: Vec<String> = self
            .counts
            .iter()
            .filter(|(k, v)| after.counts.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: {v} -> {:?}", after.counts.get(k)))
            .collect();
        assert!(diff.is_empty(), "{what}: leaked {diff:?}\nbefore {self:?}\nafter {after:?}");
        let grown = after.rss_kib.saturating_sub(self.rss_kib);
        assert!(
            grown <= rss_slack_kib,
            "{what}: RSS grew {grown} KiB ({} -> {} KiB), more than the {rss_slack_kib} KiB of noise allowed",
            self.rss_kib,
            after.rss_kib
        );
    }
}

/// How long counts may take to settle (times the time factor).
const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The slack a soak allows RSS after its warm-up (the allocator's caches, a few pages of
/// stack): a leak of a kilobyte per cycle shows after 1 000 cycles, one of 80 bytes per cycle
/// does not.
pub(crate) const RSS_SLACK_KIB: u64 = 8 * 1024;

fn dir_len(dir: impl AsRef<Path>) -> usize {
    std::fs::read_dir(dir).map(|rd| rd.count()).unwrap_or(0)
}

/// The calling thread's mount table (mount points with their ids).
pub(crate) fn mountinfo() -> Vec<String> {
    std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap().lines().map(str::to_owned).collect()
}

/// Pids whose parent is `pid` (zombies included: an unreaped child is a leak too).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let ppid = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// Every network namespace this process keeps alive: its threads', its children's (and their
/// descendants'), its open descriptors', and those bind-mounted in its mount namespace.
fn netns_reachable(me: u32) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut pids = vec![me];
    let mut i = 0;
    while i < pids.len() {
        let p = pids[i];
        pids.extend(children(p));
        i += 1;
    }
    for p in pids {
        if let Ok(rd) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in rd.flatten() {
                if let Ok(l) = std::fs::read_link(t.path().join("ns/net")) {
                    seen.insert(l.to_string_lossy().into_owned());
                }
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
        for fd in rd.flatten() {
            if let Ok(l) = std::fs::read_link(fd.path()) {
                let l = l.to_string_lossy().into_owned();
                if l.starts_with("net:[") {
                    seen.insert(l);
                }
            }
        }
    }
    for line in mountinfo() {
        // mountinfo's root field of an nsfs mount is `net:[INODE]`.
        if let Some(root) = line.split(' ').nth(3)
            && root.starts_with("net:[")
        {
            seen.insert(root.to_owned());
        }
    }
    seen
}

fn links(ns: &NetNs) -> Vec<String> {
    Netlink::open_in(ns.ns()).unwrap().links().unwrap().into_iter().map(|l| l.name).collect()
}

/// The lines of `nft list ruleset` in `ns` (a rule, chain or table left is a line more).
fn nft_lines(ns: &NetNs) -> usize {
    let out = ns.run(|| Command::new("nft").args(["list", "ruleset"]).output()).unwrap().expect("run nft");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
}

/// Addresses held in every network of the IPAM dir.
pub(crate) fn ipam_entries(dir: &Path) -> usize {
    if !dir.is_dir() {
        return 0;
    }
    let ipam = Ipam::open(dir).unwrap();
    ipam.networks().unwrap().iter().map(|n| ipam.allocations(n).unwrap().len()).sum()
}

/// `/etc` files directories of sandboxes owned by `pid`.
fn net_files_of(pid: u32) -> usize {
    let prefix = format!("nk-{pid}-");
    match std::fs::read_dir(nook_sandbox::net::NET_FILES_DIR) {
        Ok(rd) => rd.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).count(),
        Err(_) => 0,
    }
}

/// VmRSS, after handing the allocator's free pages back to the kernel: glibc keeps what a
/// burst of threads freed in their arenas, which is not a leak (a second burst reuses it).
fn rss_kib() -> u64 {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// An `nk`-named directory under `parent`, removed on drop (mounts below it detached first):
/// the concurrency tests' state on a real disk (`/var/tmp`) and on tmpfs (`/dev/shm`).
pub(crate) struct ScratchDir(pub(crate) PathBuf);

impl ScratchDir {
    pub(crate) fn new(parent: &str, tag: &str) -> ScratchDir {
        let p = PathBuf::from(parent).join(format!("{}-{tag}", nook_testutil::unique_name(tag)));
        std::fs::create_dir(&p).unwrap();
        ScratchDir(p)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        nook_testutil::detach_mounts_below(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The environment variable naming the role a re-executed test binary plays (a helper
/// process: a soak run alone in its process, an owner to kill, a cleaner).
pub(crate) const ROLE: &str = "NK_RELIAB_ROLE";
/// The test's base directory, passed to a helper.
pub(crate) const BASE: &str = "NK_RELIAB_BASE";

/// The base dir when this process is the helper of test `entry`.
pub(crate) fn helper_role(entry: &str) -> Option<PathBuf> {
    (std::env::var(ROLE).as_deref() == Ok(entry)).then(|| std::env::var_os(BASE).expect("helper base").into())
}

/// This binary re-run for test `entry` of `module` (its `module_path!()`) in that role.
pub(crate) fn helper(module: &str, entry: &str, base: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", crate::test_name(module, entry).as_str(), "--nocapture", "--test-threads=1"])
        .env(ROLE, entry)
        .env(BASE, base)
        .stdin(std::process::Stdio::null());
    c
}

/// A count from the environment (`var`), else `ci` divided by the time factor (the emulated
/// v2 lane is ten times slower), at least `min`.
pub(crate) fn scaled(var: &str, ci: u32, min: u32) -> u32 {
    match std::env::var(var).ok().and_then(|v| v.parse().ok()) {
        Some(n) => n,
        None => (ci / nook_testutil::time_factor()).max(min),
    }
}

/// A persisted network namespace at `base/netns/nkhost` playing the host: quiet sysctls,
/// `lo` up. Helpers open it by path; it goes when the handle is dropped.
pub(crate) fn host_netns(base: &Path) -> NetNs {
    let ns = NetNs::create_in(&base.join("netns"), "nkhost").expect("host netns");
    ns.run(|| nook_testutil::set_host_state(nook_testutil::HostState::from_env())).expect("enter host netns");
    Netlink::open_in(ns.ns()).expect("netlink").set_up(1).expect("lo up");
    ns
}

/// The host of the test namespace at `base` (IPAM in `base/ipam`).
pub(crate) fn host_of(base: &Path, ns: &NetNs) -> nook_netmodel::Host {
    nook_netmodel::Host::builder().netns(ns.ns()).ipam_dir(base.join("ipam")).build().expect("host")
}

/// A helper process's world below `base`: the host namespace (`host_netns`), its host, a
/// bridge network `name` on `subnet` created there, and the image store at `base/store`.
pub(crate) fn world_with_network(
    base: &Path,
    name: &str,
    subnet: &str,
) -> (NetNs, nook_netmodel::Host, nook_netmodel::Network, nook_sandbox::image::ImageStore) {
    let ns = host_netns(base);
    let host = host_of(base, &ns);
    let network = nook_netmodel::Network::create(&host, &bridge_spec(name, subnet)).expect("network");
    let store = nook_sandbox::image::ImageStore::open(base.join("store")).expect("image store");
    (ns, host, network, store)
}

/// The state directories below `base` that a helper process's world keeps (IPAM, the image
/// store, the facade's owner records), for [`Places::scope`].
pub(crate) struct Places {
    ipam: PathBuf,
    store: PathBuf,
    state: PathBuf,
}

impl Places {
    pub(crate) fn new(base: &Path) -> Places {
        Places { ipam: base.join("ipam"), store: base.join("store"), state: base.join("state") }
    }

    /// Everything of this world counted: the host namespace `ns` and these directories.
    pub(crate) fn scope<'a>(&'a self, ns: &'a NetNs) -> Scope<'a> {
        Scope {
            host: Some(ns),
            ipam: Some(&self.ipam),
            store: Some(&self.store),
            state: Some(&self.state),
            ..Scope::default()
        }
    }
}

/// The spec of the reliability tests' bridge network `name` on `subnet`.
pub(crate) fn bridge_spec(name: &str, subnet: &str) -> nook_netmodel::NetworkSpec {
    let mut spec = nook_netmodel::NetworkSpec::bridge(name.parse().unwrap());
    spec.subnet(subnet.parse().unwrap(), None);
    spec
}

/// Endpoint options publishing host port `port` to the sandbox's port 80.
pub(crate) fn published(port: u16) -> nook_netmodel::EndpointOptions {
    let mut o = nook_netmodel::EndpointOptions::new();
    o.port(nook_netmodel::firewall::PortMapping::tcp(port, 80));
    o
}

/// Runs `cleanup()` of the state dir `base/state` when dropped: whatever a failing test's
/// helpers (dead by then) left is removed, so a failure leaves nothing either. Declare it
/// after the temp dir and before the guards that kill helpers.
pub(crate) struct CleanupOnDrop(pub(crate) PathBuf);

impl Drop for CleanupOnDrop {
    fn drop(&mut self) {
        let _ = nook_sandbox::state::StateDir::new(self.0.join("state")).cleanup();
    }
}
