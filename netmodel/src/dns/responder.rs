//! The server thread of a [`Host`](crate::Host): the sandboxes' sockets, the `poll` loop,
//! forwarding to the upstream resolvers. See the module docs of [`crate::dns`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{JoinHandle, ThreadId};
use std::time::Instant;

use hickory_proto::op::Message;
use nook_ns::NsFd;
use rustix::event::{EventfdFlags, PollFd, PollFlags};

use super::message::{self, Reply};
use super::nat;
use super::{DNS_PORT, EMBEDDED_DNS, TCP_TIMEOUT, UPSTREAM_TIMEOUT, Zone};
use crate::error::{Result, SysContext};
use crate::files::{DEFAULT_NAMESERVERS, DnsConfig, FilesError};

/// The embedded DNS of one host: where to forward from and to, and the thread while any
/// sandbox is registered.
#[derive(Debug)]
pub(crate) struct DnsHub {
    /// The host's network namespace (the forwarding socket's).
    netns: NsFd,
    /// The host's `resolv.conf`.
    resolv_conf: PathBuf,
    running: Mutex<Option<Running>>,
}

/// A sandbox's two sockets, bound inside its namespace with the redirect in place, not
/// served yet ([`DnsHub::bind`]).
#[derive(Debug)]
pub(crate) struct Bound {
    udp: UdpSocket,
    tcp: TcpListener,
}

/// A sandbox's place on the server; dropping it unregisters (and closes its sockets before
/// returning).
#[derive(Debug)]
pub(crate) struct Registration {
    hub: Arc<DnsHub>,
    id: u64,
}

#[derive(Debug)]
struct Running {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    acked: Condvar,
    /// An eventfd: written to wake the thread up.
    wake: OwnedFd,
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<Arc<Entry>>,
    /// Bumped at every change of `entries`.
    generation: u64,
    /// The generation the thread has taken (it holds no older sockets).
    seen: u64,
    stop: bool,
}

/// One sandbox's sockets and names.
struct Entry {
    id: u64,
    udp: UdpSocket,
    tcp: TcpListener,
    zone: Weak<dyn Zone>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("id", &self.id).field("udp", &self.udp).field("tcp", &self.tcp).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DnsHub {
    /// A hub forwarding from `netns` to the resolvers of `resolv_conf`; nothing runs yet.
    pub(crate) fn new(netns: NsFd, resolv_conf: PathBuf) -> DnsHub {
        DnsHub { netns, resolv_conf, running: Mutex::new(None) }
    }

    /// The host's `resolv.conf` as it is (a missing file is an empty configuration).
    pub(crate) fn host_config(&self) -> std::result::Result<DnsConfig, FilesError> {
        read_or_empty(&self.resolv_conf)
    }

    /// The sandbox side of a registration (a connect runs it in parallel with creating the
    /// link): binds [`EMBEDDED_DNS`] on ports the kernel picks inside `sandbox` and redirects
    /// its port 53 (UDP and TCP) there. Nothing is served yet: see [`DnsHub::serve`].
    pub(crate) fn bind(sandbox: &NsFd) -> Result<Bound> {
        let bound = nook_ns::on_thread_in(&[sandbox], || -> std::io::Result<(UdpSocket, TcpListener)> {
            // Ports the kernel picks; `127.0.0.11:53` is redirected to them (see `nat`).
            let udp = UdpSocket::bind(SocketAddr::new(EMBEDDED_DNS, 0))?;
            udp.set_nonblocking(true)?;
            let tcp = TcpListener::bind(SocketAddr::new(EMBEDDED_DNS, 0))?;
            tcp.set_nonblocking(true)?;
            nat::install(udp.local_addr()?.port(), tcp.local_addr()?.port())?;
            Ok((udp, tcp))
        })?;
        let (udp, tcp) = bound.sys("bind 127.0.0.11 and redirect its port 53")?;
        Ok(Bound { udp, tcp })
    }

    /// Serves `zone` on sockets [`DnsHub::bind`] made, starting the thread if it is not
    /// running.
    pub(crate) fn serve(self: &Arc<Self>, bound: Bound, zone: Weak<dyn Zone>) -> Result<Registration> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let Bound { udp, tcp } = bound;
        let mut running = lock(&self.running);
        if running.is_none() {
            *running = Some(Running::start(&self.netns, self.upstreams()?)?);
        }
        let shared = &running.as_ref().expect("started above").shared;
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        {
            let mut state = lock(&shared.state);
            state.entries.push(Arc::new(Entry { id, udp, tcp, zone }));
            state.generation += 1;
        }
        shared.wake();
        Ok(Registration { hub: Arc::clone(self), id })
    }

