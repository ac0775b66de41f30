//! The rtnetlink socket: framing, sequence numbers, acks, dumps and batches.
//!
//! Requests are built with `netlink-packet-route`'s typed messages and serialized into one
//! reused send buffer; answers are read into one reused 64 KiB receive buffer and walked
//! frame by frame (`NetlinkBuffer`), so an ack costs no allocation. Only the payloads a
//! caller asked for are handed to a decoder.

use std::fmt;
use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::{NetlinkError, Result};
use crate::error::SysContext;

/// Size of the receive buffer. The kernel fills dump datagrams up to 32 KiB (and a single
/// `RTM_GETLINK` answer is a few KiB), so nothing it sends to us is truncated in practice;
/// if a datagram ever is, the buffer grows for the next one and the operation fails with
/// `EMSGSIZE`. (Peeking every datagram's size first would cost a second `recv` per answer.)
const RX_BUF: usize = 64 * 1024;

/// At most this many requests go into one `send` of a batch: every ack is its own skb
/// (~1 KiB of receive-buffer accounting each), and acks the socket has no room for are
/// dropped by the kernel. 128 stays far below the default `rmem_default` (208 KiB).
pub(super) const BATCH_CHUNK: usize = 128;

/// How many times a dump interrupted by a concurrent change (`NLM_F_DUMP_INTR`) is retried.
const DUMP_RETRIES: usize = 5;

const NL_HEADER_LEN: usize = 16;

/// What a request was about, rendered only when an error needs it.
#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    /// A link by name.
    Name(&'a str),
    /// A link by index.
    Index(u32),
    /// Anything already formatted.
    Display(&'a dyn fmt::Display),
    /// A whole table (dumps).
    All(&'static str),
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Name(n) => write!(f, "{n:?}"),
            Target::Index(i) => write!(f, "ifindex {i}"),
            Target::Display(d) => d.fmt(f),
            Target::All(what) => f.write_str(what),
        }
    }
}

/// A connected `NETLINK_ROUTE` socket with its buffers and sequence counter.
pub(super) struct Conn {
    sock: Socket,
    seq: u32,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn").field("fd", &self.sock).field("seq", &self.seq).finish_non_exhaustive()
    }
}

fn sys_err(call: &'static str, source: io::Error) -> NetlinkError {
    NetlinkError::Sys { call, path: None, source }
}

/// One frame of an answer: its type, flags and payload.
pub(super) struct Frame<'a> {
    /// `nlmsg_type`.
    pub(super) kind: u16,
    /// The payload after the netlink header.
    pub(super) payload: &'a [u8],
}

