//! The OCI runtime spec's `linux.seccomp` (via `oci-spec`'s runtime types) into a
//! [`Profile`].
//!
//! Same semantics as Docker's format (see `docker.rs`): errno/trace without `errnoRet`
//! return `EPERM`, masked-equal takes the mask in `value` and the compared value in
//! `valueTwo`, architectures nook does not compile for are ignored. `flags` (`LOG`,
//! `SPEC_ALLOW`, `WAIT_KILLABLE_RECV`) are install-time flags of the mechanism and do not
//! change the program; `listenerPath`/`listenerMetadata` (runc's seccomp agent) are not
//! used: nook hands the notification fd to the caller instead.

use oci_spec::runtime::{Arch as OciArch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

use super::docker::{action, condition};
use super::{Action, Applies, Arch, Profile, SeccompError, SyscallRule};

fn action_name(a: LinuxSeccompAction) -> &'static str {
    match a {
        LinuxSeccompAction::ScmpActKill => "SCMP_ACT_KILL",
        LinuxSeccompAction::ScmpActKillThread => "SCMP_ACT_KILL_THREAD",
        LinuxSeccompAction::ScmpActKillProcess => "SCMP_ACT_KILL_PROCESS",
        LinuxSeccompAction::ScmpActTrap => "SCMP_ACT_TRAP",
        LinuxSeccompAction::ScmpActErrno => "SCMP_ACT_ERRNO",
        LinuxSeccompAction::ScmpActNotify => "SCMP_ACT_NOTIFY",
        LinuxSeccompAction::ScmpActTrace => "SCMP_ACT_TRACE",
        LinuxSeccompAction::ScmpActLog => "SCMP_ACT_LOG",
        LinuxSeccompAction::ScmpActAllow => "SCMP_ACT_ALLOW",
    }
}

fn op_name(op: LinuxSeccompOperator) -> &'static str {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => "SCMP_CMP_NE",
        LinuxSeccompOperator::ScmpCmpLt => "SCMP_CMP_LT",
        LinuxSeccompOperator::ScmpCmpLe => "SCMP_CMP_LE",
        LinuxSeccompOperator::ScmpCmpEq => "SCMP_CMP_EQ",
        LinuxSeccompOperator::ScmpCmpGe => "SCMP_CMP_GE",
        LinuxSeccompOperator::ScmpCmpGt => "SCMP_CMP_GT",
        LinuxSeccompOperator::ScmpCmpMaskedEq => "SCMP_CMP_MASKED_EQ",
    }
}

fn arch(a: OciArch) -> Option<Arch> {
    match a {
        OciArch::ScmpArchX86_64 => Some(Arch::X86_64),
        OciArch::ScmpArchX86 => Some(Arch::X86),
        OciArch::ScmpArchAarch64 => Some(Arch::Aarch64),
        _ => None,
    }
}

impl Profile {
    /// Loads an OCI `linux.seccomp` object.
    pub fn from_oci(seccomp: &LinuxSeccomp) -> Result<Profile, SeccompError> {
        let default_action = action(
            "defaultAction".into(),
            action_name(seccomp.default_action()),
            seccomp.default_errno_ret().map(u64::from),
        )?;
        let mut arches: Vec<Arch> = Vec::new();
        for a in seccomp.architectures().iter().flatten().filter_map(|a| arch(*a)) {
            if !arches.contains(&a) {
                arches.push(a);
            }
        }
        let mut rules = Vec::new();
        for (i, sc) in seccomp.syscalls().iter().flatten().enumerate() {
            let names = sc.names().clone();
            let action: Action =
                action(format!("syscalls[{i}].action"), action_name(sc.action()), sc.errno_ret().map(u64::from))?;
            let args = sc
                .args()
                .iter()
                .flatten()
                .map(|a| {
                    condition(
                        format!("syscalls[{i}].args"),
                        &names,
                        a.index() as u64,
                        op_name(a.op()),
                        a.value(),
                        a.value_two().unwrap_or(0),
                    )
                })
                .collect::<Result<_, _>>()?;
            rules.push(SyscallRule { names, action, args, includes: Applies::default(), excludes: Applies::default() });
        }
        Ok(Profile { default_action, arches, rules })
    }

    /// Loads the JSON of an OCI `linux.seccomp` object.
    pub fn from_oci_json(json: &[u8]) -> Result<Profile, SeccompError> {
        let seccomp: LinuxSeccomp = serde_json::from_slice(json).map_err(|source| SeccompError::Json { source })?;
        Profile::from_oci(&seccomp)
    }
}
