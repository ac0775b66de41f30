//! A three-layer image with a whiteout and an opaque directory: applied into a layer store
//! (with a progress bar), shown merged (by the userspace view and by the kernel's overlay),
//! changed, and the change committed as a new layer whose sha256 is printed.
//!
//! ```text
//! cargo run --example layers     # as root (overlay mounts need CAP_SYS_ADMIN)
//! ```
//!
//! Everything lives in a temporary directory that is removed at the end.

use std::io::Write;
use std::path::{Path, PathBuf};

use nook_unionfs::{ApplyOptions, LayerStore, Progress, UnionView, Upper, WhiteoutFormat};

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("this example mounts an overlay: run it as root");
        std::process::exit(2);
    }
    let scratch = Scratch(std::env::temp_dir().join(format!("nk-layers-example-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)?;
    run(&scratch.0)
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One tar entry of the example's layers.
enum Item<'a> {
    Dir(&'a str),
    File(&'a str, &'a str),
}

/// An OCI layer tarball in memory.
fn layer(items: &[Item<'_>]) -> Result<Vec<u8>, BoxError> {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match item {
            Item::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty())?;
            }
            Item::File(path, content) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(content.len() as u64);
                b.append_data(&mut h, path, content.as_bytes())?;
            }
        }
    }
    Ok(b.into_inner()?)
}

fn gzip(data: &[u8]) -> Result<Vec<u8>, BoxError> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data)?;
    Ok(e.finish()?)
}

/// Draws a progress bar on a terminal; elsewhere only the last state is printed (by `run`).
fn progress_bar(name: &'static str) -> impl FnMut(Progress) {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    move |p: Progress| {
        if !terminal {
            return;
        }
        let total = p.bytes_total.unwrap_or(p.bytes_read.max(1));
        let filled = (p.bytes_read * 30 / total.max(1)) as usize;
        print!(
            "\r  {name} [{}{}] {:>6} / {:>6} bytes, {} entries",
            "#".repeat(filled),
            " ".repeat(30 - filled.min(30)),
            p.bytes_read,
            total,
            p.entries
        );
        let _ = std::io::stdout().flush();
    }
}

fn run(dir: &Path) -> Result<(), BoxError> {
    use Item::{Dir, File};
    let base = layer(&[
        Dir("etc"),
        File("etc/os-release", "NAME=nook-example\n"),
        Dir("app"),
        File("app/config.toml", "mode = \"base\"\n"),
        Dir("app/data"),
        File("app/data/a.txt", "a from the base layer\n"),
        File("app/data/b.txt", "b from the base layer\n"),
        Dir("usr"),
        Dir("usr/bin"),
        File("usr/bin/tool", "#!/bin/sh\necho tool\n"),
    ])?;
    // Layer 2: `rm app/data/b.txt` (a whiteout) and a new config.
    let second = layer(&[Dir("app"), File("app/config.toml", "mode = \"second\"\n"), File("app/data/.wh.b.txt", "")])?;
    // Layer 3 (gzip): app/data replaced wholesale (an opaque dir).
    let third = gzip(&layer(&[
        Dir("app/data"),
        File("app/data/.wh..wh..opq", ""),
        File("app/data/c.txt", "c from layer 3\n"),
    ])?)?;

    let store = LayerStore::open(dir.join("store"))?;
    println!("layer store at {}", store.root().display());
    let mut parent = None;
    for (name, bytes) in [("base", &base), ("second", &second), ("third", &third)] {
        let mut bar = progress_bar(name);
        let mut options = ApplyOptions::default();
        options.bytes_total = Some(bytes.len() as u64);
        options.progress = Some(&mut bar);
        let layer = store.apply(bytes.as_slice(), parent.as_ref(), options)?;
        println!("\r  {name}: applied {} bytes ({} bytes of tar)", bytes.len(), layer.size);
        println!("    diff id  {}\n    chain id {}", layer.diff_id.as_str(), layer.chain_id.as_str());
        parent = Some(layer.chain_id);
    }
    let top = parent.ok_or("no layers")?;

    // The merged view, without mounting.
    let stack = store.stack(&top)?;
    let view = UnionView::new(stack.lower_dirs().to_vec(), WhiteoutFormat::Overlay);
    println!("\nmerged view (userspace, no mount):");
    print_tree(&view, Path::new(""), 1)?;

    // The kernel's view: mount it with an upper, change things.
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d)?;
    }
    let mut rw = stack.clone();
    rw.upper(Upper::Dir { upper: upper.clone(), work });
    let mounted = rw.mount(&merged)?;
    println!("\nmounted at {}: app/data holds {:?}", merged.display(), list(&merged.join("app/data"))?);
    std::fs::write(merged.join("app/config.toml"), "mode = \"changed\"\n")?;
    std::fs::remove_file(merged.join("usr/bin/tool"))?;
    std::fs::create_dir(merged.join("logs"))?;
    std::fs::write(merged.join("logs/first.log"), "hello\n")?;
    println!("changed: wrote app/config.toml, removed usr/bin/tool, made logs/first.log");
    mounted.remove()?;

    // docker commit: the upper dir becomes a layer.
    let committed = store.commit(&upper, WhiteoutFormat::Overlay, Some(&top))?;
    println!("\ncommitted the change as a new layer:");
    println!("  diff id  {} ({} bytes of tar)", committed.diff_id.as_str(), committed.size);
    println!("  chain id {}", committed.chain_id.as_str());
    let view = UnionView::new(store.stack(&committed.chain_id)?.lower_dirs().to_vec(), WhiteoutFormat::Overlay);
    println!("\nthe image with the new layer:");
    print_tree(&view, Path::new(""), 1)?;
    Ok(())
}

fn list(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    Ok(names)
}

fn print_tree(view: &UnionView, path: &Path, depth: usize) -> Result<(), BoxError> {
    for (name, entry) in view.read_dir(path)? {
        let child = path.join(&name);
        println!(
            "{}{}{}  (layer {})",
            "  ".repeat(depth),
            name.to_string_lossy(),
            if entry.kind == nook_unionfs::EntryKind::Dir { "/" } else { "" },
            entry.layer
        );
        if entry.kind == nook_unionfs::EntryKind::Dir {
            print_tree(view, &child, depth + 1)?;
        }
    }
    Ok(())
}

/// `cargo test` runs this example too (`test = true` in the root `Cargo.toml`).
#[cfg(test)]
#[test]
fn example_runs() {
    nook_testutil::require_root!();
    main().expect("the example runs");
}
