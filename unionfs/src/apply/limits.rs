//! How much one layer may make an apply do ([`Limits`]), and how a stopped stream is reported.

use std::io::{self, Read};
use std::path::PathBuf;

#[cfg(doc)]
use super::ApplyOptions;
use super::stream::Meter;
use crate::{Error, Limit};

/// Bounds on what one layer may make an apply do; see [`ApplyOptions::limits`].
///
/// A layer is untrusted input: a few KiB of gzip or zstd can decompress to many GiB, a tar of
/// empty files can hold millions of entries, a GNU sparse entry of a few bytes can claim a
/// file of a TiB, and zeros can follow the end of the archive for ever (all of which were
/// seen: a 2.5 MB `.tar.gz` wrote 2.5 GiB; 4 GiB of zeros after the end were read and hashed
/// from a 128 KiB `.tar.zst`). Going over a limit stops the apply at once with
/// [`Error::LimitExceeded`] naming the limit and the value reached; the store removes the
/// partial layer.
///
/// The defaults ([`Limits::default`]) are generous on absolute size — multi-GiB layers are
/// real (CUDA and ML framework layers reach 10–20 GiB) — and strict on what only bombs do:
///
/// | limit | default | why |
/// |---|---|---|
/// | [`max_bytes`](Limits::max_bytes) | 64 GiB | above the largest layers of public images; a last line against filling the disk |
/// | [`max_entries`](Limits::max_entries) | 2 097 152 (2²¹) | big layers (a `node_modules`, TeX Live, a distribution's `/usr`) hold some 100 000s of entries |
/// | [`max_ratio`](Limits::max_ratio) | 100, after a [`ratio_grace`](Limits::ratio_grace) of 64 MiB | real layers decompress 2–20-fold (text-heavy ones up to ~30); only long runs of zeros go beyond 100 (gzip tops out near 1 000, zstd far higher). Apache POI's zip-bomb guard uses the same 1:100 |
/// | [`max_trailing`](Limits::max_trailing) | 1 MiB | GNU tar pads the end to its record size (10 KiB by default, 1 MiB at `-b 2048`); Docker's writer pads nothing |
///
/// A caller that knows its layers (a trusted registry, a layer with a big zero-filled file)
/// raises one field, or uses [`Limits::unlimited`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Total size of the regular files written, in bytes: each file's size as the tar gives it
    /// (the holes of a sparse file count, since every reader of the file sees them; hardlinks
    /// count nothing). Checked at each file's header, before anything is written for it.
    pub max_bytes: u64,
    /// Tar entries (every header the tar crate gives back, including skipped ones).
    pub max_entries: u64,
    /// Expanded bytes per compressed input byte, where expanded is the decompressed tar
    /// stream plus the holes of sparse files (so a plain tar with a sparse entry is measured
    /// too). Checked continuously, once more than [`Limits::ratio_grace`] bytes came out: the
    /// apply stops when `expanded > max_ratio × input + ratio_grace`.
    pub max_ratio: u64,
    /// Expanded bytes allowed before [`Limits::max_ratio`] applies (small layers with a
    /// zero-filled file, and the read-ahead of the decompressor, stay fine).
    pub ratio_grace: u64,
    /// Bytes of (decompressed) data after the tar's end-of-archive block. They are read and
    /// hashed — the DiffID is the sha256 of the whole stream, so it matches `sha256sum` of the
    /// `.tar` — but only this many: past that the apply stops without reading the rest.
    pub max_trailing: u64,
}

impl Limits {
    /// No limits at all (every field `u64::MAX`): only for layers from a trusted source.
    pub const fn unlimited() -> Limits {
        Limits {
            max_bytes: u64::MAX,
            max_entries: u64::MAX,
            max_ratio: u64::MAX,
            ratio_grace: u64::MAX,
            max_trailing: u64::MAX,
        }
    }
}

impl Default for Limits {
    /// The defaults in the table above.
    fn default() -> Limits {
        Limits {
            max_bytes: 64 << 30,
            max_entries: 1 << 21,
            max_ratio: 100,
            ratio_grace: 64 << 20,
            max_trailing: 1 << 20,
        }
    }
}

/// A read error of the stream: the limit that stopped it, if one did, else a tar error.
pub(super) fn stream_error(meter: &Meter, limits: &Limits, entry: Option<PathBuf>, source: io::Error) -> Error {
    match meter.hit.get() {
        Some((limit, value)) => Error::LimitExceeded { limit, value, max: limit_max(limits, limit), entry },
        None => Error::Tar { entry, source },
    }
}

/// The setting of one limit.
pub(super) fn limit_max(limits: &Limits, limit: Limit) -> u64 {
    match limit {
        Limit::Bytes => limits.max_bytes,
        Limit::Entries => limits.max_entries,
        Limit::Ratio => limits.max_ratio,
        _ => limits.max_trailing,
    }
}

/// How many bytes of data follow an entry's header(s) in the archive (for a GNU sparse file
/// that is what is stored, not its size), as the tar crate computes it: the header's size,
/// or a PAX `size` record's (which extension-type entries ignore).
pub(super) fn disk_size<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<u64> {
    let t = entry.header().entry_type();
    if !t.is_gnu_sparse() {
        return Ok(entry.size());
    }
    let mut size = entry.header().entry_size()?;
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let Ok(ext) = ext else { break };
            if ext.key_bytes() == b"size" {
                if let Some(v) = ext.value().ok().and_then(|v| v.parse::<u64>().ok()) {
                    size = v;
                }
                break;
            }
        }
    }
    Ok(size)
}
