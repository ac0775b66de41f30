//! `/etc/hosts` and `/etc/resolv.conf` for a sandbox: its name, its peers on user-defined
//! networks, DNS servers from the host or given.
//!
//! Everything here is pure except reading a `resolv.conf` ([`DnsConfig::read`],
//! [`DnsConfig::from_file`], [`DnsConfig::from_host`]): the caller writes the rendered text
//! where the sandbox will see it (usually a file bind-mounted over the rootfs's).
//!
//! # `/etc/hosts`
//!
//! [`hosts_file`] writes Docker's loopback lines (`localhost` for `127.0.0.1` and `::1`, and
//! the `ip6-*` names), then one line per own address with the hostname (an FQDN also gets its
//! first label as an alias), then one line per peer (where the embedded DNS server, [`crate::dns`], does not
//! serve the sandbox, peers on user-defined networks are resolved through this file). A sandbox without an
//! address (network `none`) maps its hostname to `127.0.1.1`, as Debian does, so resolving
//! its own name still works.
//!
//! # `/etc/resolv.conf`
//!
//! [`DnsConfig::parse`] reads the format glibc reads (`nameserver`, `search`/`domain`, the
//! last of which wins, `options`; `#` and `;` comments; other keywords ignored).
//! [`DnsConfig::for_sandbox`] drops the name servers a sandbox cannot reach from its own
//! network namespace — loopback ones (a local resolver such as systemd-resolved's
//! `127.0.0.53` or dnsmasq's `127.0.0.1` listens in the host's namespace, not the
//! sandbox's), unspecified ones and IPv6 link-local ones (another link) — and, when none
//! remains, uses a fallback given by the caller. [`DnsConfig::from_host`] and
//! [`DnsConfig::from_file`] do this with Docker's fallback, Google's public servers
//! [`DEFAULT_NAMESERVERS`] (`8.8.8.8`, `8.8.4.4`); note that it sends the sandbox's queries to
//! a third party. Like Docker, [`DnsConfig::from_host`] reads systemd-resolved's upstream list
//! (`/run/systemd/resolve/resolv.conf`) when `/etc/resolv.conf` names only local resolvers.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::error::{SysContext, SysError};
use crate::validation::{NameRule, ValidationError};

/// The host's resolver configuration.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// systemd-resolved's list of upstream servers (when `/etc/resolv.conf` points to its stub).
pub const SYSTEMD_RESOLVED_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// Docker's fallback name servers (Google Public DNS, IPv4).
pub const DEFAULT_NAMESERVERS: [IpAddr; 2] =
    [IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4))];

/// Docker's IPv6 fallback name servers (Google Public DNS), for sandboxes with IPv6.
pub const DEFAULT_NAMESERVERS_V6: [IpAddr; 2] = [
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8844)),
];

/// Where the hostname of a sandbox without addresses points (Debian's convention).
pub const NO_ADDRESS_HOSTNAME_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1));

/// Longest host or domain name (RFC 1035, without the trailing dot).
pub const MAX_NAME_LEN: usize = 253;

/// Longest label of a name.
pub const MAX_LABEL_LEN: usize = 63;

