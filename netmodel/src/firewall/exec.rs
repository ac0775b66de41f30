//! Side effects, all made by the calling thread (which the backend has moved into its network
//! namespace): running `nft`, the per-namespace lock, sysctls.

use std::io::{self, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nftables::schema as nfs;

use super::FirewallError;
use super::foreign::Ruleset;
use super::nfnl;
use super::render::FAMILY_NAME;
use super::state::{self, TableState};
use crate::error::SysContext;

/// How long an operation waits for another one on the same table and namespace.
pub(crate) const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Where `nft` is looked for when `PATH` lacks it (root's tools live in `sbin`).
const NFT_FALLBACKS: [&str; 3] = ["/usr/sbin/nft", "/sbin/nft", "/usr/local/sbin/nft"];

/// The `nft` program: the first `nft` on `PATH`, else the usual `sbin` places, else plain
/// `nft` (spawning it then fails with a clear error).
pub(crate) fn default_program() -> PathBuf {
    let on_path =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).map(|d| d.join("nft")).collect::<Vec<_>>());
    on_path
        .unwrap_or_default()
        .into_iter()
        .chain(NFT_FALLBACKS.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("nft"))
}

/// One operation of the backend: where its errors point.
pub(crate) struct Ctx<'a> {
    /// The `nft` program.
    pub program: &'a Path,
    /// The table.
    pub table: &'a str,
    /// Read and write the ruleset over netlink ([`super::NftNetlink`]) rather than with
    /// `nft` (still run to read the whole ruleset when other tables have forward chains).
    pub netlink: bool,
    /// The backend operation (`"setup_network"`, ...).
    pub op: &'static str,
    /// What it is about (network, `network/endpoint`).
    pub target: &'a str,
    /// The operation's netlink socket, opened by its first request (on the operation's
    /// thread, in the backend's namespace) and reused by the next ones.
    pub conn: &'a std::sync::Mutex<Option<nfnl::Conn>>,
}

/// Holds the per-namespace lock of a table until dropped.
///
/// The lock is an abstract unix socket named after the table, bound in the backend's network
/// namespace (abstract names are per namespace): binding fails while another thread or
/// process holds it, and the kernel releases it when the holder exits, even on a crash. It
/// makes each operation's read-modify-write of the table atomic with respect to every other
/// nook user of that namespace, and needs no file.
#[derive(Debug)]
pub(crate) struct TableLock {
    _socket: UnixListener,
}

