//! The input side of an apply: compression detected from magic bytes, compressed bytes
//! counted for progress, the uncompressed stream hashed (sha256) for the DiffID.

use std::cell::Cell;
use std::io::{self, BufReader, Read};
use std::rc::Rc;

use sha2::{Digest as _, Sha256};

/// Read buffer size in front of a decompressor.
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

/// A buffered reader that hashes (sha256) and counts everything it reads from `inner`.
///
/// It reads `inner` in chunks of up to [`HASH_CHUNK`] bytes and serves reads from them; a chunk
/// is hashed once it has been served (so every byte is copied once in user space). On a
/// machine with more than one CPU the hashing runs on a helper thread that gets the chunks
/// themselves (a bounded pool of buffers, so memory stays at a few MiB): extracting and hashing
/// then run side by side, which keeps an apply as fast as `tar -x` although `tar` hashes
/// nothing.
pub(crate) struct Hashing<R> {
    inner: R,
    bytes: u64,
    /// The current chunk (`len` is its capacity) and how much of it is filled / served.
    buf: Vec<u8>,
    filled: usize,
    pos: usize,
    hasher: Hasher,
    /// Whether some bytes were hashed inline (then it stays inline).
    hashed_inline: bool,
}

/// Size of the chunks read (and handed to the hashing thread).
pub(crate) const HASH_CHUNK: usize = 1024 * 1024;
/// Chunk buffers in flight between the reader and the hashing thread.
const HASH_BUFFERS: usize = 4;

enum Hasher {
    /// Hashing on this thread (small streams, or a single CPU).
    Inline(Sha256),
    /// Hashing on a helper thread.
    Thread {
        full: Option<std::sync::mpsc::SyncSender<(Vec<u8>, usize)>>,
        empty: std::sync::mpsc::Receiver<Vec<u8>>,
        handle: Option<std::thread::JoinHandle<[u8; 32]>>,
    },
}