/// A failure building a sandbox's `/etc/hosts` or `/etc/resolv.conf`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilesError {
    /// Bad input: a host name, alias, search domain or resolver option, a hosts entry
    /// without names.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A `resolv.conf` could not be read.
    #[error("cannot {call} {}: {source}", path.as_deref().unwrap_or(Path::new("")).display())]
    Sys {
        /// The call (`"read"`).
        call: &'static str,
        /// The file.
        path: Option<PathBuf>,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl FilesError {
    /// The OS error number, if this is a failed file operation.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            FilesError::Sys { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl From<SysError> for FilesError {
    fn from(e: SysError) -> FilesError {
        FilesError::Sys { call: e.call, path: e.path, source: e.source }
    }
}

/// Checks that `name` is a valid host name (RFC 1123): at most 253 bytes, dot-separated
/// labels of 1-63 letters, digits and `-`, not starting or ending with `-`; not an IPv4
/// address. No trailing dot, no `_`.
pub fn validate_hostname(name: &str) -> Result<(), ValidationError> {
    check_name(name, false).map_err(|rule| ValidationError::Name { field: "hostname", value: name.to_owned(), rule })
}

pub(crate) fn check_name(name: &str, trailing_dot: bool) -> Result<(), NameRule> {
    let body = if trailing_dot { name.strip_suffix('.').unwrap_or(name) } else { name };
    if body.is_empty() {
        return Err(NameRule::Empty);
    }
    if body.len() > MAX_NAME_LEN {
        return Err(NameRule::TooLong { max: MAX_NAME_LEN });
    }
    for label in body.split('.') {
        if label.is_empty() {
            return Err(NameRule::EmptyComponent);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameRule::LabelTooLong { max: MAX_LABEL_LEN });
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(NameRule::Characters { allowed: "letters, digits, `-` and `.`" });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameRule::LabelHyphen);
        }
    }
    if body.parse::<Ipv4Addr>().is_ok() {
        return Err(NameRule::Ipv4Address);
    }
    Ok(())
}

/// One line of `/etc/hosts`: an address and its names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct HostsEntry {
    /// The address.
    pub address: IpAddr,
    /// Its names (the first is the canonical one).
    pub names: Vec<String>,
}

impl HostsEntry {
    /// `address` with `names` (the first is the canonical one).
    pub fn new(address: IpAddr, names: Vec<String>) -> HostsEntry {
        HostsEntry { address, names }
    }

    /// Checks that the entry has names and that each is a valid host name.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.names.is_empty() {
            return Err(ValidationError::EmptyHostsEntry { address: self.address });
        }
        self.names.iter().try_for_each(|n| validate_hostname(n))
    }
}

/// Docker's loopback lines.
const LOOPBACK_HOSTS: &str = "127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
";

/// `/etc/hosts` for a sandbox named `hostname` with addresses `own`, seeing `peers`.
///
/// Pure and infallible: validate the inputs first ([`validate_hostname`],
/// [`HostsEntry::validate`]), or use [`try_hosts_file`]. Peer entries without names are
/// skipped.
///
/// ```
/// use nook_netmodel::files::{HostsEntry, hosts_file};
///
/// let peer = HostsEntry::new("10.88.0.3".parse()?, vec!["db".into()]);
/// let hosts = hosts_file("web", &["10.88.0.2".parse()?], &[peer]);
/// assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"));
/// assert!(hosts.ends_with("10.88.0.2\tweb\n10.88.0.3\tdb\n"));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn hosts_file(hostname: &str, own: &[IpAddr], peers: &[HostsEntry]) -> String {
    let mut out = String::from(LOOPBACK_HOSTS);
    let names = match hostname.split_once('.') {
        Some((short, _)) if !short.is_empty() => format!("{hostname} {short}"),
        _ => hostname.to_owned(),
    };
    if own.is_empty() {
        let _ = writeln!(out, "{NO_ADDRESS_HOSTNAME_IP}\t{names}");
    }
    for ip in own {
        let _ = writeln!(out, "{ip}\t{names}");
    }
    for peer in peers.iter().filter(|p| !p.names.is_empty()) {
        let _ = writeln!(out, "{}\t{}", peer.address, peer.names.join(" "));
    }
    out
}

/// [`hosts_file`] after validating the hostname and the peers.
pub fn try_hosts_file(hostname: &str, own: &[IpAddr], peers: &[HostsEntry]) -> Result<String, FilesError> {
    validate_hostname(hostname)?;
    peers.iter().try_for_each(HostsEntry::validate)?;
    Ok(hosts_file(hostname, own, peers))
}

/// A resolver configuration (`/etc/resolv.conf`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct DnsConfig {
    /// Name servers, in order.
    pub nameservers: Vec<IpAddr>,
    /// Search domains, in order.
    pub search: Vec<String>,
    /// Resolver options (`ndots:2`, `edns0`, ...).
    pub options: Vec<String>,
}

