//! Removing what a dead owner's record lists, each object through the crate that made it.
//!
//! Every function returns `Ok(())` when the object is gone — removed now, or already gone
//! (a cleanup interrupted half-way runs again over the same record) — and an error when it is
//! still there.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nook_cgroup::{Cgroup, CgroupSpec, Hierarchies, Hierarchy};
use nook_netmodel::firewall::{FirewallBackend, NftNetlink};
use nook_netmodel::ipam::Ipam;
use nook_unionfs::LayerStore;

use super::error::{Error, Result, SysContext};
use super::record::{Object, ProcessId, mount_id};

/// `NSFS_MAGIC` (`<linux/magic.h>`): the file system of namespace files.
const NSFS_MAGIC: u32 = 0x6e73_6673;

fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// First pass: stop every process of the sandbox, before anything is removed under them.
pub(super) fn kill(id: &str, object: &Object) -> Result<()> {
    match object {
        Object::Process { process } => kill_process(id, *process),
        Object::Cgroup { spec, dirs } => match open_cgroup(spec, dirs)? {
            Some(cg) => Ok(cg.kill_all()?),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Second pass (in reverse order of creation): remove the object.
pub(super) fn remove(id: &str, object: &Object) -> Result<()> {
    match object {
        // Killed in the first pass; only checked here.
        Object::Process { process } => {
            if process.is_alive() && !is_zombie(process.pid) {
                return Err(Error::Survived { id: id.to_owned(), pid: process.pid });
            }
            Ok(())
        }
        Object::Cgroup { spec, dirs } => match open_cgroup(spec, dirs) {
            Ok(Some(cg)) => Ok(cg.remove()?),
            Ok(None) => Ok(()),
            // Some recorded directories are missing: the owner died while creating the
            // cgroup (recorded in advance), before any process was put in it.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => remove_partial_cgroup(dirs),
            Err(e) => Err(e),
        },
        Object::Mount { target, mount_id: recorded } => remove_mount(target, *recorded),
        Object::PersistedNs { path } => remove_persisted_ns(path),
        Object::Firewall { netns, table, network, endpoint } => {
            let Some(fw) = firewall(netns.as_deref(), table)? else { return Ok(()) };
            match endpoint {
                Some(ep) => {
                    fw.remove_ports(network, ep)?;
                    fw.remove_egress(ep)?;
                }
                None => fw.teardown_network(network)?,
            }
            Ok(())
        }
        Object::IpamAddress { state_dir, network, address, owner } => {
            let Some(ipam) = open_ipam(state_dir, network)? else { return Ok(()) };
            // Only while the address is still held by the recorded owner: IPAM may have
            // reclaimed it from the dead owner and handed it to someone else since.
            let held = ipam
                .allocations(network)?
                .into_iter()
                .any(|(a, o)| a == *address && owner.as_ref().is_none_or(|w| *w == o));
            if held {
                ipam.release(network, *address)?;
            }
            Ok(())
        }
        Object::Endpoint { state_dir, network, owner, netns, table } => {
            let Some(ipam) = open_ipam(state_dir, network)? else { return Ok(()) };
            // What the dead owner still holds there (nothing if the endpoint was never
            // connected, or IPAM reclaimed it for someone else since).
            let held: Vec<_> =
                ipam.allocations(network)?.into_iter().filter(|(_, o)| o == owner).map(|(a, _)| a).collect();
            if held.is_empty() {
                return Ok(());
            }
            // The rules towards those addresses first (IPAM's own reclaim does the same):
            // released with rules left, an address would get their traffic with its next owner.
            if let Some(table) = table
                && let Some(fw) = firewall(netns.as_deref(), table)?
            {
                fw.remove_ports_to(network, &held)?;
                fw.remove_egress_to(&held)?;
            }
            let still: Vec<_> = ipam.allocations(network)?.into_iter().filter(|(_, o)| o == owner).collect();
            for (address, _) in still {
                ipam.release(network, address)?;
            }
            Ok(())
        }
        Object::NetFiles { dir } => remove_net_files(dir),
        Object::ContainerLayer { store, id: layer } => {
            if !store.join("containers").is_dir() {
                return Ok(());
            }
            let store = LayerStore::open(store)?;
            if store.container_ids()?.iter().any(|c| c == layer) {
                // The dead owner may have had the layer's stack mounted on its `merged` dir
                // in this namespace (a caller of `ImageStore::create_container` mounting it
                // itself): detached first, or the store refuses to remove the layer.
                store.unmount_container(layer)?;
                store.remove_container(layer)?;
            }
            // An owner killed inside `remove_container` leaves the layer renamed into the
            // store's `tmp/` (named after the owner), not yet deleted: what dead processes
            // left there goes too.
            store.clean_tmp()?;
            Ok(())
        }
    }
}

/// Unlinks a sandbox's `hosts` and `resolv.conf` and removes their directory, then its
/// parent if that is left empty (it is made again on demand). Anything else in the
/// directory keeps it (`rmdir` fails: reported).
fn remove_net_files(dir: &Path) -> Result<()> {
    for name in ["hosts", "resolv.conf"] {
        let file = dir.join(name);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(Error::sys("unlink", file, e)),
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if is_gone(&e) => return Ok(()),
        Err(e) => return Err(Error::sys("rmdir", dir, e)),
    }
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}

/// The nftables backend in the recorded namespace (`None`: the cleaning process's own), or
/// `None` when that namespace is gone (and its rules with it). The netlink backend reads and
/// removes what either built-in backend wrote (they write the same rules), and needs no `nft`.
fn firewall(netns: Option<&Path>, table: &str) -> Result<Option<NftNetlink>> {
    let ns = match netns {
        Some(p) => match nook_ns::NetNs::open_path(p) {
            Ok(ns) => Some(ns),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => return Ok(None),
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let mut fw = NftNetlink::new(ns.as_ref().map(|n| n.ns()))?;
    fw.table_name(table.to_owned());
    Ok(Some(fw))
}

/// The IPAM state at `state_dir` if it exists and knows `network` (else nothing of it is
/// left to release). Never creates the directory.
fn open_ipam(state_dir: &Path, network: &str) -> Result<Option<Ipam>> {
    if !state_dir.is_dir() {
        return Ok(None);
    }
    let ipam = Ipam::open(state_dir)?;
    if !ipam.networks()?.iter().any(|n| n == network) {
        return Ok(None);
    }
    Ok(Some(ipam))
}

/// SIGKILL through a pidfd, after checking (with the pidfd held, so the pid cannot be
/// reused meanwhile) that the pid is still the recorded process.
fn kill_process(id: &str, process: ProcessId) -> Result<()> {
    use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
    let Some(pid) = Pid::from_raw(process.pid as i32) else { return Ok(()) };
    let fd = match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        Err(e) => return Err(e).sys_at("pidfd_open", format!("/proc/{}", process.pid)),
    };
    if !process.is_alive() {
        return Ok(()); // another process has the pid now
    }
    match pidfd_send_signal(fd.as_fd(), Signal::KILL) {
        Ok(()) => {
            // A pidfd becomes readable when the process exits: wait for that (SIGKILL is
            // delivered asynchronously), so the removals after this do not race its exit.
            let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
            let timeout = rustix::event::Timespec { tv_sec: 10, tv_nsec: 0 };
            loop {
                match rustix::event::poll(&mut fds, Some(&timeout)) {
                    Err(rustix::io::Errno::INTR) => continue,
                    Ok(0) => return Err(Error::Survived { id: id.to_owned(), pid: process.pid }),
                    _ => return Ok(()),
                }
            }
        }
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(Error::Cleanup {
            cause: Box::new(Error::Survived { id: id.to_owned(), pid: process.pid }),
            cleanup: vec![Error::sys("pidfd_send_signal", format!("/proc/{}", process.pid), e.into())],
        }),
    }
}

/// A process that has exited but not been reaped (its parent, now dead too, left it to
/// init, which reaps it soon): it holds nothing.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// Opens the recorded cgroup where its directories are: in each hierarchy, the caller's own
/// cgroup (which a spec without `parent` is placed below) is set to the parent the recorded
/// directory shows. `None`: every recorded directory is gone.
fn open_cgroup(spec: &CgroupSpec, dirs: &[PathBuf]) -> Result<Option<Cgroup>> {
    if dirs.iter().all(|d| !d.exists()) {
        return Ok(None);
    }
    let mut now = Hierarchies::discover()?;
    let depth = Path::new(&spec.name).components().count();
    let mut hierarchies: Vec<&mut Hierarchy> = now.v1.iter_mut().chain(now.v2.iter_mut()).collect();
    for dir in dirs {
        // The hierarchy whose mount point is the longest prefix of the directory.
        let Some(h) = hierarchies
            .iter_mut()
            .filter(|h| dir.starts_with(&h.mount_point))
            .max_by_key(|h| h.mount_point.components().count())
        else {
            continue;
        };
        let rel: Vec<_> = dir.strip_prefix(&h.mount_point).expect("filtered on the prefix").components().collect();
        if rel.len() >= depth {
            h.own_cgroup = h.mount_root.join(rel[..rel.len() - depth].iter().collect::<PathBuf>());
        }
    }
    match Cgroup::open_in(now, spec) {
        Ok(cg) => Ok(Some(cg)),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => {
            if dirs.iter().all(|d| !d.exists()) { Ok(None) } else { Err(e.into()) }
        }
        Err(e) => Err(e.into()),
    }
}

/// `rmdir` of each recorded cgroup directory that exists: the kernel refuses (`EBUSY`) one
/// that still has processes or children, so only an empty one goes.
fn remove_partial_cgroup(dirs: &[PathBuf]) -> Result<()> {
    for dir in dirs {
        match std::fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(Error::sys("rmdir", dir, e)),
        }
    }
    Ok(())
}

/// Detaches the mount at `target` if it is still the recorded one.
fn remove_mount(target: &Path, recorded: Option<u64>) -> Result<()> {
    let here = match mount_id(target) {
        Ok(id) => id,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => return Ok(()),
        Err(e) => return Err(e),
    };
    if recorded.is_some_and(|r| r != here) {
        return Ok(()); // not (or no longer) that mount
    }
    match nook_ns::unmount(target, true) {
        Ok(()) => Ok(()),
        // Not a mount point (any more).
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Unmounts a persisted namespace file and unlinks it. A leftover empty regular file (a
/// creation that stopped before the bind mount) is unlinked too; anything else is left.
fn remove_persisted_ns(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if is_gone(&e) => return Ok(()),
        Err(e) => return Err(Error::sys("stat", path, e)),
    };
    let nsfs = rustix::fs::statfs(path).map(|s| s.f_type as u32 == NSFS_MAGIC).unwrap_or(false);
    if nsfs {
        // Detach every stacked bind of it (one per failed or repeated persist).
        while rustix::fs::statfs(path).is_ok_and(|s| s.f_type as u32 == NSFS_MAGIC) {
            nook_ns::unmount(path, true)?;
        }
    } else if !(meta.file_type().is_file() && meta.len() == 0) {
        return Err(Error::NotWhatWasRecorded { path: path.to_owned(), expected: "a persisted namespace" });
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if is_gone(&e) => Ok(()),
        Err(e) => Err(Error::sys("unlink", path, e)),
    }
}