impl Conn {
    /// Opens a socket in the calling thread's network namespace.
    pub(super) fn open() -> Result<Conn> {
        let sock = Socket::new(NETLINK_ROUTE).sys("socket")?;
        // Connecting to the kernel (port 0) autobinds a port id and filters out anything not
        // sent by the kernel.
        sock.connect(&SocketAddr::new(0, 0)).sys("connect")?;
        // Acks carry only the request's header, not the whole request (smaller answers).
        // Both options are optimisations: an old kernel without them still works.
        let _ = sock.set_cap_ack(true);
        // Lets the kernel filter dumps (addresses of one link, routes of one table).
        let _ = sock.set_netlink_get_strict_chk(true);
        Ok(Conn { sock, seq: initial_seq(), rx: Vec::with_capacity(RX_BUF), tx: Vec::with_capacity(1024) })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            self.seq = 1;
        }
        self.seq
    }

    /// Appends one request to the send buffer; returns its sequence number.
    pub(super) fn push(&mut self, msg: RouteNetlinkMessage, flags: u16) -> u32 {
        let seq = self.next_seq();
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let start = self.tx.len().next_multiple_of(4);
        let len = nl.buffer_len();
        self.tx.resize(start + len, 0);
        nl.serialize(&mut self.tx[start..start + len]);
        seq
    }

    fn send_tx(&mut self) -> Result<()> {
        let result = loop {
            match self.sock.send(&self.tx, 0) {
                Ok(n) if n == self.tx.len() => break Ok(()),
                Ok(_) => break Err(sys_err("send", io::Error::from_raw_os_error(libc::EMSGSIZE))),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(sys_err("send", e)),
            }
        };
        self.tx.clear();
        result
    }

    /// Receives one datagram into the receive buffer; returns whether it was truncated.
    fn recv(&mut self) -> Result<bool> {
        loop {
            self.rx.clear();
            match self.sock.recv(&mut self.rx, libc::MSG_TRUNC) {
                Ok(n) if n > self.rx.capacity() => {
                    // The datagram did not fit: it is lost. Grow for the next one.
                    self.rx.clear();
                    self.rx.reserve(n.next_multiple_of(4096));
                    return Ok(true);
                }
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(sys_err("recv", e)),
            }
        }
    }

    /// Sends one request (`NLM_F_REQUEST | NLM_F_ACK | flags`) and waits for its ack.
    /// Frames answering it before the ack (a `GET` reply, an `NLM_F_ECHO` echo) go to
    /// `on_frame`.
    pub(super) fn request(
        &mut self,
        op: &'static str,
        target: Target<'_>,
        msg: RouteNetlinkMessage,
        flags: u16,
        on_frame: impl FnMut(Frame<'_>) -> Result<()>,
    ) -> Result<()> {
        if let Err(source) = nook_ns::failpoint::check("netlink.request", format_args!("{op} {target}")) {
            // As the kernel would refuse it.
            return Err(NetlinkError::Kernel { op, target: target.to_string(), source });
        }
        self.tx.clear();
        let seq = self.push(msg, NLM_F_ACK | flags);
        self.send_tx()?;
        self.collect(op, target, seq, on_frame).map(|_| ())
    }

    /// Sends one request and returns `Ok(())` on ack.
    pub(super) fn ack(
        &mut self,
        op: &'static str,
        target: Target<'_>,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<()> {
        self.request(op, target, msg, flags, |_| Ok(()))
    }

    /// Dumps a table: `make` builds the request (again if the dump was interrupted by a
    /// concurrent change, `NLM_F_DUMP_INTR`), `decode` turns each answer frame into an item
    /// (or skips it with `None`).
    pub(super) fn dump<T>(
        &mut self,
        op: &'static str,
        make: impl Fn() -> RouteNetlinkMessage,
        mut decode: impl FnMut(Frame<'_>) -> std::result::Result<Option<T>, String>,
    ) -> Result<Vec<T>> {
        let mut attempt = 0;
        loop {
            let mut out = Vec::new();
            self.tx.clear();
            let seq = self.push(make(), NLM_F_DUMP);
            self.send_tx()?;
            let interrupted = self.collect(op, Target::All("dump"), seq, |f| {
                if let Some(item) = decode(f).map_err(|detail| NetlinkError::Decode { op, detail })? {
                    out.push(item);
                }
                Ok(())
            })?;
            attempt += 1;
            if !interrupted || attempt > DUMP_RETRIES {
                return Ok(out);
            }
        }
    }

    /// Reads frames of sequence `seq` until its ack, error or `NLMSG_DONE`; stale frames
    /// (other sequence numbers, e.g. the rest of an earlier failed operation) are skipped.
    /// Returns whether a dump frame carried `NLM_F_DUMP_INTR`.
    fn collect(
        &mut self,
        op: &'static str,
        target: Target<'_>,
        seq: u32,
        mut on_frame: impl FnMut(Frame<'_>) -> Result<()>,
    ) -> Result<bool> {
        let mut interrupted = false;
        // The first error seen; reading continues to the end of this sequence so the
        // socket is clean for the next request.
        let mut failed: Option<NetlinkError> = None;
        loop {
            if self.recv()? {
                // The lost datagram may have held the ack or `NLMSG_DONE`: stop here rather
                // than wait for it (what is left of this sequence is skipped later).
                return Err(truncated());
            }
            let mut finished = false;
            for frame in Frames::new(&self.rx) {
                let (header, payload) = match frame {
                    Ok(f) => f,
                    Err(detail) => {
                        return Err(NetlinkError::Decode { op, detail });
                    }
                };
                if header.sequence_number != seq {
                    continue;
                }
                if header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match header.message_type {
                    NLMSG_ERROR | NLMSG_DONE => {
                        finished = true;
                        let code = payload.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if code != 0 && failed.is_none() {
                            failed = Some(NetlinkError::Kernel {
                                op,
                                target: target.to_string(),
                                source: io::Error::from_raw_os_error(code.saturating_abs()),
                            });
                        }
                    }
                    NLMSG_NOOP => {}
                    NLMSG_OVERRUN => {
                        failed.get_or_insert(sys_err("recv (overrun)", io::Error::from_raw_os_error(libc::ENOBUFS)));
                    }
                    kind if failed.is_none() => {
                        if let Err(e) = on_frame(Frame { kind, payload }) {
                            failed = Some(e);
                        }
                    }
                    _ => {}
                }
            }
            if finished {
                return match failed {
                    Some(e) => Err(e),
                    None => Ok(interrupted),
                };
            }
        }
    }

    /// Sends many requests built by `build` back to back in as few `send` calls as
    /// possible, then reads all the acks. Returns, per request, its error code (0 = acked).
    pub(super) fn batch(
        &mut self,
        count: usize,
        mut build: impl FnMut(usize) -> RouteNetlinkMessage,
    ) -> Result<Vec<i32>> {
        let mut codes = vec![0; count];
        let mut start = 0;
        while start < count {
            let end = (start + BATCH_CHUNK).min(count);
            self.tx.clear();
            let first = self.seq.wrapping_add(1);
            for i in start..end {
                let msg = build(i);
                self.push(msg, NLM_F_ACK);
            }
            self.send_tx()?;
            let mut pending = end - start;
            while pending > 0 {
                if self.recv()? {
                    return Err(truncated());
                }
                for frame in Frames::new(&self.rx) {
                    let (header, payload) = frame.map_err(|detail| NetlinkError::Decode { op: "batch ack", detail })?;
                    let offset = header.sequence_number.wrapping_sub(first) as usize;
                    if header.message_type != NLMSG_ERROR || offset >= end - start {
                        continue;
                    }
                    let code = payload.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    codes[start + offset] = code.saturating_abs();
                    pending -= 1;
                }
            }
            start = end;
        }
        Ok(codes)
    }
}

fn truncated() -> NetlinkError {
    sys_err("recv (datagram truncated)", io::Error::from_raw_os_error(libc::EMSGSIZE))
}

/// A sequence start that differs between sockets, so a frame meant for another socket
/// with the same port id in another namespace is unlikely to match.
fn initial_seq() -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

/// Iterates the netlink frames in one datagram.
struct Frames<'a> {
    buf: &'a [u8],
}

impl<'a> Frames<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Frames { buf }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = std::result::Result<(NetlinkHeader, &'a [u8]), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < NL_HEADER_LEN {
            return None;
        }
        let nb = match NetlinkBuffer::new_checked(self.buf) {
            Ok(nb) => nb,
            Err(e) => {
                self.buf = &[];
                return Some(Err(e.to_string()));
            }
        };
        let len = nb.length() as usize;
        let mut header = NetlinkHeader::default();
        header.length = nb.length();
        header.message_type = nb.message_type();
        header.flags = nb.flags();
        header.sequence_number = nb.sequence_number();
        header.port_number = nb.port_number();
        let payload = &self.buf[NL_HEADER_LEN..len];
        self.buf = self.buf.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some(Ok((header, payload)))
    }
}

