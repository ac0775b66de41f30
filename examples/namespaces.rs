//! Prints the namespaces of this process and of a child it creates in new namespaces, like
//! `ls -l /proc/$$/ns`, marking which differ.
//!
//! Run as root: `cargo run --example namespaces`. As another user it adds a user namespace
//! (mapping you to root inside) so the other namespaces can be created without privilege.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};

use nook_ns::{Command, MountStep, Namespace, NamespaceSet, NsId, Stdio, namespaces_of};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let set = if root { NamespaceSet::all().without(Namespace::User) } else { NamespaceSet::all() };

    // The child says hello, then waits for a line on stdin so we can inspect it while it lives.
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "echo \"child: pid $$ in its pid namespace, hostname $(hostname)\"; read _"])
        .namespaces(set)
        .hostname("nk-example")
        .mount(MountStep::proc("/proc"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut hello = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped")).read_line(&mut hello)?;

    let mine = namespaces_of(std::process::id())?;
    let theirs = namespaces_of(child.id())?;
    println!("namespaces of this process (pid {}) and of its child (pid {}):", std::process::id(), child.id());
    println!("{:<8} {:<24} {:<24}", "kind", "self", "child");
    for kind in Namespace::ALL {
        let show =
            |m: &BTreeMap<Namespace, NsId>| m.get(&kind).map_or_else(|| "-".to_owned(), |id| format!("{kind}:{id}"));
        let marker = if mine.get(&kind) != theirs.get(&kind) { "  <- differs" } else { "" };
        println!("{:<8} {:<24} {:<24}{marker}", kind.proc_name(), show(&mine), show(&theirs));
    }
    print!("{hello}");

    child.stdin.take().expect("stdin is piped").write_all(b"\n")?;
    let status = child.wait()?;
    println!("child exited: {status}");
    Ok(())
}

/// `cargo test` runs this example too (`test = true` in the root `Cargo.toml`).
#[cfg(test)]
#[test]
fn example_runs() {
    nook_testutil::require_root!();
    main().expect("the example runs");
}