    /// The upstream resolvers: the host's `nameserver`s (loopback ones too: the thread
    /// forwards from the host's namespace), Docker's fallback when there are none.
    fn upstreams(&self) -> Result<Vec<SocketAddr>> {
        let mut servers = read_or_empty(&self.resolv_conf)?.nameservers;
        if servers.is_empty() {
            servers = DEFAULT_NAMESERVERS.to_vec();
        }
        Ok(servers.into_iter().map(|ip| SocketAddr::new(ip, DNS_PORT)).collect())
    }

    /// Whether the thread runs (while a sandbox is registered).
    pub(crate) fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }
}

fn read_or_empty(path: &Path) -> std::result::Result<DnsConfig, FilesError> {
    match DnsConfig::read(path) {
        Err(FilesError::Sys { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(DnsConfig::default())
        }
        other => other,
    }
}

impl Registration {
    /// The host's `resolv.conf` (for the sandbox's `search` and `options`).
    pub(crate) fn host_config(&self) -> std::result::Result<DnsConfig, FilesError> {
        self.hub.host_config()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The hub's lock is not held while waiting for the thread: it may be answering a
        // query of a sandbox whose connect waits for that lock.
        let (shared, thread, generation) = {
            let mut running = lock(&self.hub.running);
            let Some(r) = running.as_mut() else { return };
            let shared = Arc::clone(&r.shared);
            // Dropped by the server thread itself (it held the sandbox's last reference): it
            // drops its snapshot of the sockets at its next turn; it cannot wait for itself.
            let on_thread = std::thread::current().id() == r.thread_id;
            let mut state = lock(&shared.state);
            state.entries.retain(|e| e.id != self.id);
            state.generation += 1;
            let generation = state.generation;
            let mut thread = None;
            if state.entries.is_empty() {
                state.stop = true;
                thread = r.thread.take();
                *running = None;
            }
            drop(state);
            shared.wake();
            if on_thread {
                return;
            }
            (shared, thread, generation)
        };
        if let Some(thread) = thread {
            let _ = thread.join();
            return;
        }
        let mut state = lock(&shared.state);
        while state.seen < generation && !state.stop {
            state = shared.acked.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Shared {
    fn wake(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

impl Running {
    /// Starts the thread in `netns` with its forwarding sockets.
    fn start(netns: &NsFd, upstreams: Vec<SocketAddr>) -> Result<Running> {
        let wake = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).sys("eventfd")?;
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), acked: Condvar::new(), wake });
        let ns = netns.try_clone()?;
        let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("nk-dns".into())
            .spawn(move || {
                // This thread is the server's alone: it stays in the host's namespace.
                let opened = ns.enter().map_err(crate::Error::from).and_then(|()| Forwarder::open(upstreams));
                match opened {
                    Ok(forwarder) => {
                        let _ = tx.send(Ok(()));
                        serve(&theirs, forwarder);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .sys("spawn the DNS thread")?;
        let thread_id = thread.thread().id();
        match rx.recv() {
            Ok(Ok(())) => Ok(Running { shared, thread: Some(thread), thread_id }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(std::io::Error::other("the DNS thread ended at start")).sys("spawn the DNS thread")?
            }
        }
    }
}

/// Where an answer goes back to.
enum ReplyTo {
    /// A sandbox's UDP socket (by entry id: a sandbox gone meanwhile gets nothing).
    Udp(u64, SocketAddr),
    /// A TCP client of a sandbox (by entry id).
    Tcp(u64, TcpStream),
}

impl ReplyTo {
    /// The entry (sandbox) the client is of.
    fn entry(&self) -> u64 {
        match self {
            ReplyTo::Udp(id, _) | ReplyTo::Tcp(id, _) => *id,
        }
    }
}

/// A query sent upstream.
struct Pending {
    upstream_id: u16,
    /// The upstreams of the query's sandbox, and the one asked.
    list: Arc<[SocketAddr]>,
    upstream: usize,
    request: Box<Message>,
    client_id: u16,
    to: ReplyTo,
    deadline: Instant,
}

/// The sockets in the host namespace that talk to the upstream resolvers.
struct Forwarder {
    upstreams: Arc<[SocketAddr]>,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    pending: Vec<Pending>,
}

impl Forwarder {
    fn open(upstreams: Vec<SocketAddr>) -> Result<Forwarder> {
        let open = |any: &str| -> std::io::Result<UdpSocket> {
            let s = UdpSocket::bind(any)?;
            s.set_nonblocking(true)?;
            Ok(s)
        };
        // Both families: a sandbox's own upstreams may be of either.
        let v4 = Some(open("0.0.0.0:0").sys("bind")?);
        // A host without IPv6 cannot reach IPv6 upstreams: those are skipped.
        let v6 = open("[::]:0").ok();
        Ok(Forwarder { upstreams: upstreams.into(), v4, v6, pending: Vec::new() })
    }

    fn socket(&self, to: &SocketAddr) -> Option<&UdpSocket> {
        if to.is_ipv4() { self.v4.as_ref() } else { self.v6.as_ref() }
    }

    /// Sends `request` to the first upstream from `first` that takes it; else answers
    /// `SERVFAIL`.
    fn forward(
        &mut self,
        request: Box<Message>,
        client_id: u16,
        to: ReplyTo,
        (list, first): (Arc<[SocketAddr]>, usize),
        entries: &[Arc<Entry>],
    ) {
        for upstream in first..list.len() {
            let addr = list[upstream];
            let Some(socket) = self.socket(&addr) else { continue };
            let upstream_id = loop {
                let id = crate::util::random_u64() as u16;
                if !self.pending.iter().any(|p| p.upstream_id == id) {
                    break id;
                }
            };
            let Some(bytes) = message::with_id((*request).clone(), upstream_id) else { break };
            if socket.send_to(&bytes, addr).is_ok() {
                let deadline = Instant::now() + UPSTREAM_TIMEOUT;
                self.pending.push(Pending { upstream_id, list, upstream, request, client_id, to, deadline });
                return;
            }
        }
        if let Some(bytes) = message::servfail(&request, client_id) {
            send(to, &bytes, entries);
        }
    }

    /// An answer from an upstream: back to whoever asked.
    fn answered(&mut self, bytes: &[u8], from: SocketAddr, entries: &[Arc<Entry>]) {
        let Some(answer) = message::parse_answer(bytes) else { return };
        let Some(i) =
            self.pending.iter().position(|p| p.upstream_id == answer.metadata.id && p.list[p.upstream] == from)
        else {
            return;
        };
        let pending = self.pending.swap_remove(i);
        if !allowed_first(&answer, pending.to.entry(), entries) {
            if let Some(bytes) = message::servfail(&pending.request, pending.client_id) {
                send(pending.to, &bytes, entries);
            }
            return;
        }
        if let Some(bytes) = message::with_id(answer, pending.client_id) {
            send(pending.to, &bytes, entries);
        }
    }

    /// Queries whose upstream did not answer in time go to the next one.
    fn expire(&mut self, entries: &[Arc<Entry>]) {
        let now = Instant::now();
        let (late, waiting): (Vec<Pending>, Vec<Pending>) =
            std::mem::take(&mut self.pending).into_iter().partition(|p| p.deadline <= now);
        self.pending = waiting;
        for p in late {
            self.forward(p.request, p.client_id, p.to, (p.list, p.upstream + 1), entries);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }
}

/// Under an egress policy, lets the sandbox of entry `id` reach the addresses of `answer`
/// before it is sent; `false` when that failed (the answer must not go out).
fn allowed_first(answer: &Message, id: u64, entries: &[Arc<Entry>]) -> bool {
    let Some(zone) = entries.iter().find(|e| e.id == id).and_then(|e| e.zone.upgrade()) else { return false };
    !zone.policed() || zone.allow_answered(&message::addresses_of(answer))
}

fn send(to: ReplyTo, bytes: &[u8], entries: &[Arc<Entry>]) {
    match to {
        ReplyTo::Udp(id, client) => {
            if let Some(entry) = entries.iter().find(|e| e.id == id) {
                let _ = entry.udp.send_to(bytes, client);
            }
        }
        ReplyTo::Tcp(_, mut stream) => {
            let Ok(len) = u16::try_from(bytes.len()) else { return };
            let mut framed = len.to_be_bytes().to_vec();
            framed.extend_from_slice(bytes);
            // A small answer into a fresh socket's empty send buffer: it does not block.
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(TCP_TIMEOUT));
            let _ = stream.write_all(&framed);
        }
    }
}

/// A TCP client of a sandbox, until its framed query is in.
struct Conn {
    entry: u64,
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
}

/// Most TCP clients waiting at once (all sandboxes); the oldest goes first beyond it.
const MAX_CONNS: usize = 256;

impl Conn {
    /// Reads what is there; the whole query once it is in, `Err` when the client is done for.
    fn read(&mut self) -> Result<Option<Vec<u8>>, ()> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
            if self.buf.len() > 2 + usize::from(u16::MAX) {
                return Err(());
            }
        }
        let Some(len) = self.buf.get(..2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
            return Ok(None);
        };
        if self.buf.len() < 2 + len {
            return Ok(None);
        }
        Ok(Some(self.buf[2..2 + len].to_vec()))
    }
}

/// The loop: until asked to stop, waits on the wake-up eventfd, the forwarding sockets,
/// every sandbox's sockets and the TCP clients whose query is not in yet (none of them
/// blocks the others: a TCP client gets [`TCP_TIMEOUT`] to send its query).
fn serve(shared: &Shared, mut forwarder: Forwarder) {
    let mut entries: Vec<Arc<Entry>> = Vec::new();
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; 65535];
    loop {
        // Let go of the old sockets (and of the clients of sandboxes gone) before saying
        // which generation is taken.
        entries.clear();
        let generation = {
            let state = lock(&shared.state);
            if state.stop {
                break;
            }
            entries.extend(state.entries.iter().cloned());
            state.generation
        };
        conns.retain(|c| entries.iter().any(|e| e.id == c.entry));
        forwarder.pending.retain(|p| match &p.to {
            ReplyTo::Udp(id, _) | ReplyTo::Tcp(id, _) => entries.iter().any(|e| e.id == *id),
        });
        {
            let mut state = lock(&shared.state);
            state.seen = state.seen.max(generation);
            shared.acked.notify_all();
        }
        let now = Instant::now();
        conns.retain(|c| c.deadline > now);
        let deadline = forwarder.next_deadline().into_iter().chain(conns.iter().map(|c| c.deadline)).min();
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(now);
            rustix::event::Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) }
        });
        let ready: Vec<bool> = {
            let mut fds = vec![PollFd::new(&shared.wake, PollFlags::IN)];
            fds.extend(forwarder.v4.iter().chain(forwarder.v6.iter()).map(|s| PollFd::new(s, PollFlags::IN)));
            for e in &entries {
                fds.push(PollFd::new(&e.udp, PollFlags::IN));
                fds.push(PollFd::new(&e.tcp, PollFlags::IN));
            }
            fds.extend(conns.iter().map(|c| PollFd::new(&c.stream, PollFlags::IN)));
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                // Not expected (EINVAL, ENOMEM); a pause keeps a persistent failure from spinning.
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
            fds.iter().map(|f| !f.revents().is_empty()).collect()
        };
        let mut ready = ready.into_iter();
        if ready.next() == Some(true) {
            let mut counter = [0u8; 8];
            let _ = rustix::io::read(&shared.wake, &mut counter);
        }
        let sockets: Vec<&UdpSocket> = forwarder.v4.iter().chain(forwarder.v6.iter()).collect();
        let mut answers = Vec::new();
        for socket in sockets {
            if ready.next() != Some(true) {
                continue;
            }
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                answers.push((buf[..n].to_vec(), from));
            }
        }
        for (answer, from) in answers {
            forwarder.answered(&answer, from, &entries);
        }
        let mut accepted = Vec::new();
        for entry in &entries {
            if ready.next() == Some(true) {
                while let Ok((n, client)) = entry.udp.recv_from(&mut buf) {
                    on_query(&buf[..n], entry, ReplyTo::Udp(entry.id, client), &mut forwarder, &entries);
                }
            }
            if ready.next() == Some(true) {
                while let Ok((stream, _)) = entry.tcp.accept() {
                    if stream.set_nonblocking(true).is_ok() {
                        let deadline = Instant::now() + TCP_TIMEOUT;
                        accepted.push(Conn { entry: entry.id, stream, buf: Vec::new(), deadline });
                    }
                }
            }
        }
        // Clients with something to read (those accepted just now are read at once too).
        let mut waiting = Vec::with_capacity(conns.len() + accepted.len());
        for (mut conn, readable) in conns.drain(..).zip(ready).chain(accepted.into_iter().map(|c| (c, true))) {
            if !readable {
                waiting.push(conn);
                continue;
            }
            match conn.read() {
                Ok(None) => waiting.push(conn),
                Err(()) => {}
                Ok(Some(query)) => {
                    let Some(entry) = entries.iter().find(|e| e.id == conn.entry) else { continue };
                    let to = ReplyTo::Tcp(conn.entry, conn.stream);
                    on_query(&query, entry, to, &mut forwarder, &entries);
                }
            }
        }
        conns = waiting;
        if conns.len() > MAX_CONNS {
            conns.drain(..conns.len() - MAX_CONNS);
        }
        forwarder.expire(&entries);
    }
}

