//! # nook-oci — a runc-compatible OCI runtime over `nook-sandbox`
//!
//! Container engines (podman, containerd, CRI-O) drive an OCI runtime binary through
//! runc's command line; `nook-oci` speaks it, parsed with `liboci-cli` (runc's argument
//! set on clap), reading the bundle's `config.json` and writing state with `oci-spec`.
//! Each container is a detached `nook_sandbox` sandbox
//! ([`nook_sandbox::detached`]): its process is PID 1 of its pid namespace, it outlives
//! `create`, and later commands reopen it from `<root>/<id>/state.json`.
//!
//! ## Commands
//! `create [--bundle] [--pid-file] [--console-socket] [--preserve-fds] [--no-pivot]
//! [--no-new-keyring] ID`, `start ID`, `state ID`, `kill [--all] ID [SIGNAL]`
//! (SIGTERM by default), `delete [--force] ID`, `run [--bundle] [--pid-file] [--detach]
//! [create's flags] ID` (relays signals to the container, and its terminal: `tty.rs`),
//! `exec [--process FILE | ARGS] [--detach] [--pid-file] [--cwd] [--env] [--user] [--tty]
//! [--console-socket] [--preserve-fds] ID`, `ps [--format table|json] ID`, `pause ID`, `resume ID`,
//! `update [--resources FILE|-] [flags] ID`, `features`, `list [--format table|json]
//! [--quiet]`, `spec [--bundle] [--rootless]`, `events [--stats] [--interval] ID`; the OCI
//! hooks (see `hooks.rs`).
//! Global: `--root` (default `/run/nook-oci`), `--log FILE`, `--log-format text|json`,
//! `--debug`, `--systemd-cgroup` (refused), `--version`.
//!
//! ## create and start: the exec fifo
//! As runc does: `create` makes `<root>/<id>/exec.fifo` and spawns the container with a
//! start gate on it (`nook_ns::Command::start_gate`): the child does its whole setup
//! (namespaces, cgroup, mounts, `pivot_root`, identity, capabilities), closes its error
//! pipe — so `create` returns, setup errors reported — and blocks opening the fifo for
//! writing. `start` opens it for reading, reads the byte the child writes, and removes the
//! fifo; the child then installs `no_new_privs` and seccomp and execs. Status: `stopped`
//! when the process is gone (pid + start time, so a reused pid is not taken for it),
//! `created` while the fifo exists, `running` otherwise.
//!
//! ## config.json
//! See [`config`] for what is mapped and what `create` refuses (always by naming the
//! field: nothing is silently ignored).

#![forbid(unsafe_code)]

mod commands;
mod config;
mod error;
mod events;
mod features;
mod hooks;
mod list;
mod lock;
mod log;
mod manage;
mod signal;
mod spec_cmd;
mod state;
mod tty;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::error::Error;

/// The command line: runc's global options and subcommands (from `liboci-cli`).
#[derive(Parser, Debug)]
#[command(name = "nook-oci", disable_version_flag = true)]
struct Cli {
    #[command(flatten)]
    global: liboci_cli::GlobalOpts,
    /// Print the version (runc's format, with the OCI runtime-spec version).
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
// Parsed once per process: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    #[command(flatten)]
    Standard(liboci_cli::StandardCmd),
    #[command(flatten)]
    Common(liboci_cli::CommonCmd),
}

/// The default state root, used when `--root` is absent.
pub(crate) const DEFAULT_ROOT: &str = "/run/nook-oci";

fn version_text() -> String {
    format!("nook-oci version {}\ncommit: none\nspec: {}\n", env!("CARGO_PKG_VERSION"), oci_spec::runtime::VERSION)
}

fn main() {
    let cli = Cli::parse_from(interval_in_seconds(default_kill_signal(std::env::args_os().collect())));
    if cli.version {
        print!("{}", version_text());
        return;
    }
    let logger = log::Logger::install(&cli.global);
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            logger.error(&e.to_string());
            1
        }
    };
    std::process::exit(code);
}

