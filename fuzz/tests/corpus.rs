//! Replays every target's corpus (`corpus/<target>/`) and its crash regressions
//! (`regressions/<target>/`, inputs that once crashed a target) through the target function:
//! a plain `cargo test`, no fuzzer needed. One test, sequential: the file-system targets share
//! the process's jail.

use std::path::Path;

#[test]
fn corpora_and_regressions_pass() {
    // All inputs are read first: as root, the file-system targets chroot the process into
    // their jail at their first input.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut inputs = Vec::new();
    for (name, target) in nook_fuzz::TARGETS {
        for kind in ["corpus", "regressions"] {
            let dir = here.join(kind).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files {
                inputs.push((name, target, f.display().to_string(), std::fs::read(&f).unwrap()));
            }
        }
    }
    assert!(!inputs.is_empty());
    for (name, target, file, data) in &inputs {
        eprintln!("{name}: {file}");
        target(data);
    }
    eprintln!("replayed {} inputs", inputs.len());
}

/// Writes the seeds that need nook's own types (run with `--ignored` once; `seeds.py` writes
/// the rest).
#[test]
#[ignore]
fn write_seeds() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let put = |target: &str, name: &str, data: &[u8]| {
        let d = here.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), data).unwrap();
    };
    // The facade's spec: the defaults, and one with much set.
    let mut b = nook_sandbox::SandboxBuilder::new();
    put("sandbox_spec", "default.json", &serde_json::to_vec_pretty(&b.to_spec()).unwrap());
    b.hostname("nk-fuzz").env("A", "b").current_dir("/tmp").memory_max(64 << 20).args(["/bin/sh", "-c", "true"]);
    b.mount(nook_sandbox::Mount::tmpfs("/scratch"));
    put("sandbox_spec", "some.json", &serde_json::to_vec_pretty(&b.to_spec()).unwrap());
}
