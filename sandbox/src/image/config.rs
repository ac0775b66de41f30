//! An image config turned into what a process of the image runs with ([`RunDefaults`]),
//! with the caller's overrides applied the way `docker run` applies its flags.
//!
//! Everything here is pure: the image's `/etc/passwd` and `/etc/group` come in as strings
//! ([`ImageStore::run_defaults`](super::ImageStore::run_defaults) reads them from the
//! image's layers).

use std::path::PathBuf;

use oci_spec::image::Config;

use super::error::{ImageError, ImageValidationError, Result};

/// `PATH` when neither the image nor the caller sets one (Docker's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the caller overrides, like `docker run`'s flags. `Default` overrides nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunOverrides {
    /// `--entrypoint`: replaces the image's Entrypoint and, as in Docker, drops the image's
    /// Cmd (an empty vector clears the Entrypoint).
    pub entrypoint: Option<Vec<String>>,
    /// The command after the image name: replaces the image's Cmd (the Entrypoint stays).
    pub cmd: Option<Vec<String>>,
    /// `-e NAME=VALUE`: added to the image's Env, replacing entries of the same name.
    pub env: Vec<String>,
    /// `-w`: replaces the image's WorkingDir (must be absolute).
    pub working_dir: Option<String>,
    /// `-u`: replaces the image's User (`name`, `uid`, `name:group`, `uid:gid`).
    pub user: Option<String>,
}

/// A user resolved against the image's `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolvedUser {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// Supplementary groups: those of `/etc/group` that list the user, when no group was
    /// named explicitly (what runc and Docker do).
    pub additional_gids: Vec<u32>,
    /// The user's name, when `/etc/passwd` has the user.
    pub name: Option<String>,
    /// The user's home directory from `/etc/passwd`.
    pub home: Option<String>,
}

/// What a process of an image runs with: the command line, environment, working directory
/// and user, the image config's values with the caller's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunDefaults {
    /// Entrypoint followed by Cmd.
    pub argv: Vec<String>,
    /// `NAME=VALUE` entries: the image's Env, [`DEFAULT_PATH`] when it has no `PATH`, `HOME`
    /// from the user's passwd entry (or `/`) when unset, then the caller's entries.
    pub env: Vec<String>,
    /// WorkingDir (`/` when neither sets one).
    pub working_dir: PathBuf,
    /// The user (root when neither sets one).
    pub user: ResolvedUser,
}

impl RunDefaults {
    /// Resolves an image config's run values with `overrides` applied. `passwd` and `group`
    /// are the image's `/etc/passwd` and `/etc/group` (`None` when the image has none: then
    /// only numeric users and groups resolve). `reference` names the image in errors.
    ///
    /// Errors: a user or group name the files do not have ([`ImageError::UnknownUser`],
    /// [`ImageError::UnknownGroup`]); no command at all ([`ImageError::NoCommand`]); a
    /// malformed override ([`ImageError::Invalid`]).
    pub fn resolve(
        reference: &str,
        config: Option<&Config>,
        overrides: &RunOverrides,
        passwd: Option<&str>,
        group: Option<&str>,
    ) -> Result<RunDefaults> {
        let image_entrypoint = config.and_then(|c| c.entrypoint().clone()).unwrap_or_default();
        let image_cmd = config.and_then(|c| c.cmd().clone()).unwrap_or_default();
        let entrypoint = overrides.entrypoint.clone().unwrap_or(image_entrypoint);
        let cmd = match (&overrides.cmd, &overrides.entrypoint) {
            (Some(c), _) => c.clone(),
            (None, Some(_)) => Vec::new(),
            (None, None) => image_cmd,
        };
        let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
        if argv.is_empty() {
            return Err(ImageError::NoCommand { reference: reference.to_string() });
        }

        let working_dir = match &overrides.working_dir {
            Some(w) => w.clone(),
            None => config.and_then(|c| c.working_dir().clone()).filter(|w| !w.is_empty()).unwrap_or("/".into()),
        };
        if !working_dir.starts_with('/') {
            return Err(ImageValidationError::WorkingDir { value: working_dir }.into());
        }

        let user_spec = overrides.user.clone().or_else(|| config.and_then(|c| c.user().clone())).unwrap_or_default();
        let user = resolve_user(&user_spec, passwd, group)?;

        for e in &overrides.env {
            if env_name(e).is_none() {
                return Err(ImageValidationError::Env { value: e.clone() }.into());
            }
        }
        let mut env: Vec<String> = Vec::new();
        let image_env = config.and_then(|c| c.env().clone()).unwrap_or_default();
        for e in image_env.iter().filter(|e| env_name(e).is_some()).chain(overrides.env.iter()) {
            set_env(&mut env, e.clone());
        }
        if !env.iter().any(|e| env_name(e) == Some("PATH")) {
            env.insert(0, DEFAULT_PATH.to_string());
        }
        if !env.iter().any(|e| env_name(e) == Some("HOME")) {
            env.push(format!("HOME={}", user.home.as_deref().unwrap_or("/")));
        }
        Ok(RunDefaults { argv, env, working_dir: PathBuf::from(working_dir), user })
    }
}

