//! `image` group: importing a ~100 MiB OCI image layout (4 gzip layers of random-ish files,
//! ~130 MiB unpacked) into a fresh `nook_sandbox::image::ImageStore` against GNU `tar -xzf`
//! of the same layer blobs into one directory per layer.
//!
//! nook does more per byte than tar: the sha256 of every compressed blob (checked against
//! the manifest), a copy of the blob into the store (so an export gives the same digests
//! back), the sha256 DiffID of the uncompressed stream (checked against the config), and
//! `openat2(RESOLVE_IN_ROOT)` for every path. tar runs `gzip -d` in a second process, so
//! it decompresses and extracts on two cores.
//!
//! The layout is generated once into a `nkbench-img-PID` directory under the temp dir; the
//! stores and tar outputs go to `/dev/shm` (tmpfs: the rows measure CPU, not the disk) and
//! to the temp dir (disk), removed at the end.

use std::io::Write;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput};
use nook_sandbox::image::{ImageStore, ImportOptions};
use nook_unionfs::{Digest, chain_id_of};

use crate::report::{Report, slow_group, timed_rounds};

const LAYERS: usize = 4;
/// Small files per layer (1–8 KiB each) and big files (3 MiB each): ~32 MiB per layer,
/// ~24 MiB gzipped.
const SMALL_FILES: usize = 1200;
const BIG_FILES: usize = 9;

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bytes that gzip to about 75 %: xorshift output with a run of one byte now and then
/// (like a mix of compressed assets, binaries and text).
fn random_ish(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let run = if x.is_multiple_of(29) { (x >> 8) as usize % 24 } else { 1 };
        let b = (x >> 32) as u8;
        for _ in 0..run.max(1) {
            out.push(b);
        }
    }
    out.truncate(len);
    out
}

/// How much a layer holds: small files, big files, big file size.
#[derive(Clone, Copy)]
struct Size {
    small: usize,
    big: usize,
    big_len: usize,
}

/// The measured size; in criterion's test mode (`cargo test --benches`, a debug build that
/// runs each benchmark once) a tiny one, so the smoke test stays quick.
fn size() -> Size {
    if crate::report::bench_mode() {
        Size { small: SMALL_FILES, big: BIG_FILES, big_len: 3 << 20 }
    } else {
        Size { small: 40, big: 1, big_len: 256 << 10 }
    }
}

/// A gzip layer tar of random-ish files, written with the tar crate.
fn layer(n: usize, size: Size) -> (Vec<u8>, Digest) {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8], kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).expect("path");
        h.set_size(data.len() as u64);
        h.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(kind);
        h.set_cksum();
        b.append(&h, data).expect("append");
    };
    add(&format!("layer{n}/"), b"", tar::EntryType::Directory);
    for d in 0..12 {
        add(&format!("layer{n}/d{d}/"), b"", tar::EntryType::Directory);
    }
    for f in 0..size.small {
        let len = 1024 + (f * 2654435761) % 7168;
        add(&format!("layer{n}/d{}/f{f}", f % 12), &random_ish((n * 100_000 + f) as u64, len), tar::EntryType::Regular);
    }
    for f in 0..size.big {
        add(
            &format!("layer{n}/big{f}.bin"),
            &random_ish((n * 1000 + f) as u64 + 7, size.big_len),
            tar::EntryType::Regular,
        );
    }
    let tar = b.into_inner().expect("tar");
    let diff_id = Digest::sha256(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    (gz.finish().expect("gzip"), diff_id)
}

/// Writes the layout; returns the layer blob paths, the top ChainID and the layout's size.
fn make_layout(dir: &Path) -> (Vec<PathBuf>, Digest, u64) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs dir");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    let put = |bytes: &[u8]| {
        let d = Digest::sha256(bytes);
        let p = blobs.join(d.hex());
        std::fs::write(&p, bytes).expect("blob");
        (d, p)
    };
    let mut paths = Vec::new();
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    let mut total = 0;
    for n in 0..LAYERS {
        let (blob, diff_id) = layer(n, size());
        total += blob.len() as u64;
        let (d, p) = put(&blob);
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.as_str(), "size": blob.len()
        }));
        paths.push(p);
        diff_ids.push(diff_id);
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Cmd": ["/bin/true"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids.iter().map(Digest::as_str).collect::<Vec<_>>() },
    })
    .to_string();
    let (cd, _) = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.as_str(), "size": config.len() },
        "layers": descs,
    })
    .to_string();
    let (md, _) = put(manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md.as_str(), "size": manifest.len() }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index.json");
    (paths, chain_id_of(&diff_ids).expect("layers"), total)
}

pub fn image(c: &mut Criterion, report: &mut Report) {
    let scratch = Scratch(std::env::temp_dir().join(format!("nkbench-img-{}", std::process::id())));
    let layout = scratch.0.join("layout");
    let (blobs, top, size) = make_layout(&layout);
    let shm = Scratch(PathBuf::from(format!("/dev/shm/nkbench-img-{}", std::process::id())));
    std::fs::create_dir_all(&shm.0).expect("tmpfs scratch");
    let mb = size as f64 / (1 << 20) as f64;
    for (medium, base) in [("tmpfs", shm.0.clone()), ("disk", scratch.0.clone())] {
        let out = base.join("out");
        let fresh = |out: &Path| {
            let _ = std::fs::remove_dir_all(out);
            std::fs::create_dir(out).expect("out dir");
        };
        let nook_import = |out: &Path| {
            let store = ImageStore::open(out.join("store")).expect("store");
            let image = store.import_layout(&layout, "bench", ImportOptions::default()).expect("import");
            assert_eq!(image.chain_id.as_ref(), Some(&top));
        };
        let tar_x = |out: &Path| {
            for (i, blob) in blobs.iter().enumerate() {
                let dir = out.join(format!("l{i}"));
                std::fs::create_dir(&dir).expect("layer dir");
                let status = std::process::Command::new("tar")
                    .args(["--numeric-owner", "-xzf"])
                    .arg(blob)
                    .arg("-C")
                    .arg(&dir)
                    .status()
                    .expect("run tar -x");
                assert!(status.success(), "tar -x: {status}");
            }
        };
        let timed = |iters: u64, f: &dyn Fn(&Path)| timed_rounds(iters, &|| fresh(&out), &|| f(&out));
        let mut g = slow_group(c, "image");
        g.sample_size(10);
        g.throughput(Throughput::Bytes(size));
        let (nook_id, tar_id) = (format!("import_{medium}/nook"), format!("import_{medium}/tar_x"));
        g.bench_function(&nook_id, |b| b.iter_custom(|iters| timed(iters, &nook_import)));
        g.bench_function(&tar_id, |b| b.iter_custom(|iters| timed(iters, &tar_x)));
        g.finish();
        report.pair(
            "image",
            format!("import a {mb:.0} MiB OCI layout ({LAYERS} gzip layers) on {medium}"),
            nook_id,
            tar_id,
        );
        if medium == "tmpfs" {
            report.interleave(
                || {
                    fresh(&out);
                    nook_import(&out)
                },
                || {
                    fresh(&out);
                    tar_x(&out)
                },
            );
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}
