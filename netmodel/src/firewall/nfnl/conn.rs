//! The `NETLINK_NETFILTER` socket: dumps and transactional batches.

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use super::wire::{NFGEN_LEN, NLMSG_HDRLEN, Writer};

/// `NFNL_SUBSYS_NFTABLES`.
pub(super) const SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN` / `NFNL_MSG_BATCH_END`.
const BATCH_BEGIN: u16 = 0x10;
const BATCH_END: u16 = 0x11;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// How many times a dump interrupted by a concurrent change is retried.
const DUMP_RETRIES: usize = 5;
/// Receive buffer: dump datagrams are at most 32 KiB.
const RX_BUF: usize = 64 * 1024;

/// A failed request: what it was and why.
#[derive(Debug)]
pub(crate) struct NlError {
    /// The request (`add rule inet nook nk-web-pre`, `dump rules`, ...).
    pub request: String,
    /// The error (the kernel's errno, a socket error, or `InvalidData`).
    pub source: io::Error,
}

impl NlError {
    pub(super) fn new(request: impl Into<String>, source: io::Error) -> NlError {
        NlError { request: request.into(), source }
    }

    pub(super) fn invalid(request: impl Into<String>, detail: impl Into<String>) -> NlError {
        NlError::new(request, io::Error::new(io::ErrorKind::InvalidData, detail.into()))
    }
}

/// One frame of an answer.
pub(super) struct Frame<'a> {
    /// `nfgenmsg.nfgen_family`.
    pub family: u8,
    /// The attributes after `nfgenmsg`.
    pub attrs: &'a [u8],
}

/// A batch of nf_tables requests applied as one transaction.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(super) w: Writer,
    /// What each request is, by its position (for errors).
    pub(super) what: Vec<String>,
}

impl Batch {
    /// Starts the next request: nf_tables message `msg` (`NFT_MSG_*`) of `family`.
    pub(super) fn begin(&mut self, msg: u16, flags: u16, family: u8, what: String) {
        // Sequence numbers: 1 for the batch's begin, 2.. for the requests.
        let seq = u32::try_from(self.what.len() + 2).unwrap_or(u32::MAX);
        self.w.begin((SUBSYS_NFTABLES << 8) | msg, NLM_F_REQUEST | NLM_F_ACK | flags, seq, family, 0);
        self.what.push(what);
    }

    /// Whether the batch holds no request.
    pub(crate) fn is_empty(&self) -> bool {
        self.what.is_empty()
    }
}

/// A socket opened in the calling thread's network namespace.
pub(crate) struct Conn {
    sock: Socket,
    seq: u32,
    rx: Vec<u8>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("seq", &self.seq).finish_non_exhaustive()
    }
}

impl Conn {
    /// Opens a socket in the calling thread's network namespace (the socket stays bound to
    /// it).
    pub(crate) fn open() -> Result<Conn, NlError> {
        let sock = Socket::new(NETLINK_NETFILTER).map_err(|e| NlError::new("socket", e))?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(|e| NlError::new("connect", e))?;
        // Acks carry only the request's header (an optimisation; old kernels lack it).
        let _ = sock.set_cap_ack(true);
        Ok(Conn { sock, seq: 0x6e6b_0000, rx: Vec::with_capacity(RX_BUF) })
    }

    fn send(&self, buf: &[u8], what: &str) -> Result<(), NlError> {
        loop {
            match self.sock.send(buf, 0) {
                Ok(n) if n == buf.len() => return Ok(()),
                Ok(_) => return Err(NlError::new(what, io::Error::from_raw_os_error(libc::EMSGSIZE))),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NlError::new(what, e)),
            }
        }
    }

    /// Receives one datagram (`flags`: `MSG_DONTWAIT` or 0); `false` when none is waiting.
    fn recv(&mut self, flags: libc::c_int, what: &str) -> Result<bool, NlError> {
        loop {
            self.rx.clear();
            match self.sock.recv(&mut self.rx, flags | libc::MSG_TRUNC) {
                Ok(n) if n > self.rx.capacity() => {
                    return Err(NlError::new(what, io::Error::from_raw_os_error(libc::EMSGSIZE)));
                }
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(NlError::new(what, e)),
            }
        }
    }

    /// Dumps nf_tables objects: request `msg` (`NFT_MSG_GET*`) for `family` (0: all), with
    /// attributes written by `attrs` (filters); `on_frame` sees each object.
    pub(super) fn dump(
        &mut self,
        what: &str,
        msg: u16,
        family: u8,
        attrs: impl Fn(&mut Writer),
        mut on_frame: impl FnMut(Frame<'_>) -> Result<(), NlError>,
    ) -> Result<(), NlError> {
        let mut attempt = 0;
        loop {
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            let mut w = Writer::default();
            w.begin((SUBSYS_NFTABLES << 8) | msg, NLM_F_REQUEST | NLM_F_DUMP, seq, family, 0);
            attrs(&mut w);
            w.end();
            self.send(&w.buf, what)?;
            let mut frames: Vec<(u8, Vec<u8>)> = Vec::new();
            let mut interrupted = false;
            'recv: loop {
                self.recv(0, what)?;
                for (header, payload) in frames_of(&self.rx) {
                    if header.seq != seq {
                        continue;
                    }
                    interrupted |= header.flags & NLM_F_DUMP_INTR != 0;
                    match header.kind {
                        NLMSG_DONE => break 'recv,
                        NLMSG_ERROR => match error_code(payload) {
                            0 => break 'recv,
                            code => return Err(NlError::new(what, io::Error::from_raw_os_error(code))),
                        },
                        _ if payload.len() >= NFGEN_LEN => frames.push((payload[0], payload[NFGEN_LEN..].to_vec())),
                        _ => return Err(NlError::invalid(what, "short nf_tables message")),
                    }
                }
            }
            attempt += 1;
            if interrupted && attempt <= DUMP_RETRIES {
                continue;
            }
            for (family, attrs) in &frames {
                on_frame(Frame { family: *family, attrs })?;
            }
            return Ok(());
        }
    }

    /// Applies `batch` as one transaction: every request or none. The kernel handles a batch
    /// synchronously, inside `send`: every answer is queued when it returns.
    pub(crate) fn apply(&mut self, batch: Batch) -> Result<(), NlError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut out = Writer::default();
        out.begin(BATCH_BEGIN, NLM_F_REQUEST, 1, 0, SUBSYS_NFTABLES);
        out.end();
        out.buf.extend_from_slice(&batch.w.buf);
        let end_seq = u32::try_from(batch.what.len() + 2).unwrap_or(u32::MAX);
        out.begin(BATCH_END, NLM_F_REQUEST, end_seq, 0, SUBSYS_NFTABLES);
        out.end();
        self.send(&out.buf, "batch")?;
        let mut acked = 0;
        let mut failed: Option<NlError> = None;
        while self.recv(libc::MSG_DONTWAIT, "batch")? {
            for (header, payload) in frames_of(&self.rx) {
                if header.kind != NLMSG_ERROR {
                    continue;
                }
                acked += 1;
                let code = error_code(payload);
                if code != 0 && failed.is_none() {
                    let at = usize::try_from(header.seq).unwrap_or(usize::MAX).wrapping_sub(2);
                    let what = batch.what.get(at).map_or("batch", String::as_str);
                    failed = Some(NlError::new(what, io::Error::from_raw_os_error(code)));
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if acked < batch.what.len() {
            return Err(NlError::invalid("batch", format!("{acked} of {} requests acknowledged", batch.what.len())));
        }
        Ok(())
    }
}

struct Header {
    kind: u16,
    flags: u16,
    seq: u32,
}

/// The frames of a datagram: header and payload.
fn frames_of(mut b: &[u8]) -> impl Iterator<Item = (Header, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(b[..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return None;
        }
        let header = Header {
            kind: u16::from_ne_bytes([b[4], b[5]]),
            flags: u16::from_ne_bytes([b[6], b[7]]),
            seq: u32::from_ne_bytes(b[8..12].try_into().ok()?),
        };
        let payload = &b[NLMSG_HDRLEN..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((header, payload))
    })
}

/// The errno of an `NLMSG_ERROR` payload (0: an ack).
fn error_code(payload: &[u8]) -> i32 {
    payload.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).saturating_abs()
}