fn env_name(entry: &str) -> Option<&str> {
    entry.split_once('=').map(|(n, _)| n).filter(|n| !n.is_empty())
}

/// Sets an entry, replacing one of the same name (keeping its position).
fn set_env(env: &mut Vec<String>, entry: String) {
    let name = env_name(&entry).map(str::to_string);
    match env.iter_mut().find(|e| env_name(e).map(str::to_string) == name) {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// A line of `/etc/passwd`.
#[derive(Debug)]
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

/// A line of `/etc/group`.
#[derive(Debug)]
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(s: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    s.lines().filter(|l| !l.starts_with('#')).filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(PasswdEntry { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5] })
    })
}

fn group_entries(s: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    s.lines().filter(|l| !l.starts_with('#')).filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
        Some(GroupEntry { name: f[0], gid: f[2].parse().ok()?, members })
    })
}

/// Resolves a user spec (`""`, `name`, `uid`, `name:group`, `uid:gid`, `name:gid`,
/// `uid:group`) against the image's `/etc/passwd` and `/etc/group`, the way runc does:
/// a name must be in the file, a number need not (its group is then 0 unless named).
pub fn resolve_user(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<ResolvedUser> {
    let invalid = || ImageError::from(ImageValidationError::User { value: spec.to_string() });
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => {
            if g.contains(':') || g.is_empty() {
                return Err(invalid());
            }
            (u, Some(g))
        }
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() {
        if group_part.is_some() {
            return Err(invalid());
        }
        "0"
    } else {
        user_part
    };
    let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty();
    let passwd = passwd.unwrap_or("");
    let group = group.unwrap_or("");
    let entry = if numeric(user_part) {
        let uid: u32 = user_part.parse().map_err(|_| invalid())?;
        passwd_entries(passwd).find(|e| e.uid == uid)
    } else {
        Some(
            passwd_entries(passwd)
                .find(|e| e.name == user_part)
                .ok_or_else(|| ImageError::UnknownUser { user: user_part.to_string() })?,
        )
    };
    let uid = match &entry {
        Some(e) => e.uid,
        None => user_part.parse().map_err(|_| invalid())?,
    };
    let mut gid = entry.as_ref().map_or(0, |e| e.gid);
    let mut additional_gids = Vec::new();
    match group_part {
        Some(g) if numeric(g) => gid = g.parse().map_err(|_| invalid())?,
        Some(g) => {
            gid = group_entries(group)
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| ImageError::UnknownGroup { group: g.to_string() })?;
        }
        None => {
            if let Some(e) = &entry {
                for g in group_entries(group).filter(|g| g.members.contains(&e.name)) {
                    if g.gid != gid && !additional_gids.contains(&g.gid) {
                        additional_gids.push(g.gid);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        name: entry.as_ref().map(|e| e.name.to_string()),
        home: entry.as_ref().map(|e| e.home.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          # comment\n\
                          app:x:1000:1000:App:/home/app:/bin/sh\n\
                          broken line\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,other\napp:x:1000:\naudio:x:29:app\nstaff:x:50:\n";

    #[test]
    fn users_resolve_like_runc() {
        let r = resolve_user("", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_deref()), (0, 0, Some("/root")));
        let r = resolve_user("app", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 1000));
        assert_eq!(r.additional_gids, vec![10, 29]);
        assert_eq!(r.name.as_deref(), Some("app"));
        let r = resolve_user("1000", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids.len()), (1000, 1000, 2));
        let r = resolve_user("4242", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid, r.name, r.home), (4242, 0, None, None));
        let r = resolve_user("4242:77", None, None).unwrap();
        assert_eq!((r.uid, r.gid), (4242, 77));
        let r = resolve_user("app:staff", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids.len()), (1000, 50, 0));
        let r = resolve_user("1000:audio", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 29));
    }

    #[test]
    fn unknown_users_and_groups_are_typed() {
        assert!(matches!(
            resolve_user("ghost", Some(PASSWD), Some(GROUP)),
            Err(ImageError::UnknownUser { user }) if user == "ghost"
        ));
        assert!(matches!(resolve_user("app", None, None), Err(ImageError::UnknownUser { .. })));
        assert!(matches!(
            resolve_user("app:ghosts", Some(PASSWD), Some(GROUP)),
            Err(ImageError::UnknownGroup { group }) if group == "ghosts"
        ));
        for bad in ["a:b:c", "app:", ":0"] {
            assert!(
                matches!(
                    resolve_user(bad, Some(PASSWD), Some(GROUP)),
                    Err(ImageError::Invalid(ImageValidationError::User { .. }))
                ),
                "{bad}"
            );
        }
    }

    fn config() -> Config {
        ConfigBuilder::default()
            .entrypoint(vec!["/bin/app".to_string()])
            .cmd(vec!["--serve".to_string()])
            .env(vec!["PATH=/app/bin".to_string(), "MODE=prod".to_string()])
            .working_dir("/srv".to_string())
            .user("app".to_string())
            .build()
            .unwrap()
    }

    #[test]
    fn image_values_apply() {
        let d =
            RunDefaults::resolve("app", Some(&config()), &RunOverrides::default(), Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(d.argv, ["/bin/app", "--serve"]);
        assert_eq!(d.env, ["PATH=/app/bin", "MODE=prod", "HOME=/home/app"]);
        assert_eq!(d.working_dir, PathBuf::from("/srv"));
        assert_eq!((d.user.uid, d.user.gid), (1000, 1000));
    }

    #[test]
    fn overrides_apply_like_docker_run() {
        let c = config();
        let o = RunOverrides { cmd: Some(vec!["--check".into()]), ..Default::default() };
        let d = RunDefaults::resolve("app", Some(&c), &o, Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(d.argv, ["/bin/app", "--check"], "cmd replaces Cmd, Entrypoint stays");
        let mut o = RunOverrides { entrypoint: Some(vec!["/bin/sh".into()]), ..Default::default() };
        let d = RunDefaults::resolve("app", Some(&c), &o, Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(d.argv, ["/bin/sh"], "--entrypoint drops the image's Cmd");
        o.cmd = Some(vec!["-c".into(), "true".into()]);
        o.env = vec!["MODE=dev".into(), "HOME=/tmp".into()];
        o.working_dir = Some("/".into());
        o.user = Some("0:0".into());
        let d = RunDefaults::resolve("app", Some(&c), &o, Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(d.argv, ["/bin/sh", "-c", "true"]);
        assert_eq!(d.env, ["PATH=/app/bin", "MODE=dev", "HOME=/tmp"]);
        assert_eq!(d.working_dir, PathBuf::from("/"));
        assert_eq!((d.user.uid, d.user.gid), (0, 0));
    }

    #[test]
    fn defaults_without_config() {
        let mut o = RunOverrides::default();
        assert!(matches!(
            RunDefaults::resolve("x", None, &o, None, None),
            Err(ImageError::NoCommand { reference }) if reference == "x"
        ));
        o.cmd = Some(vec!["/bin/true".into()]);
        let d = RunDefaults::resolve("x", None, &o, None, None).unwrap();
        assert_eq!(d.env, [DEFAULT_PATH, "HOME=/"]);
        assert_eq!(d.working_dir, PathBuf::from("/"));
        o.working_dir = Some("rel".into());
        assert!(matches!(
            RunDefaults::resolve("x", None, &o, None, None),
            Err(ImageError::Invalid(ImageValidationError::WorkingDir { .. }))
        ));
        o.working_dir = None;
        o.env = vec!["NOEQUALS".into()];
        assert!(matches!(
            RunDefaults::resolve("x", None, &o, None, None),
            Err(ImageError::Invalid(ImageValidationError::Env { .. }))
        ));
    }
}
