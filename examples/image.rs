//! An OCI image built here from host binaries (a tiny rootfs: `/bin/sh` and friends with
//! their libraries, an `/etc/passwd` with an `app` user), imported into an image store with
//! every digest checked and a progress report, listed with the run values its config gives,
//! run in a sandbox with that config applied (`docker run`), changed in a long-lived
//! sandbox and committed as a new image (`docker commit`), which a second sandbox runs, and
//! exported back to an OCI layout (`docker save`), which a second store imports again with
//! the same layer chain.
//!
//! ```text
//! cargo run --example image      # as root (the sandbox's namespaces and overlay need it)
//! ```
//!
//! Everything lives in a temporary directory that is removed at the end; the sandboxes'
//! container layers and cgroups are removed with them.

use std::io::Write;
use std::path::{Path, PathBuf};

use nook_sandbox::Sandbox;
use nook_sandbox::image::{
    CommitOptions, ExportOptions, ImageStore, ImportOptions, ImportPhase, ImportProgress, RunOverrides,
};
use nook_unionfs::Digest;

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("this example runs sandboxes: run it as root");
        std::process::exit(2);
    }
    let scratch = Scratch(std::env::temp_dir().join(format!("nk-image-example-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)?;
    run(&scratch.0)
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A gzip layer tar of the directory `src` (names relative to it, symlinks kept).
fn gzip_layer(src: &Path) -> Result<(Vec<u8>, Digest), BoxError> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut names: Vec<_> = std::fs::read_dir(src)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
    names.sort();
    for n in names {
        let p = src.join(&n);
        if p.is_dir() && !p.is_symlink() {
            b.append_dir_all(&n, &p)?;
        } else {
            b.append_path_with_name(&p, &n)?;
        }
    }
    let tar = b.into_inner()?;
    let diff_id = Digest::sha256(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar)?;
    Ok((gz.finish()?, diff_id))
}

/// Writes an OCI image layout with one layer (what `skopeo copy … oci:DIR` would give).
fn write_layout(dir: &Path, layer: &[u8], diff_id: &Digest) -> Result<(), BoxError> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |bytes: &[u8]| -> Result<Digest, BoxError> {
        let d = Digest::sha256(bytes);
        std::fs::write(blobs.join(d.hex()), bytes)?;
        Ok(d)
    };
    let layer_digest = put(layer)?;
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hello from $HOME in $(pwd), $GREETING; id"],
            "Env": ["PATH=/bin:/usr/bin", "GREETING=hello"], "WorkingDir": "/home/app", "User": "app"
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id.as_str()] },
    })
    .to_string();
    let config_digest = put(config.as_bytes())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest.as_str(), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                     "digest": layer_digest.as_str(), "size": layer.len() }],
    })
    .to_string();
    let manifest_digest = put(manifest.as_bytes())?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": manifest_digest.as_str(), "size": manifest.len(),
                        "annotations": { "org.opencontainers.image.ref.name": "latest" } }],
    });
    std::fs::write(dir.join("index.json"), index.to_string())?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(())
}

fn run(scratch: &Path) -> Result<(), BoxError> {
    // 1. An image from host binaries.
    let rootfs = scratch.join("rootfs");
    nook_testutil::tiny_rootfs(&rootfs)?;
    let _ = std::fs::remove_file(rootfs.join("dev/null")); // image layers carry no device nodes
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\napp:x:1000:\nusers:x:100:app\n")?;
    std::fs::create_dir_all(rootfs.join("home/app"))?;
    std::os::unix::fs::chown(rootfs.join("home/app"), Some(1000), Some(1000))?; // app's home
    let (layer, diff_id) = gzip_layer(&rootfs)?;
    let layout = scratch.join("app-oci");
    write_layout(&layout, &layer, &diff_id)?;
    println!("built an OCI layout at {} ({} KiB layer)", layout.display(), layer.len() / 1024);

    // 2. Import it: digests, sizes and DiffIDs checked, progress reported.
    let store = ImageStore::open(scratch.join("store"))?;
    let mut last = 0;
    let mut progress = |p: &ImportProgress| {
        let pct = p.bytes_done * 100 / p.bytes_total.max(1);
        if p.phase == ImportPhase::Done || pct >= last + 25 {
            last = pct;
            println!("  layer {}/{}: {:>3} % of {} bytes ({:?})", p.layer + 1, p.layers, pct, p.bytes_total, p.phase);
        }
    };
    let mut options = ImportOptions::default();
    options.progress = Some(&mut progress);
    let image = store.import_layout(&layout, "app:1", options)?;

    // 3. List the store and what a process of the image would run with.
    for i in store.images()? {
        println!("{:<12} manifest {} layers {}", i.reference, &i.manifest.as_str()[..19], i.layers.len());
    }
    let run = store.run_defaults(&image, &RunOverrides::default())?;
    println!("run: argv {:?}", run.argv);
    println!("     env {:?}", run.env);
    println!(
        "     cwd {} user {}:{} groups {:?}",
        run.working_dir.display(),
        run.user.uid,
        run.user.gid,
        run.user.additional_gids
    );

    // 4. Run it in a sandbox, as `docker run app:1` would: its Entrypoint, Cmd, Env,
    //    WorkingDir and User applied, a fresh container layer over its layer, removed after
    //    the run.
    let out = Sandbox::builder().image(&store, "app:1").memory_max(64 << 20).pids_max(32).output()?;
    print!("sandbox ran app:1 ({:?}):\n{}", out.outcome, String::from_utf8_lossy(&out.stdout));

    // 5. A long-lived sandbox of it: change its root with `exec`, commit the container layer
    //    as a new image (`docker commit`, the sandbox paused meanwhile), remove it.
    let sb = Sandbox::builder().image(&store, "app:1").create()?;
    let status = sb.exec(["/bin/sh", "-c", "echo written in the container > notes.txt"]).status()?;
    assert!(status.success());
    let committed = sb.commit("app:2", &CommitOptions::default())?;
    sb.remove()?;
    println!(
        "committed {} (top layer {})",
        committed.reference,
        committed.chain_id.as_ref().map_or("-", |c| c.as_str())
    );
    let out = Sandbox::builder().image(&store, "app:2").command("cat notes.txt").output()?;
    print!("app:2 has the change: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.stdout, b"written in the container\n");

    // 6. Export it as an OCI layout and import that into a second store.
    let out = scratch.join("app2-oci");
    let exported = store.export_layout("app:2", &out, &ExportOptions::default())?;
    println!("exported to {}: manifest {}", out.display(), exported.manifest);
    let store2 = ImageStore::open(scratch.join("store2"))?;
    let again = store2.import_layout(&out, "app:2", ImportOptions::default())?;
    assert_eq!(again.chain_id, committed.chain_id);
    println!("re-imported with the same layer chain: {}", again.chain_id.as_ref().map_or("-", |c| c.as_str()));
    Ok(())
}

/// `cargo test` runs this example too (`test = true` in the root `Cargo.toml`).
#[cfg(test)]
#[test]
fn example_runs() {
    nook_testutil::require_root!();
    main().expect("the example runs");
}
