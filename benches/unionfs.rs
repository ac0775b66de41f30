//! `unionfs` group: overlay mount + unmount with 1, 10, 100 and 500 lower layers against the
//! same system calls in C (`nk_floor_overlay`), and applying a layer tarball against GNU
//! `tar -x` of the same file.
//!
//! Everything lives in a `nkbench-uf-PID` directory under the temp dir, removed at the end.

use std::ffi::{CString, c_char, c_int, c_long};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, Throughput};
use nook_unionfs::{ApplyOptions, LayerStack, Upper, apply_layer};

use crate::report::{Report, slow_group, timed_rounds};

unsafe extern "C" {
    fn nk_floor_overlay(
        lowers: *const *const c_char,
        nlowers: c_int,
        upper: *const c_char,
        work: *const c_char,
        target: *const c_char,
    ) -> c_long;
}

const LAYER_COUNTS: [usize; 4] = [1, 10, 100, 500];

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// `n` lower layers (each with one file of its own and one shared name), an upper, a work
/// dir and a mount point below `dir`.
fn make_layers(dir: &Path, n: usize) -> (Vec<PathBuf>, PathBuf, PathBuf, PathBuf) {
    let base = dir.join(format!("stack{n}"));
    let lowers: Vec<PathBuf> = (0..n).map(|i| base.join(format!("l{i}"))).collect();
    for (i, l) in lowers.iter().enumerate() {
        std::fs::create_dir_all(l).expect("lower");
        std::fs::write(l.join(format!("f{i}")), b"x").expect("file");
        std::fs::write(l.join("shared"), i.to_string()).expect("file");
    }
    let (upper, work, target) = (base.join("upper"), base.join("work"), base.join("merged"));
    for d in [&upper, &work, &target] {
        std::fs::create_dir_all(d).expect("dir");
    }
    (lowers, upper, work, target)
}

fn mount_umount(c: &mut Criterion, report: &mut Report, dir: &Path) {
    let mut g = slow_group(c, "unionfs");
    for n in LAYER_COUNTS {
        let (lowers, upper, work, target) = make_layers(dir, n);
        let mut stack = LayerStack::new();
        stack.lowers(lowers.iter().cloned()).upper(Upper::Dir { upper: upper.clone(), work: work.clone() });
        let nook = || stack.mount(&target).expect("nook mount").remove().expect("nook unmount");
        // Check once that the mount is what it should be: the top layer wins.
        {
            let m = stack.mount(&target).expect("nook mount");
            let shared = std::fs::read_to_string(target.join("shared")).expect("read through the overlay");
            assert_eq!(shared, (n - 1).to_string(), "the top layer must win");
            m.remove().expect("unmount");
        }
        // The C floor gets the layers in the order nook hands them to the kernel: the first
        // `lowerdir+` is the top layer.
        let kernel_order: Vec<CString> = lowers.iter().rev().map(|p| cstr(p)).collect();
        let ptrs: Vec<*const c_char> = kernel_order.iter().map(|c| c.as_ptr()).collect();
        let (cu, cw, ct) = (cstr(&upper), cstr(&work), cstr(&target));
        let floor = || {
            // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
            let rc =
                unsafe { nk_floor_overlay(ptrs.as_ptr(), ptrs.len() as c_int, cu.as_ptr(), cw.as_ptr(), ct.as_ptr()) };
            assert_eq!(rc, 0, "C floor overlay mount: -errno {rc}");
        };
        g.bench_function(BenchmarkId::new("mount_umount/nook", n), |b| b.iter(nook));
        g.bench_function(BenchmarkId::new("mount_umount/c_floor", n), |b| b.iter(floor));
        report.pair(
            "unionfs",
            format!("mount + umount, {n} layers"),
            format!("mount_umount_nook/{n}"),
            format!("mount_umount_c_floor/{n}"),
        );
        report.interleave(nook, floor);
    }
    g.finish();
}

/// A layer tarball of about 64 MiB: 4000 small files in 40 dirs, 16 files of 3 MiB, symlinks.
fn make_layer_tar(dir: &Path) -> (PathBuf, u64) {
    let src = dir.join("src");
    for d in 0..40 {
        let sub = src.join(format!("usr/share/d{d}"));
        std::fs::create_dir_all(&sub).expect("dir");
        for f in 0..100 {
            std::fs::write(sub.join(format!("f{f}.txt")), vec![b'a' + (f % 26) as u8; 1024 + f * 37]).expect("file");
        }
        std::os::unix::fs::symlink(format!("d{d}/f0.txt"), src.join(format!("usr/share/link{d}"))).expect("symlink");
    }
    std::fs::create_dir_all(src.join("usr/lib")).expect("dir");
    for f in 0..16 {
        let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(src.join(format!("usr/lib/big{f}.so")), data).expect("file");
    }
    let tar = dir.join("layer.tar");
    let status = std::process::Command::new("tar")
        .args(["--numeric-owner", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .expect("run tar -c");
    assert!(status.success(), "tar -c: {status}");
    std::fs::remove_dir_all(&src).expect("remove src");
    let size = std::fs::metadata(&tar).expect("tar size").len();
    (tar, size)
}

fn apply(c: &mut Criterion, report: &mut Report, dir: &Path) {
    let (tar, size) = make_layer_tar(dir);
    // The same layer extracted onto the disk (the temp dir) and onto a tmpfs (no writeback).
    let tmpfs_out = PathBuf::from(format!("/dev/shm/nkbench-uf-{}", std::process::id()));
    let _tmpfs_scratch = Scratch(tmpfs_out.clone());
    for (medium, out) in [("disk", dir.join("out")), ("tmpfs", tmpfs_out)] {
        let fresh = |out: &Path| {
            let _ = std::fs::remove_dir_all(out);
            std::fs::create_dir(out).expect("out dir");
        };
        let nook_apply = |out: &Path| {
            let file = std::fs::File::open(&tar).expect("open tar");
            apply_layer(std::io::BufReader::with_capacity(1 << 20, file), out, ApplyOptions::default()).expect("apply");
        };
        let tar_x = |out: &Path| {
            let status = std::process::Command::new("tar")
                .args(["--numeric-owner", "-xf"])
                .arg(&tar)
                .arg("-C")
                .arg(out)
                .status()
                .expect("run tar -x");
            assert!(status.success(), "tar -x: {status}");
        };
        let timed = |iters: u64, f: &dyn Fn(&Path)| timed_rounds(iters, &|| fresh(&out), &|| f(&out));
        let mut g = slow_group(c, "unionfs");
        g.sample_size(10);
        g.throughput(Throughput::Bytes(size));
        let (nook_id, tar_id) = (format!("apply_64MiB_{medium}/nook"), format!("apply_64MiB_{medium}/tar_x"));
        g.bench_function(&nook_id, |b| b.iter_custom(|iters| timed(iters, &nook_apply)));
        g.bench_function(&tar_id, |b| b.iter_custom(|iters| timed(iters, &tar_x)));
        g.finish();
        report.pair("unionfs", format!("apply a 64 MiB layer (4000 files) on {medium}"), nook_id, tar_id);
        if medium == "tmpfs" {
            report.interleave(
                || {
                    fresh(&out);
                    nook_apply(&out)
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

pub fn unionfs(c: &mut Criterion, report: &mut Report) {
    let scratch = Scratch(std::env::temp_dir().join(format!("nkbench-uf-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).expect("scratch dir");
    mount_umount(c, report, &scratch.0);
    apply(c, report, &scratch.0);
}
