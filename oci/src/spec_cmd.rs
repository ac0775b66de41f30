//! `spec [--bundle DIR] [--rootless]`: writes a starting `config.json` into the bundle (the
//! current directory by default), as `runc spec` does — oci-spec's default configuration
//! (runc's: `sh` on a terminal, the standard mounts, masked and read-only paths, new pid,
//! network, ipc, uts, mount and — as runc 1.2, not 1.1 — cgroup namespaces, `rootfs` as the
//! root), or with `--rootless` a new
//! user namespace mapping the caller's uid and gid to root. An existing `config.json` is
//! left alone (an error, as runc).

use std::io::Write;

use oci_spec::runtime::Spec;

use crate::error::{Error, SysContext};

pub(crate) fn spec(s: &liboci_cli::Spec) -> Result<(), Error> {
    let dir = s.bundle.clone().unwrap_or_else(|| ".".into());
    let path = dir.join("config.json");
    let mut config = if s.rootless {
        Spec::rootless(rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw())
    } else {
        Spec::default()
    };
    // runc's starts `sh` on a terminal (oci-spec's default has none), and names the host
    // after the runtime (oci-spec's: "youki").
    if let Some(p) = config.process_mut() {
        p.set_terminal(Some(true));
    }
    config.set_hostname(Some("nook".into()));
    let json = serde_json::to_string_pretty(&config).map_err(|source| Error::Json { path: path.clone(), source })?;
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Usage(format!("File {} exists. Remove it first", path.display())));
        }
        Err(e) => return Err(e).sys("create", &path),
    };
    file.write_all(json.as_bytes()).and_then(|()| file.write_all(b"\n")).sys("write", &path)
}