impl DnsConfig {
    /// Parses `resolv.conf` text as glibc does (lenient: unknown keywords and unparsable
    /// addresses are skipped). Name servers with a zone (`fe80::1%eth0`) are skipped: the
    /// zone cannot be carried, and the link is not the sandbox's anyway. Duplicates are
    /// dropped. Nothing is filtered for a sandbox: see [`DnsConfig::for_sandbox`].
    pub fn parse(text: &str) -> DnsConfig {
        let mut conf = DnsConfig::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else { continue };
            if keyword.starts_with('#') || keyword.starts_with(';') {
                continue;
            }
            // A `#` or `;` word starts a trailing comment.
            let words: Vec<&str> = words.take_while(|w| !w.starts_with('#') && !w.starts_with(';')).collect();
            match keyword {
                "nameserver" => match words.first().and_then(|w| w.parse::<IpAddr>().ok()) {
                    Some(ip) if !conf.nameservers.contains(&ip) => conf.nameservers.push(ip),
                    _ => {}
                },
                // `domain` and `search` are exclusive: the last one wins.
                "search" | "domain" => conf.search = words.iter().map(|w| (*w).to_owned()).collect(),
                "options" => conf.options.extend(words.iter().map(|w| (*w).to_owned())),
                _ => {}
            }
        }
        conf
    }

    /// Reads and parses a `resolv.conf` as it is (no filtering).
    pub fn read(path: impl AsRef<Path>) -> Result<DnsConfig, FilesError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).sys_at("read", path)?;
        Ok(DnsConfig::parse(&text))
    }

    /// Reads `path` and makes it usable in a sandbox: unreachable name servers dropped, and
    /// [`DEFAULT_NAMESERVERS`] (Google's `8.8.8.8`, `8.8.4.4`, like Docker) when none remains.
    /// For another fallback: `DnsConfig::read(path)?.for_sandbox(&mine)`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<DnsConfig, FilesError> {
        Ok(DnsConfig::read(path)?.for_sandbox(&DEFAULT_NAMESERVERS))
    }

    /// The host's configuration (`/etc/resolv.conf`) made usable in a sandbox, like
    /// [`DnsConfig::from_file`]. When the host names only local resolvers (systemd-resolved's
    /// stub `127.0.0.53`, a local dnsmasq) and systemd-resolved's upstream list
    /// ([`SYSTEMD_RESOLVED_CONF`]) names reachable servers, that list is used instead. A host
    /// without `/etc/resolv.conf` (minimal systems, containers) has no resolver configured:
    /// like Docker, the sandbox then gets the same fallback.
    pub fn from_host() -> Result<DnsConfig, FilesError> {
        DnsConfig::from_host_files(Path::new(RESOLV_CONF), Path::new(SYSTEMD_RESOLVED_CONF))
    }

    /// [`DnsConfig::from_host`] with the two files' paths given.
    fn from_host_files(resolv_conf: &Path, resolved_conf: &Path) -> Result<DnsConfig, FilesError> {
        let conf = match DnsConfig::read(resolv_conf) {
            Err(FilesError::Sys { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                DnsConfig::default()
            }
            r => r?,
        };
        let conf = match conf.nameservers.iter().any(|ip| reachable_from_sandbox(*ip)) {
            true => conf,
            false => match DnsConfig::read(resolved_conf) {
                Ok(upstream) if upstream.nameservers.iter().any(|ip| reachable_from_sandbox(*ip)) => upstream,
                _ => conf,
            },
        };
        Ok(conf.for_sandbox(&DEFAULT_NAMESERVERS))
    }

    /// Drops the name servers a sandbox cannot reach from its own network namespace
    /// (loopback, unspecified, IPv6 link-local); if none remains, uses `fallback`. Search
    /// domains and options are kept.
    pub fn for_sandbox(mut self, fallback: &[IpAddr]) -> DnsConfig {
        self.nameservers.retain(|ip| reachable_from_sandbox(*ip));
        if self.nameservers.is_empty() {
            self.nameservers = fallback.to_vec();
        }
        self
    }

    /// Checks the search domains (domain names; a trailing dot is allowed) and the options
    /// (non-empty, no whitespace or control characters, no comment characters).
    pub fn validate(&self) -> Result<(), ValidationError> {
        for d in &self.search {
            if let Err(rule) = check_name(d, true) {
                return Err(ValidationError::Name { field: "search domain", value: d.clone(), rule });
            }
        }
        for o in &self.options {
            let bad = |rule| Err(ValidationError::Name { field: "resolver option", value: o.clone(), rule });
            if o.is_empty() {
                return bad(NameRule::Empty);
            }
            if o.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return bad(NameRule::Forbidden { forbidden: "whitespace or a control character" });
            }
            if o.starts_with('#') || o.starts_with(';') {
                return bad(NameRule::Comment);
            }
        }
        Ok(())
    }

    /// The `resolv.conf` text: `nameserver` lines, then `search` and `options` lines when
    /// there are any. An empty configuration renders as an empty file (glibc then tries
    /// `127.0.0.1`, which in a sandbox usually answers nothing).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for ip in &self.nameservers {
            let _ = writeln!(out, "nameserver {ip}");
        }
        if !self.search.is_empty() {
            let _ = writeln!(out, "search {}", self.search.join(" "));
        }
        if !self.options.is_empty() {
            let _ = writeln!(out, "options {}", self.options.join(" "));
        }
        out
    }
}