impl<R> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Hashing {
            inner,
            bytes: 0,
            buf: vec![0u8; HASH_CHUNK],
            filled: 0,
            pos: 0,
            hasher: Hasher::Inline(Sha256::new()),
            hashed_inline: false,
        }
    }

    /// Hashes (or hands over) the current chunk and makes room for the next.
    fn retire_chunk(&mut self) {
        if self.filled == 0 {
            return;
        }
        if let Hasher::Inline(h) = &mut self.hasher {
            // The first chunk of a big stream starts the thread (nothing was hashed inline
            // yet, so it can start from a fresh state); once inline, always inline. A stream
            // that fits one chunk never starts a thread.
            let big = self.filled == self.buf.len();
            let thread = if self.hashed_inline || !big || !parallel() { None } else { spawn_hasher() };
            match thread {
                Some(t) => self.hasher = t,
                None => {
                    h.update(&self.buf[..self.filled]);
                    self.hashed_inline = true;
                    self.filled = 0;
                    self.pos = 0;
                    return;
                }
            }
        }
        if let Hasher::Thread { full, empty, .. } = &mut self.hasher {
            let next = empty.recv().unwrap_or_else(|_| vec![0u8; HASH_CHUNK]);
            let chunk = std::mem::replace(&mut self.buf, next);
            if let Some(tx) = full {
                let _ = tx.send((chunk, self.filled));
            }
        }
        self.filled = 0;
        self.pos = 0;
    }

    /// The sha256 of everything read from `inner` and the byte count.
    pub(crate) fn finish(mut self) -> ([u8; 32], u64) {
        let hash = match std::mem::replace(&mut self.hasher, Hasher::Inline(Sha256::new())) {
            Hasher::Inline(mut h) => {
                h.update(&self.buf[..self.filled]);
                h.finalize().into()
            }
            Hasher::Thread { mut full, handle, .. } => {
                let rest = std::mem::take(&mut self.buf);
                if let Some(tx) = full.take() {
                    let _ = tx.send((rest, self.filled));
                }
                drop(full);
                handle.and_then(|h| h.join().ok()).expect("the sha256 thread does not panic")
            }
        };
        (hash, self.bytes)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.filled {
            if self.filled == self.buf.len() {
                self.retire_chunk();
            }
            let n = loop {
                match self.inner.read(&mut self.buf[self.filled..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            self.filled += n;
            self.bytes += n as u64;
            if n == 0 {
                return Ok(0);
            }
        }
        let n = (self.filled - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Starts the hashing thread (`None` if no thread can be had).
fn spawn_hasher() -> Option<Hasher> {
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(HASH_BUFFERS);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_BUFFERS + 1);
    for _ in 0..HASH_BUFFERS - 1 {
        let _ = empty_tx.send(vec![0u8; HASH_CHUNK]);
    }
    let handle = std::thread::Builder::new()
        .name("nook-sha256".into())
        .spawn(move || {
            let mut h = Sha256::new();
            for (buf, len) in full_rx {
                h.update(&buf[..len]);
                let _ = empty_tx.send(buf);
            }
            <[u8; 32]>::from(h.finalize())
        })
        .ok()?;
    Some(Hasher::Thread { full: Some(full_tx), empty: empty_rx, handle: Some(handle) })
}

fn parallel() -> bool {
    static PARALLEL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PARALLEL.get_or_init(|| std::thread::available_parallelism().map(|n| n.get() > 1).unwrap_or(false))
}

/// Longest GNU long name / long link or PAX extended header accepted, in bytes (Go's
/// `archive/tar`, and so Docker, refuses bigger ones the same way).
pub(crate) const MAX_EXT_HEADER: u64 = 1024 * 1024;

/// Refuses oversized extension headers before the tar crate reads them.
///
/// The tar crate reads a GNU long name (`L`), long link (`K`) or PAX extended header (`x`)
/// entirely into memory, whatever size its header claims: a few KiB of zstd can claim many
/// GiB, and the whole process would die of OOM. This reader sits between the stream and the
/// tar crate and looks at the headers as they pass: the applier tells it (through
/// `watch`) where the header after each entry starts; a chain of extension headers from there
/// is followed, and one claiming more than [`MAX_EXT_HEADER`] bytes ends the read with an
/// error. It reads no further ahead than the tar crate asks (a header is read whole, 512
/// bytes, before it is served).
pub(crate) struct ExtLimit<R> {
    inner: R,
    /// Bytes served so far (the tar crate's position in the stream).
    pos: Rc<Cell<u64>>,
    /// Where the next header starts, while one is being watched for.
    watch: Rc<Cell<Option<u64>>>,
    hdr: [u8; 512],
    hdr_len: usize,
    hdr_served: usize,
}

impl<R: Read> ExtLimit<R> {
    pub(crate) fn new(inner: R) -> Self {
        ExtLimit {
            inner,
            pos: Rc::new(Cell::new(0)),
            watch: Rc::new(Cell::new(Some(0))),
            hdr: [0u8; 512],
            hdr_len: 0,
            hdr_served: 0,
        }
    }

    /// The shared position (bytes served) and the header watch.
    pub(crate) fn handles(&self) -> (Rc<Cell<u64>>, Rc<Cell<Option<u64>>>) {
        (self.pos.clone(), self.watch.clone())
    }

    /// Stops watching (what follows is passed through as it is) and gives back the stream.
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    /// Looks at a whole header at the watched position.
    fn inspect(&mut self, at: u64) -> io::Result<()> {
        self.watch.set(None);
        let h = tar::Header::from_byte_slice(&self.hdr);
        let recognized = h.as_gnu().is_some() || h.as_ustar().is_some();
        let t = h.entry_type();
        if !recognized || !(t.is_gnu_longname() || t.is_gnu_longlink() || t.is_pax_local_extensions()) {
            return Ok(()); // an entry (or the end): the applier watches again after it
        }
        let Ok(size) = h.entry_size() else { return Ok(()) }; // the tar crate refuses it
        if size > MAX_EXT_HEADER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{t:?} header of {size} bytes (more than {MAX_EXT_HEADER})"),
            ));
        }
        // Extension headers chain: the next header follows this one's data.
        self.watch.set(Some(at + 512 + size.div_ceil(512) * 512));
        Ok(())
    }
}

impl<R: Read> Read for ExtLimit<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.hdr_served == self.hdr_len
            && let Some(at) = self.watch.get()
        {
            let pos = self.pos.get();
            if pos == at {
                let mut len = 0;
                while len < self.hdr.len() {
                    match self.inner.read(&mut self.hdr[len..]) {
                        Ok(0) => break,
                        Ok(n) => len += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                self.hdr_len = len;
                self.hdr_served = 0;
                if len == self.hdr.len() {
                    self.inspect(at)?;
                } else {
                    self.watch.set(None);
                }
            } else if pos < at {
                let cap = (at - pos).min(out.len() as u64) as usize;
                let n = self.inner.read(&mut out[..cap])?;
                self.pos.set(pos + n as u64);
                return Ok(n);
            } else {
                self.watch.set(None);
            }
        }
        if self.hdr_served < self.hdr_len {
            let n = (self.hdr_len - self.hdr_served).min(out.len());
            out[..n].copy_from_slice(&self.hdr[self.hdr_served..self.hdr_served + n]);
            self.hdr_served += n;
            self.pos.set(self.pos.get() + n as u64);
            return Ok(n);
        }
        let n = self.inner.read(out)?;
        self.pos.set(self.pos.get() + n as u64);
        Ok(n)
    }
}

/// Watches how far an apply expands its input: the decompressed stream plus the holes of
/// sparse files, against the compressed bytes read ([`crate::Limits::max_ratio`]). Shared by
/// [`Guard`] (the stream) and the applier (holes); the limit that stopped the apply is left
/// in `hit`, so the applier can tell it from other read errors whatever the tar crate made of
/// the `io::Error`.
pub(crate) struct Meter {
    /// Compressed (input) bytes read so far (the counter [`Counting`] fills).
    input: Rc<Cell<u64>>,
    /// Decompressed stream bytes plus sparse holes.
    expanded: Cell<u64>,
    max_ratio: u64,
    grace: u64,
    /// The limit that was hit and the value reached.
    pub(crate) hit: Cell<Option<(crate::Limit, u64)>>,
}

impl Meter {
    pub(crate) fn new(input: Rc<Cell<u64>>, max_ratio: u64, grace: u64) -> Meter {
        Meter { input, expanded: Cell::new(0), max_ratio, grace, hit: Cell::new(None) }
    }

    /// Counts `n` more expanded bytes; an error once they exceed `max_ratio` times the input
    /// read plus the grace.
    pub(crate) fn expand(&self, n: u64) -> io::Result<()> {
        let expanded = self.expanded.get().saturating_add(n);
        self.expanded.set(expanded);
        let input = self.input.get();
        if expanded > input.saturating_mul(self.max_ratio).saturating_add(self.grace) {
            let ratio = expanded.div_ceil(input.max(1));
            self.hit.set(Some((crate::Limit::Ratio, ratio)));
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("layer expands {ratio}-fold ({expanded} bytes from {input}): over the ratio limit"),
            ));
        }
        Ok(())
    }
}

/// Counts the decompressed stream into a [`Meter`] and stops it once it expands too far.
pub(crate) struct Guard<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R> Guard<R> {
    pub(crate) fn new(inner: R, meter: Rc<Meter>) -> Self {
        Guard { inner, meter }
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.expand(n as u64)?;
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

    #[test]
    fn hashing_big_streams_in_odd_reads() {
        // Several chunks (the helper thread on a multi-CPU machine), read in odd sizes.
        let data: Vec<u8> = (0..(5 * HASH_CHUNK + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        let want: [u8; 32] = Sha256::digest(&data).into();
        for read_size in [1000usize, 4096, HASH_CHUNK + 3, 3 * HASH_CHUNK] {
            let mut h = Hashing::new(&data[..]);
            let mut buf = vec![0u8; read_size];
            while h.read(&mut buf).unwrap() > 0 {}
            assert_eq!(h.finish(), (want, data.len() as u64), "read size {read_size}");
        }
        // Dropped midway: no hang.
        let mut h = Hashing::new(&data[..]);
        let mut buf = vec![0u8; 3 * HASH_CHUNK];
        h.read_exact(&mut buf).unwrap();
        drop(h);
    }
}