impl Ctx<'_> {
    /// Takes the table's lock (waits up to [`LOCK_TIMEOUT`]).
    pub(crate) fn lock(&self) -> Result<TableLock, FirewallError> {
        let name = format!("nook/nft/{}", self.table);
        let lock_err = |source| FirewallError::Lock { table: self.table.to_owned(), source };
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(lock_err)?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match UnixListener::bind_addr(&addr) {
                Ok(socket) => return Ok(TableLock { _socket: socket }),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    let waited = start.elapsed();
                    if waited >= LOCK_TIMEOUT {
                        return Err(FirewallError::LockTimeout { table: self.table.to_owned(), waited });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(lock_err(e)),
            }
        }
    }

    fn spawn_err(&self, source: io::Error) -> FirewallError {
        FirewallError::NftSpawn {
            op: self.op,
            target: self.target.to_owned(),
            program: self.program.to_owned(),
            source,
        }
    }

    fn json_err(&self, source: serde_json::Error) -> FirewallError {
        FirewallError::Json { op: self.op, target: self.target.to_owned(), source }
    }

    /// Runs `nft ARGS` (feeding `input` on stdin) and returns its stdout.
    fn nft(&self, args: &[&str], input: Option<&[u8]>) -> Result<String, FirewallError> {
        let mut child = Command::new(self.program)
            .args(args)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_err(e))?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            // nft reads its whole input before it writes anything, so this cannot deadlock.
            // A broken pipe means nft exited early: its status and stderr tell why.
            match stdin.write_all(data) {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.spawn_err(e));
                }
                _ => {}
            }
        }
        let out = child.wait_with_output().map_err(|e| self.spawn_err(e))?;
        if !out.status.success() {
            return Err(FirewallError::Nft {
                op: self.op,
                target: self.target.to_owned(),
                program: self.program.to_owned(),
                command: args.join(" "),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `f` on the operation's netlink socket (opened on first use).
    fn with_conn<T>(&self, f: impl FnOnce(&mut nfnl::Conn) -> Result<T, nfnl::NlError>) -> Result<T, FirewallError> {
        let mut guard = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let conn = match &mut *guard {
            Some(c) => c,
            None => guard.insert(nfnl::Conn::open().map_err(|e| self.nl_err(e))?),
        };
        let result = f(conn);
        if result.is_err() {
            // Whatever the kernel still had to say on it must not be read as the next answer.
            *guard = None;
        }
        result.map_err(|e| self.nl_err(e))
    }

    fn nl_err(&self, e: nfnl::NlError) -> FirewallError {
        FirewallError::Netlink { op: self.op, target: self.target.to_owned(), request: e.request, source: e.source }
    }

    /// Reads the table (an absent table reads as empty).
    pub(crate) fn list(&self) -> Result<TableState, FirewallError> {
        if self.netlink {
            return self
                .with_conn(|conn| {
                    let chains = nfnl::decode::chains(conn)?;
                    nfnl::decode::table(conn, &chains, FAMILY_NAME, self.table)
                })
                .or_else(|e| if no_nf_tables(&e) { Ok(TableState::default()) } else { Err(e) });
        }
        match self.nft(&["-j", "list", "table", FAMILY_NAME, self.table], None) {
            Ok(out) => TableState::parse(&out).map_err(|e| self.json_err(e)),
            Err(err @ FirewallError::Nft { .. }) => {
                // Most likely the table does not exist; ask rather than parse the message.
                let tables = self.nft(&["-j", "list", "tables", FAMILY_NAME], None)?;
                match state::lists_table(&tables, FAMILY_NAME, self.table).map_err(|e| self.json_err(e))? {
                    false => Ok(TableState::default()),
                    true => Err(err),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Reads nook's table and the whole ruleset (other software's tables), in one `nft` run.
    ///
    /// Over netlink: the chains of every table, and nook's rules; the whole ruleset with
    /// `nft -j list ruleset` only when another table has a forward filter chain (whose
    /// rules [`Ruleset`] must read).
    /// Table `family table` (not nook's main table: the egress tables), as [`Ctx::list`] reads
    /// it.
    pub(crate) fn list_in(&self, family: &str, table: &str) -> Result<TableState, FirewallError> {
        if self.netlink {
            return self
                .with_conn(|conn| {
                    let chains = nfnl::decode::chains(conn)?;
                    nfnl::decode::table(conn, &chains, family, table)
                })
                .or_else(|e| if no_nf_tables(&e) { Ok(TableState::default()) } else { Err(e) });
        }
        let tables = self.nft(&["-j", "list", "tables", family], None)?;
        if !state::lists_table(&tables, family, table).map_err(|e| self.json_err(e))? {
            return Ok(TableState::default());
        }
        let out = self.nft(&["-j", "list", "table", family, table], None)?;
        let mut state = TableState::parse(&out).map_err(|e| self.json_err(e))?;
        state.exists = true;
        Ok(state)
    }

    /// Applies a JSON batch (`{"nftables": [...]}`) built outside `render` (the egress
    /// tables), as [`Ctx::apply`] does.
    pub(crate) fn apply_json(&self, batch: &serde_json::Value) -> Result<(), FirewallError> {
        if self.netlink {
            let requests = nfnl::encode::batch(batch).map_err(|e| self.nl_err(e))?;
            return self.with_conn(|conn| conn.apply(requests));
        }
        let payload = serde_json::to_vec(batch).map_err(|e| self.json_err(e))?;
        self.nft(&["-j", "-f", "-"], Some(&payload)).map(drop)
    }

    pub(crate) fn list_all(&self) -> Result<(TableState, Ruleset), FirewallError> {
        if self.netlink {
            let own = self
                .with_conn(|conn| {
                    let chains = nfnl::decode::chains(conn)?;
                    if nfnl::foreign_forward(&chains, self.table) {
                        return Ok(None);
                    }
                    let state = nfnl::decode::table(conn, &chains, FAMILY_NAME, self.table)?;
                    Ok(Some((state, Ruleset { chains, rules: Vec::new() })))
                })
                .or_else(|e| if no_nf_tables(&e) { Ok(Some(Default::default())) } else { Err(e) })?;
            if let Some(own) = own {
                return Ok(own);
            }
        }
        let out = self.nft(&["-j", "list", "ruleset"], None)?;
        let state = TableState::from_ruleset(&out, FAMILY_NAME, self.table).map_err(|e| self.json_err(e))?;
        let ruleset = Ruleset::parse(&out).map_err(|e| self.json_err(e))?;
        Ok((state, ruleset))
    }

    /// Applies `batch` as one transaction (`nft -j -f -`, or one netlink batch): all of it
    /// or nothing.
    pub(crate) fn apply(&self, batch: &nfs::Nftables<'_>) -> Result<(), FirewallError> {
        if self.netlink {
            let json = serde_json::to_value(batch).map_err(|e| self.json_err(e))?;
            let requests = nfnl::encode::batch(&json).map_err(|e| self.nl_err(e))?;
            nook_ns::failpoint::check("firewall.apply", format_args!("{} {}", self.op, self.target))
                .map_err(|e| self.nl_err(nfnl::NlError { request: "batch".into(), source: e }))?;
            return self.with_conn(|conn| conn.apply(requests));
        }
        let payload = serde_json::to_vec(batch).map_err(|e| self.json_err(e))?;
        nook_ns::failpoint::check("firewall.apply", format_args!("{} {}", self.op, self.target))
            .map_err(|e| self.spawn_err(e))?;
        self.nft(&["-j", "-f", "-"], Some(&payload)).map(drop)
    }

    /// Sets the sysctl at `path` (under `/proc/sys`) to `value` unless it already has it;
    /// returns whether it wrote.
    ///
    /// Network sysctls resolve to the namespace of the thread that opens the file, so this
    /// acts in the backend's namespace (the calling thread's).
    pub(crate) fn ensure_sysctl(&self, path: &Path, value: &'static str) -> Result<bool, FirewallError> {
        let current = std::fs::read_to_string(path).sys_at("read", path)?;
        if current.trim() == value {
            return Ok(false);
        }
        std::fs::write(path, value).sys_at("write", path)?;
        Ok(true)
    }

    /// [`Ctx::ensure_sysctl`], where a missing file (the interface is already gone) is fine.
    pub(crate) fn ensure_sysctl_if_present(&self, path: &Path, value: &'static str) -> Result<(), FirewallError> {
        match self.ensure_sysctl(path, value) {
            Err(FirewallError::Sys { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map(drop),
        }
    }
}

/// What the kernel answers when it has no nf_tables (`socket`: no nfnetlink; a request: no
/// nf_tables subsystem): then there is no ruleset, and reading one finds it empty (so tearing
/// down on such a host succeeds; setting up fails at the write).
const NO_NF_TABLES: [i32; 2] = [libc::EPROTONOSUPPORT, libc::EOPNOTSUPP];

fn no_nf_tables(e: &FirewallError) -> bool {
    matches!(e, FirewallError::Netlink { source, .. } if source.raw_os_error().is_some_and(|n| NO_NF_TABLES.contains(&n)))
}

/// `net.ipv4.ip_forward`.
pub(crate) const IPV4_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// `net.ipv6.conf.all.forwarding`.
pub(crate) const IPV6_FORWARD: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

/// `net.ipv4.conf.BRIDGE.route_localnet`.
pub(crate) fn route_localnet(bridge: &str) -> PathBuf {
    Path::new("/proc/sys/net/ipv4/conf").join(bridge).join("route_localnet")
}