/// Reads a native-endian `u32` attribute value.
pub(super) fn u32_value(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_walks_aligned_messages_and_rejects_bad_lengths() {
        let mut buf = Vec::new();
        for (ty, seq, payload) in [(NLMSG_ERROR, 7u32, &[0u8, 0, 0, 0][..]), (16, 8, &[1, 2, 3][..])] {
            let len = (NL_HEADER_LEN + payload.len()) as u32;
            buf.extend_from_slice(&len.to_ne_bytes());
            buf.extend_from_slice(&ty.to_ne_bytes());
            buf.extend_from_slice(&0u16.to_ne_bytes());
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(payload);
            buf.resize(buf.len().next_multiple_of(4), 0);
        }
        let frames: Vec<_> = Frames::new(&buf).map(|f| f.unwrap()).collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].0.sequence_number, 7);
        assert_eq!(frames[1].0.message_type, 16);
        assert_eq!(frames[1].1, &[1, 2, 3]);

        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(Frames::new(&bad).next().unwrap().is_err());
    }

    #[test]
    fn handles_can_move_between_threads() {
        fn send<T: Send>() {}
        send::<Conn>();
        send::<super::super::Netlink>();
    }

    #[test]
    fn targets_render() {
        assert_eq!(Target::Name("nk0").to_string(), "\"nk0\"");
        assert_eq!(Target::Index(3).to_string(), "ifindex 3");
    }
}