fn on_query(bytes: &[u8], entry: &Entry, to: ReplyTo, forwarder: &mut Forwarder, entries: &[Arc<Entry>]) {
    // A sandbox being torn down: no answer.
    let Some(zone) = entry.zone.upgrade() else { return };
    let reply = message::handle(bytes, &*zone);
    let own = zone.upstreams().filter(|l| !l.is_empty());
    drop(zone);
    match reply {
        Reply::Answer(answer) => {
            // The zone's own answers (peers) are allowed first too, under a policy.
            let parsed = Message::from_vec(&answer).ok();
            if parsed.is_some_and(|m| !allowed_first(&m, entry.id, entries)) {
                return;
            }
            send(to, &answer, entries)
        }
        Reply::Forward(request) => {
            let client_id = request.metadata.id;
            let list: Arc<[SocketAddr]> = match own {
                Some(ips) => ips.into_iter().map(|ip| SocketAddr::new(ip, DNS_PORT)).collect(),
                None => Arc::clone(&forwarder.upstreams),
            };
            forwarder.forward(request, client_id, to, (list, 0), entries);
        }
        Reply::Drop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<DnsHub>();
        check::<Registration>();
    }

    #[test]
    fn idle_hub_runs_nothing() {
        let hub = DnsHub::new(NsFd::current(nook_ns::Namespace::Net).unwrap(), PathBuf::from("/nonexistent"));
        assert!(!hub.is_running());
        assert_eq!(hub.upstreams().unwrap().len(), DEFAULT_NAMESERVERS.len());
    }
}
