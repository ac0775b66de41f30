//! `slirp4netns`: ready when it writes to its `--ready-fd`; ports through `add_hostfwd` on
//! its API socket, which lives only while they are added (a private directory, removed
//! before [`start`] returns); it exits when its `--exit-fd` pipe (held by [`UserNet`])
//! closes.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Helper, Starting, Target, UserNet, UserNetError, UserNetSpec, pipe_ready};
use crate::error::SysContext;
use crate::firewall::{PortMapping, Protocol};

/// The tap device's name in the sandbox.
pub(super) const TAP: &str = "tap0";

/// Starts slirp4netns for `target` and publishes the spec's ports.
pub(super) fn start(spec: &UserNetSpec, program: &Path, target: Target) -> Result<UserNet, UserNetError> {
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).sys("pipe")?;
    let (exit_r, exit_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).sys("pipe")?;
    let api = if spec.ports.is_empty() { None } else { Some(ApiDir::create()?) };
    let mut cmd = nook_ns::Command::new(program);
    cmd.args(["--configure", "--mtu=65520", "--ready-fd=3", "--exit-fd=4"]);
    if !spec.host_loopback {
        cmd.arg("--disable-host-loopback");
    }
    if let Some(api) = &api {
        cmd.arg(format!("--api-socket={}", api.socket().display()));
    }
    if target.join_userns {
        cmd.arg(format!("--userns-path={}", target.ns_path("user")));
    }
    cmd.args(["--netns-type=path", &target.ns_path("net"), TAP]);
    cmd.preserve_fd(ready_w, 3).preserve_fd(exit_r, 4);
    let mut starting = Starting::spawn(cmd, program)?;
    let ready = |fd: &std::os::fd::OwnedFd| -> Result<bool, UserNetError> {
        if !pipe_ready(fd)? {
            return Ok(false);
        }
        let mut byte = [0u8; 1];
        Ok(rustix::io::read(fd, &mut byte).sys("read")? == 1)
    };
    starting.wait_ready(Some(ready_r.as_fd()), || ready(&ready_r))?;
    if let Some(api) = api {
        let published = spec.ports.iter().try_for_each(|p| add_hostfwd(&api.socket(), p));
        drop(api);
        if let Err(e) = published {
            return Err(starting.abort(e));
        }
    }
    Ok(starting.into_usernet(Helper::Slirp4netns, Some(exit_w)))
}

/// One `add_hostfwd` request; slirp4netns answers `{"return": ...}` or `{"error": ...}`.
fn add_hostfwd(socket: &Path, port: &PortMapping) -> Result<(), UserNetError> {
    let proto = match port.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    let host_addr = port.host_ip.map_or_else(|| "0.0.0.0".to_owned(), |ip| ip.to_string());
    let request = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": { "proto": proto, "host_addr": host_addr, "host_port": port.host_port, "guest_port": port.container_port },
    });
    let mut stream = UnixStream::connect(socket).sys_at("connect", socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).sys("setsockopt")?;
    stream.write_all(request.to_string().as_bytes()).sys_at("write", socket)?;
    stream.shutdown(std::net::Shutdown::Write).sys_at("shutdown", socket)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).sys_at("read", socket)?;
    let refused = |message: String| UserNetError::PortRefused { program: "slirp4netns", port: port.clone(), message };
    let value: serde_json::Value = serde_json::from_str(&reply).map_err(|_| refused(format!("bad reply {reply:?}")))?;
    if value.get("return").is_some() {
        return Ok(());
    }
    let message = value.pointer("/error/desc").and_then(|d| d.as_str()).unwrap_or(&reply).to_owned();
    Err(refused(message))
}

/// A private directory (mode 0700, in the caller's temp dir) for the API socket.
struct ApiDir(PathBuf);

impl ApiDir {
    fn create() -> Result<ApiDir, UserNetError> {
        use std::os::unix::fs::DirBuilderExt;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("nk-usernet-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&path).sys_at("mkdir", &path)?;
        Ok(ApiDir(path))
    }

    fn socket(&self) -> PathBuf {
        self.0.join("api.sock")
    }
}

impl Drop for ApiDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