/// Whether a sandbox in its own network namespace can reach name server `ip`.
fn reachable_from_sandbox(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    let link_local_v6 = matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
    !ip.is_loopback() && !ip.is_unspecified() && !link_local_v6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hosts_file_has_loopback_own_then_peers() {
        let peers = [
            HostsEntry { address: ip("10.88.0.3"), names: vec!["db".into(), "db.web".into()] },
            HostsEntry { address: ip("fd00:88::3"), names: vec!["db".into()] },
            HostsEntry { address: ip("10.88.0.9"), names: vec![] },
        ];
        let hosts = hosts_file("app", &[ip("10.88.0.2"), ip("fd00:88::2")], &peers);
        assert_eq!(
            hosts,
            "127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             ff00::0\tip6-mcastprefix\n\
             ff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n\
             10.88.0.2\tapp\n\
             fd00:88::2\tapp\n\
             10.88.0.3\tdb db.web\n\
             fd00:88::3\tdb\n"
        );
    }

    #[test]
    fn hosts_file_fqdn_and_no_address() {
        let hosts = hosts_file("app.example.com", &[], &[]);
        assert!(hosts.ends_with("ip6-allrouters\n127.0.1.1\tapp.example.com app\n"), "{hosts}");
        assert!(hosts_file("app", &[ip("10.0.0.2")], &[]).ends_with("\n10.0.0.2\tapp\n"));
    }

    #[test]
    fn hostnames_follow_rfc_1123() {
        for ok in ["a", "web-1", "1web", "123", "a.b.c", "xn--bcher-kva.example", &"a".repeat(63)] {
            assert!(validate_hostname(ok).is_ok(), "{ok:?}");
        }
        let long = vec!["a".repeat(63); 4].join("."); // 255 bytes
        for (bad, reason) in [
            ("", "empty"),
            ("-web", "a label starts or ends with `-`"),
            ("web-", "a label starts or ends with `-`"),
            ("a..b", "has an empty label or component"),
            ("a.", "has an empty label or component"),
            ("my_host", "only letters, digits, `-` and `.` are allowed"),
            ("héllo", "only letters, digits, `-` and `.` are allowed"),
            ("a b", "only letters, digits, `-` and `.` are allowed"),
            ("10.0.0.1", "is an IPv4 address"),
            (&"a".repeat(64), "has a label longer than 63 bytes"),
            (&long, "longer than 253 bytes"),
        ] {
            match validate_hostname(bad) {
                Err(ValidationError::Name { field: "hostname", value, rule }) => {
                    assert_eq!((value.as_str(), rule.to_string().as_str()), (bad, reason));
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn try_hosts_file_validates() {
        assert!(try_hosts_file("app", &[], &[]).is_ok());
        assert!(matches!(try_hosts_file("bad_name", &[], &[]), Err(FilesError::Invalid(ValidationError::Name { .. }))));
        let empty = HostsEntry { address: ip("10.0.0.3"), names: vec![] };
        assert!(matches!(
            try_hosts_file("app", &[], &[empty]),
            Err(FilesError::Invalid(ValidationError::EmptyHostsEntry { .. }))
        ));
        let bad = HostsEntry { address: ip("10.0.0.3"), names: vec!["ok".into(), "-no".into()] };
        assert!(
            matches!(try_hosts_file("app", &[], &[bad]), Err(FilesError::Invalid(ValidationError::Name { value, .. })) if value == "-no")
        );
    }

    #[test]
    fn parses_resolv_conf_like_glibc() {
        let text = "# generated\n\
                    ; also a comment\n\
                    nameserver 127.0.0.53\n\
                    nameserver 10.0.0.1 # trailing comment\n\
                    nameserver   2001:db8::1\n\
                    nameserver fe80::1%eth0\n\
                    nameserver not-an-address\n\
                    nameserver 10.0.0.1\n\
                    domain first.example\n\
                    search corp.example lab.example.\n\
                    options ndots:2\n\
                    options edns0 trust-ad ; comment\n\
                    sortlist 130.155.160.0/255.255.240.0\n\
                    \n";
        let c = DnsConfig::parse(text);
        assert_eq!(c.nameservers, [ip("127.0.0.53"), ip("10.0.0.1"), ip("2001:db8::1")]);
        assert_eq!(c.search, ["corp.example", "lab.example."]);
        assert_eq!(c.options, ["ndots:2", "edns0", "trust-ad"]);
        // The last of domain/search wins.
        assert_eq!(DnsConfig::parse("search a.example\ndomain b.example\n").search, ["b.example"]);
        assert_eq!(DnsConfig::parse(""), DnsConfig::default());
    }

    #[test]
    fn for_sandbox_drops_unreachable_servers_and_falls_back() {
        let c = DnsConfig::parse(
            "nameserver 127.0.0.53\nnameserver ::1\nnameserver ::ffff:127.0.0.1\nnameserver 0.0.0.0\n\
             nameserver fe80::1\nnameserver 9.9.9.9\nsearch example.com\noptions ndots:1\n",
        );
        let s = c.clone().for_sandbox(&DEFAULT_NAMESERVERS);
        assert_eq!(s.nameservers, [ip("9.9.9.9")]);
        assert_eq!((s.search.as_slice(), s.options.as_slice()), (c.search.as_slice(), c.options.as_slice()));
        let local = DnsConfig::parse("nameserver 127.0.0.53\nsearch example.com\n");
        assert_eq!(local.clone().for_sandbox(&DEFAULT_NAMESERVERS).nameservers, DEFAULT_NAMESERVERS);
        assert_eq!(local.clone().for_sandbox(&[ip("1.1.1.1")]).nameservers, [ip("1.1.1.1")]);
        assert!(local.for_sandbox(&[]).nameservers.is_empty());
        assert_eq!(DEFAULT_NAMESERVERS, [ip("8.8.8.8"), ip("8.8.4.4")]);
        assert_eq!(DEFAULT_NAMESERVERS_V6, [ip("2001:4860:4860::8888"), ip("2001:4860:4860::8844")]);
    }

    #[test]
    fn renders_and_round_trips() {
        let c = DnsConfig {
            nameservers: vec![ip("10.0.0.1"), ip("2001:db8::1")],
            search: vec!["corp.example".into(), "example.com.".into()],
            options: vec!["ndots:2".into(), "edns0".into()],
        };
        assert!(c.validate().is_ok());
        let text = c.render();
        assert_eq!(
            text,
            "nameserver 10.0.0.1\nnameserver 2001:db8::1\nsearch corp.example example.com.\noptions ndots:2 edns0\n"
        );
        assert_eq!(DnsConfig::parse(&text), c);
        assert_eq!(DnsConfig::default().render(), "");
        assert_eq!(
            DnsConfig { nameservers: vec![ip("1.1.1.1")], ..DnsConfig::default() }.render(),
            "nameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn validate_search_and_options() {
        let with = |search: &[&str], options: &[&str]| DnsConfig {
            nameservers: vec![],
            search: search.iter().map(|s| (*s).into()).collect(),
            options: options.iter().map(|s| (*s).into()).collect(),
        };
        assert!(matches!(with(&["a..b"], &[]).validate(), Err(ValidationError::Name { field: "search domain", .. })));
        assert!(matches!(
            with(&["."], &[]).validate(),
            Err(ValidationError::Name { field: "search domain", rule: NameRule::Empty, .. })
        ));
        assert!(matches!(
            with(&[], &["nd ots"]).validate(),
            Err(ValidationError::Name { field: "resolver option", .. })
        ));
        assert!(matches!(with(&[], &[""]).validate(), Err(ValidationError::Name { field: "resolver option", .. })));
        assert!(matches!(with(&[], &["#x"]).validate(), Err(ValidationError::Name { field: "resolver option", .. })));
        assert!(with(&["a.example."], &["rotate"]).validate().is_ok());
    }

    #[test]
    fn reads_files() {
        let dir = nook_testutil::TempDir::new("resolv").unwrap();
        let path = dir.join("resolv.conf");
        std::fs::write(&path, "nameserver 127.0.0.1\nsearch lan\n").unwrap();
        assert_eq!(DnsConfig::read(&path).unwrap().nameservers, [ip("127.0.0.1")]);
        let c = DnsConfig::from_file(&path).unwrap();
        assert_eq!(
            (c.nameservers.as_slice(), c.search.as_slice()),
            (&DEFAULT_NAMESERVERS[..], &["lan".to_owned()][..])
        );
        match DnsConfig::read(dir.join("missing")) {
            Err(FilesError::Sys { path: Some(path), source, .. }) => {
                assert!(path.ends_with("missing"));
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
    }

    /// Found by the 6.1 VM lane, whose guest has no `/etc/resolv.conf`: `from_host` failed with
    /// a read error there, and with it every sandbox's `resolv.conf`.
    #[test]
    fn a_host_without_resolv_conf_gets_the_fallback() {
        let dir = nook_testutil::TempDir::new("resolv").unwrap();
        let c = DnsConfig::from_host_files(&dir.join("missing"), &dir.join("also-missing")).unwrap();
        assert_eq!(c.nameservers, DEFAULT_NAMESERVERS);
        // systemd-resolved's list still counts when only it exists.
        std::fs::write(dir.join("resolved"), "nameserver 192.0.2.53\n").unwrap();
        let c = DnsConfig::from_host_files(&dir.join("missing"), &dir.join("resolved")).unwrap();
        assert_eq!(c.nameservers, [ip("192.0.2.53")]);
        // Other read errors still fail (a directory where the file should be).
        assert!(matches!(DnsConfig::from_host_files(dir.path(), &dir.join("resolved")), Err(FilesError::Sys { .. })));
    }

    #[test]
    fn the_hosts_own_configuration_is_usable_in_a_sandbox() {
        // Read-only look at the machine's resolver configuration.
        if !Path::new(RESOLV_CONF).exists() {
            return;
        }
        let c = DnsConfig::from_host().unwrap();
        assert!(!c.nameservers.is_empty());
        assert!(c.nameservers.iter().all(|ip| reachable_from_sandbox(*ip)), "{c:?}");
    }
}