/// runc's `kill ID` sends SIGTERM; liboci-cli 0.7 makes the signal a required argument.
/// So before clap sees the command line, a `kill` with a single positional argument (the
/// id) gets `SIGTERM` appended.
fn default_kill_signal(mut args: Vec<OsString>) -> Vec<OsString> {
    // Skip the program name and the global options (those with a value take two words).
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        match a {
            "--root" | "-r" | "--log" | "-l" | "--log-format" => i += 2,
            _ if a.starts_with('-') => i += 1,
            _ => break,
        }
    }
    if args.get(i).is_some_and(|a| a == "kill") {
        let positional = args[i + 1..].iter().filter(|a| !a.to_string_lossy().starts_with('-')).count();
        if positional == 1 {
            args.push("SIGTERM".into());
        }
    }
    args
}

/// runc's `events --interval` takes a Go duration (`5s`, `500ms`, `1m30s`); liboci-cli's
/// takes whole seconds. A duration is rewritten as seconds (rounded up, at least 1) before
/// clap sees it; anything else is left for clap to judge.
fn interval_in_seconds(mut args: Vec<OsString>) -> Vec<OsString> {
    if !args.iter().any(|a| a == "events") {
        return args;
    }
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if a == "--interval" && i + 1 < args.len() {
            if let Some(secs) = go_duration_secs(&args[i + 1].to_string_lossy()) {
                args[i + 1] = secs.to_string().into();
            }
            i += 1;
        } else if let Some(v) = a.strip_prefix("--interval=")
            && let Some(secs) = go_duration_secs(v)
        {
            args[i] = format!("--interval={secs}").into();
        }
        i += 1;
    }
    args
}

/// Whole seconds (rounded up, at least 1) of a Go duration such as `1h2m3.5s` or `250ms`;
/// `None` for a plain number or anything else.
fn go_duration_secs(text: &str) -> Option<u64> {
    let mut rest = text;
    let mut nanos: f64 = 0.0;
    if rest.is_empty() || rest.parse::<f64>().is_ok() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += value * scale;
        rest = &rest[unit_len..];
    }
    Some(((nanos / 1e9).ceil() as u64).max(1))
}

fn run(cli: Cli) -> Result<i32, Error> {
    if cli.global.systemd_cgroup {
        return Err(Error::Unsupported("--systemd-cgroup (nook-oci manages cgroupfs itself; use cgroupsPath)".into()));
    }
    if let Some(f) = cli.global.log_format.as_deref()
        && f != "text"
        && f != "json"
    {
        return Err(Error::Usage(format!("--log-format {f}: expected text or json")));
    }
    let root = cli.global.root.clone().unwrap_or_else(|| DEFAULT_ROOT.into());
    let Some(command) = cli.command else {
        return Err(Error::Usage("no command given (see --help)".into()));
    };
    commands::dispatch(&root, command)
}

#[cfg(test)]
mod tests {
    use super::default_kill_signal;

    fn words(s: &str) -> Vec<std::ffi::OsString> {
        s.split(' ').map(Into::into).collect()
    }

    #[test]
    fn go_durations_become_seconds() {
        use super::{go_duration_secs, interval_in_seconds};
        assert_eq!(go_duration_secs("5s"), Some(5));
        assert_eq!(go_duration_secs("1m30s"), Some(90));
        assert_eq!(go_duration_secs("250ms"), Some(1));
        assert_eq!(go_duration_secs("1.5s"), Some(2));
        assert_eq!(go_duration_secs("7"), None);
        assert_eq!(go_duration_secs("5x"), None);
        assert_eq!(
            interval_in_seconds(words("nook-oci events --interval 2m c1")),
            words("nook-oci events --interval 120 c1")
        );
        assert_eq!(
            interval_in_seconds(words("nook-oci events --interval=1s c1")),
            words("nook-oci events --interval=1 c1")
        );
        assert_eq!(interval_in_seconds(words("nook-oci state --interval 1s")), words("nook-oci state --interval 1s"));
    }

    #[test]
    fn kill_without_a_signal_gets_sigterm() {
        assert_eq!(
            default_kill_signal(words("nook-oci --root /r kill c1")),
            words("nook-oci --root /r kill c1 SIGTERM")
        );
        assert_eq!(default_kill_signal(words("nook-oci kill --all c1")), words("nook-oci kill --all c1 SIGTERM"));
        assert_eq!(default_kill_signal(words("nook-oci kill c1 KILL")), words("nook-oci kill c1 KILL"));
        assert_eq!(default_kill_signal(words("nook-oci --debug state kill")), words("nook-oci --debug state kill"));
    }
}
