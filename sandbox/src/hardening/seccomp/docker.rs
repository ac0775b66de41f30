//! Docker's seccomp JSON format (moby `profiles/seccomp`; what `docker run
//! --security-opt seccomp=FILE` reads) into a [`Profile`].
//!
//! Fields: `defaultAction`, `defaultErrnoRet`, `architectures` (old form) or `archMap`
//! (`architecture` + `subArchitectures`), and `syscalls[]` with `names` (or the old `name`),
//! `action`, `errnoRet`, `args[] {index, value, valueTwo, op}`, `includes`/`excludes`
//! `{caps, arches, minKernel}`. `comment`s and unknown fields are ignored; architectures
//! nook does not compile for (MIPS, s390, ...) are ignored (they never run here).
//! `SCMP_ACT_ERRNO` / `SCMP_ACT_TRACE` without `errnoRet` return `EPERM`, as runc does.
//! `SCMP_CMP_MASKED_EQ` takes the mask in `value` and the compared value in `valueTwo`.

use serde::Deserialize;

use super::{Action, Applies, Arch, ArgCondition, CmpOp, KernelVersion, Profile, SeccompError, SyscallRule};

/// Docker's default profile as nook embeds it: moby's `profiles/seccomp/default.json` at
/// commit `00f3d189e420d485e42d15fe494f96d272284e0e` (moby 28.x; Apache-2.0), the same
/// rules in the same format, one rule per line, with the `archMap` entries nook cannot
/// compile for left out.
pub const DOCKER_DEFAULT_JSON: &str = include_str!("docker-default.json");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerProfile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u64>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<DockerArchMap>>,
    #[serde(default)]
    syscalls: Option<Vec<DockerSyscall>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerSyscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u64>,
    #[serde(default)]
    args: Option<Vec<DockerArg>>,
    #[serde(default)]
    includes: Option<DockerFilter>,
    #[serde(default)]
    excludes: Option<DockerFilter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerArg {
    index: u64,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerFilter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// `SCMP_ACT_*` with its return data into an [`Action`].
pub(super) fn action(field: String, name: &str, data: Option<u64>) -> Result<Action, SeccompError> {
    let data = || -> Result<u16, SeccompError> {
        let v = data.unwrap_or(libc::EPERM as u64);
        u16::try_from(v).ok().filter(|v| *v <= super::MAX_ERRNO).ok_or(SeccompError::ErrnoOutOfRange { value: v })
    };
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(data()?),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_TRACE" => Action::Trace(data()?),
        "SCMP_ACT_NOTIFY" => Action::UserNotif,
        other => return Err(SeccompError::UnknownAction { field, value: other.to_owned() }),
    })
}

/// `SCMP_CMP_*` with Docker/OCI's `value` and `valueTwo` into a condition.
pub(super) fn condition(
    field: String,
    syscalls: &[String],
    index: u64,
    op: &str,
    value: u64,
    value_two: u64,
) -> Result<ArgCondition, SeccompError> {
    let index = u8::try_from(index)
        .ok()
        .filter(|i| *i <= 5)
        .ok_or_else(|| SeccompError::ArgIndex { syscalls: syscalls.join(","), index })?;
    let (op, value) = match op {
        "SCMP_CMP_EQ" => (CmpOp::Eq, value),
        "SCMP_CMP_NE" => (CmpOp::Ne, value),
        "SCMP_CMP_LT" => (CmpOp::Lt, value),
        "SCMP_CMP_LE" => (CmpOp::Le, value),
        "SCMP_CMP_GT" => (CmpOp::Gt, value),
        "SCMP_CMP_GE" => (CmpOp::Ge, value),
        "SCMP_CMP_MASKED_EQ" => (CmpOp::MaskedEq { mask: value }, value_two),
        other => return Err(SeccompError::UnknownOperator { field, value: other.to_owned() }),
    };
    Ok(ArgCondition { index, op, value })
}

fn applies(f: Option<DockerFilter>) -> Result<Applies, SeccompError> {
    let f = f.unwrap_or_default();
    let min_kernel = match f.min_kernel.filter(|s| !s.is_empty()) {
        Some(s) => Some(KernelVersion::parse(&s).ok_or(SeccompError::KernelVersion { value: s })?),
        None => None,
    };
    Ok(Applies { caps: f.caps.unwrap_or_default(), arches: f.arches.unwrap_or_default(), min_kernel })
}

impl Profile {
    /// Loads a profile in Docker's JSON format.
    pub fn from_docker_json(json: &[u8]) -> Result<Profile, SeccompError> {
        let doc: DockerProfile = serde_json::from_slice(json).map_err(|source| SeccompError::Json { source })?;
        let default_action = action("defaultAction".into(), &doc.default_action, doc.default_errno_ret)?;
        let mut arches = Vec::new();
        let mut add = |name: &str| {
            if let Some(a) = Arch::from_scmp(name)
                && !arches.contains(&a)
            {
                arches.push(a);
            }
        };
        for a in doc.architectures.iter().flatten() {
            add(a);
        }
        for m in doc.arch_map.iter().flatten() {
            add(&m.architecture);
            for s in m.sub_architectures.iter().flatten() {
                add(s);
            }
        }
        let mut rules = Vec::new();
        for (i, sc) in doc.syscalls.into_iter().flatten().enumerate() {
            let mut names = sc.names.unwrap_or_default();
            names.extend(sc.name);
            let action = action(format!("syscalls[{i}].action"), &sc.action, sc.errno_ret)?;
            let args = sc
                .args
                .into_iter()
                .flatten()
                .map(|a| condition(format!("syscalls[{i}].args"), &names, a.index, &a.op, a.value, a.value_two))
                .collect::<Result<_, _>>()?;
            rules.push(SyscallRule {
                names,
                action,
                args,
                includes: applies(sc.includes)?,
                excludes: applies(sc.excludes)?,
            });
        }
        Ok(Profile { default_action, arches, rules })
    }
}
