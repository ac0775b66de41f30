//! The input side of an apply: compression detected from magic bytes, compressed bytes
//! counted for progress, the uncompressed stream hashed (sha256) for the DiffID.

use std::cell::Cell;
use std::io::{self, BufReader, Read};
use std::rc::Rc;

use sha2::{Digest as _, Sha256};

/// Read buffer size (input side, and in front of the tar parser).
pub(crate) const READ_BUF: usize = 256 * 1024;

/// Compression of a layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// A plain tar.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

/// Detects the compression from the first bytes of a stream.
pub(crate) fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Counts the bytes read through it into a shared cell.
pub(crate) struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R> Counting<R> {
    pub(crate) fn new(inner: R, count: Rc<Cell<u64>>) -> Self {
        Counting { inner, count }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Gives back up to 4 peeked bytes before the rest of the stream.
pub(crate) struct Prefixed<R> {
    head: [u8; 4],
    pos: usize,
    len: usize,
    inner: R,
}

impl<R: Read> Prefixed<R> {
    /// Reads up to 4 bytes (fewer only at EOF) so that [`Prefixed::head`] can be looked at.
    pub(crate) fn new(mut inner: R) -> io::Result<Self> {
        let mut head = [0u8; 4];
        let mut len = 0;
        while len < head.len() {
            match inner.read(&mut head[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Prefixed { head, pos: 0, len, inner })
    }

    /// The peeked bytes.
    pub(crate) fn head(&self) -> &[u8] {
        &self.head[..self.len]
    }
}

impl<R: Read> Read for Prefixed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.len {
            let n = (self.len - self.pos).min(buf.len());
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// Hashes (sha256) and counts everything read through it.
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Hashing { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// The sha256 so far and the byte count.
    pub(crate) fn finish(self) -> ([u8; 32], u64) {
        (self.hasher.finalize().into(), self.bytes)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The decompressed stream.
pub(crate) type Decoded<'a> = Box<dyn Read + 'a>;

/// Wraps `input` (counted into `count`) in the right decompressor.
pub(crate) fn decoder<'a, R: Read + 'a>(input: R, count: Rc<Cell<u64>>) -> io::Result<Decoded<'a>> {
    let pre = Prefixed::new(Counting::new(input, count))?;
    Ok(match detect(pre.head()) {
        Compression::None => Box::new(pre),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(READ_BUF, pre))),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(READ_BUF, pre))?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_magic() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(detect(b"etc/"), Compression::None);
        assert_eq!(detect(b""), Compression::None);
    }

    #[test]
    fn prefixed_gives_everything_back() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut p = Prefixed::new(&data[..]).unwrap();
        assert_eq!(p.head(), &[0, 1, 2, 3]);
        let mut out = Vec::new();
        p.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        let mut p = Prefixed::new(&b"ab"[..]).unwrap();
        assert_eq!(p.head(), b"ab");
        let mut out = Vec::new();
        p.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
    }

    #[test]
    fn hashing_matches_known_vector() {
        let mut h = Hashing::new(&b"abc"[..]);
        io::copy(&mut h, &mut io::sink()).unwrap();
        let (d, n) = h.finish();
        assert_eq!(n, 3);
        assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
    }
}
