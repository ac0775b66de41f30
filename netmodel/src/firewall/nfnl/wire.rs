//! nfnetlink framing: a writer of messages with nested attributes, and a reader of attribute
//! lists. Integers in nf_tables attributes are big-endian; register contents are raw bytes.

/// `NLA_F_NESTED`.
const NLA_F_NESTED: u16 = 0x8000;
/// The type bits of an attribute's type field.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Size of `struct nlmsghdr`.
pub(super) const NLMSG_HDRLEN: usize = 16;
/// Size of `struct nfgenmsg`.
pub(super) const NFGEN_LEN: usize = 4;

fn align4(n: usize) -> usize {
    n.next_multiple_of(4)
}

/// A buffer of netlink messages under construction.
#[derive(Debug, Default)]
pub(super) struct Writer {
    pub(super) buf: Vec<u8>,
    start: usize,
    nests: Vec<usize>,
}

impl Writer {
    /// Starts a message: `nlmsghdr` (`kind`, `flags`, `seq`) and `nfgenmsg` (`family`,
    /// version 0, `res_id`).
    pub(super) fn begin(&mut self, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
        self.buf.resize(align4(self.buf.len()), 0);
        self.start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `end`
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        self.buf.extend_from_slice(&[family, 0]);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
    }

    /// Ends the message started last.
    pub(super) fn end(&mut self) {
        let len = u32::try_from(self.buf.len() - self.start).unwrap_or(u32::MAX);
        self.buf[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// An attribute with `data` as its payload.
    pub(super) fn put(&mut self, kind: u16, data: &[u8]) {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// A NUL-terminated string attribute.
    pub(super) fn put_str(&mut self, kind: u16, s: &str) {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.put(kind, &data);
    }

    /// A big-endian `u32` attribute.
    pub(super) fn put_u32(&mut self, kind: u16, v: u32) {
        self.put(kind, &v.to_be_bytes());
    }

    /// A big-endian `u64` attribute.
    pub(super) fn put_u64(&mut self, kind: u16, v: u64) {
        self.put(kind, &v.to_be_bytes());
    }

    /// Opens a nested attribute (closed by [`Writer::close`]).
    pub(super) fn open(&mut self, kind: u16) {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }

    /// Closes the nested attribute opened last.
    pub(super) fn close(&mut self) {
        let Some(at) = self.nests.pop() else { return };
        let len = u16::try_from(self.buf.len() - at).unwrap_or(u16::MAX);
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }
}

/// The attributes of a payload, as `(type, data)`; stops at the first malformed one.
pub(super) fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let kind = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let data = &b[4..len];
        b = &b[align4(len).min(b.len())..];
        Some((kind, data))
    })
}

/// The data of the first attribute of type `kind`.
pub(super) fn attr(b: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(b).find(|(k, _)| *k == kind).map(|(_, d)| d)
}

/// A string attribute's text (up to its NUL).
pub(super) fn text(data: &[u8]) -> String {
    let end = data.iter().position(|&c| c == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// A big-endian `u32` attribute's value.
pub(super) fn be32(data: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(..4)?.try_into().ok()?))
}

/// A big-endian `u64` attribute's value.
pub(super) fn be64(data: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_round_trip() {
        let mut w = Writer::default();
        w.begin(0x0a06, 1, 7, 1, 0);
        w.put_str(1, "nook");
        w.open(4);
        w.put_u32(2, 0xdead_beef);
        w.put(3, &[1, 2, 3]);
        w.close();
        w.put_u64(3, 42);
        w.end();
        let len = u32::from_ne_bytes(w.buf[..4].try_into().unwrap()) as usize;
        assert_eq!(len, w.buf.len());
        let payload = &w.buf[NLMSG_HDRLEN + NFGEN_LEN..];
        let found: Vec<u16> = attrs(payload).map(|(k, _)| k).collect();
        assert_eq!(found, [1, 4, 3]);
        assert_eq!(text(attr(payload, 1).unwrap()), "nook");
        let nested = attr(payload, 4).unwrap();
        assert_eq!(be32(attr(nested, 2).unwrap()), Some(0xdead_beef));
        assert_eq!(attr(nested, 3), Some(&[1u8, 2, 3][..]));
        assert_eq!(be64(attr(payload, 3).unwrap()), Some(42));
        assert!(attrs(&[8, 0, 1]).next().is_none());
    }
}

/// Walking encoded batches, for the unit tests of the encoder.
#[cfg(test)]
pub(crate) mod walk {
    use super::*;

    /// The attributes (after `nfgenmsg`) of each message in `buf`.
    pub(crate) fn messages(mut buf: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while buf.len() >= NLMSG_HDRLEN {
            let len = u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize;
            out.push(buf[NLMSG_HDRLEN + NFGEN_LEN..len].to_vec());
            buf = &buf[align4(len).min(buf.len())..];
        }
        out
    }

    /// A rule message's expressions: name and data.
    pub(crate) fn exprs_of(rule: &[u8]) -> Vec<(String, Vec<u8>)> {
        attrs(attr(rule, 4).unwrap_or_default())
            .map(|(_, e)| (text(attr(e, 1).unwrap_or_default()), attr(e, 2).unwrap_or_default().to_vec()))
            .collect()
    }
}
