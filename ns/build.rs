//! Builds `nk-init`, the sandbox's minimal init (`init/init.c`), as a static, freestanding
//! executable (no libc: raw system calls, x86_64 and aarch64) that `src/init_exe.rs` embeds
//! with `include_bytes!`. The C compiler is the one the `cc` crate picks for the target
//! (`CC`, `CC_<target>`, or the default cross compiler), so cross builds work as for any
//! `cc` user; no C library of the target is needed. On other architectures the file is
//! empty and a spawn with an init fails at run time.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=init/init.c");
    println!("cargo::rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("nk-init");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86_64" && arch != "aarch64" {
        // The crate still builds; spawning with `Command::init(true)` fails (typed) at run time.
        println!("cargo::warning=nook-ns: nk-init has system call stubs for x86_64 and aarch64 only, not {arch}");
        std::fs::write(&out, b"").expect("write an empty nk-init");
        return;
    }
    let compiler = cc::Build::new().pic(false).opt_level_str("s").debug(false).get_compiler();
    let mut cmd: Command = compiler.to_command();
    cmd.args([
        "-nostdlib",
        "-static",
        "-ffreestanding",
        "-fno-builtin",
        "-fno-stack-protector",
        "-fno-pie",
        "-no-pie",
        "-fno-asynchronous-unwind-tables",
        "-fno-unwind-tables",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-Wl,--build-id=none",
        "-Wl,-z,noexecstack",
        "-Wl,-z,noseparate-code",
        "-s",
        "-o",
    ]);
    cmd.arg(&out).arg("init/init.c");
    let status = cmd.status().unwrap_or_else(|e| panic!("nook-ns: running the C compiler {cmd:?}: {e}"));
    assert!(status.success(), "nook-ns: building the init program failed: {cmd:?} exited with {status}");
}
