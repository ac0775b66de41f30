//! seccomp profiles: a typed model, loaders for Docker's and OCI's JSON formats, Docker's
//! default profile, and a compiler to classic BPF (with `seccompiler`, pure Rust).
//!
//! ## Model
//! A [`Profile`] is a default [`Action`] plus [`SyscallRule`]s: syscall names, an action,
//! argument conditions ([`ArgCondition`], all of which must hold) and Docker's
//! `includes`/`excludes` ([`Applies`]: capabilities, architectures, minimum kernel), which
//! are resolved when the profile is compiled for a [`Target`] (architecture, capability
//! set, kernel version), as Docker resolves them when it starts a container.
//!
//! ## Semantics (where Docker/runc/libseccomp leave a choice, what nook does)
//! - A syscall name unknown on an architecture is **skipped** for that architecture, as
//!   runc does with Docker's profiles (its default profile names syscalls of every
//!   architecture). The skipped names are listed in [`CompiledProfile::skipped`]. A
//!   syscall that does not exist cannot be called, so skipping never weakens a filter.
//! - Several conditions on the **same** argument in one rule are alternatives (one rule
//!   per condition), as runc does (libseccomp cannot AND two conditions on one argument);
//!   conditions on different arguments must all hold.
//! - When rules for one syscall carry different actions and more than one matches, the
//!   most restrictive action wins, in the kernel's order for stacked filters: kill
//!   process, kill thread, trap, errno, user notification, trace, log, allow.
//! - Arguments are compared as 64-bit values (libseccomp's `SCMP_CMP_*`).
//! - The filter checks the architecture first: a syscall of an architecture the profile
//!   was not compiled for kills the process (libseccomp's default "bad arch" action). On
//!   x86_64 the 32-bit x86 ABI is included when the profile lists it (Docker's does); the
//!   x32 ABI (syscall numbers with bit 30 set) is never allowed: it kills the process, so
//!   it cannot reach a syscall under a different number. 32-bit ARM on aarch64 is not
//!   supported (killed).
//!
//! ## Compiling
//! [`Profile::compile`] builds one BPF program per call — the caller keeps the
//! [`CompiledProfile`] and installs it in every spawn ([`default_compiled`] caches
//! the default profile's programs per target). The argument comparisons are
//! `seccompiler`'s (`SeccompRule` → BPF); the rest is nook's own, because `seccompiler`'s
//! `SeccompFilter` cannot express what profiles need:
//! - it has one match action per filter (profiles mix allow, errno, ...) and no
//!   user-notification action (`SECCOMP_RET_USER_NOTIF`): nook emits each rule's own
//!   return value, user notification included, so nothing is compiled weaker than asked;
//! - it compares syscall numbers one after another; nook dispatches with a binary search
//!   over ranges of numbers that share a block (most neighbours share `RET ALLOW`), each
//!   comparison jumping straight to the next one or to the range's block, and shares
//!   identical per-syscall blocks. The difference matters at install time, which every
//!   spawn pays: the kernel converts and JITs the program (cost about linear in its length)
//!   and runs it once for every syscall number of every ABI to build its allow cache (cost
//!   linear in the path's length). Docker's default for x86_64 (with the x86 ABI) installed
//!   in about 1.7 ms as a linear chain, in ~0.15 ms as a search with a `JA` per branch and
//!   leaf (659 instructions), in ~0.11 ms as now (303 instructions; aarch64: 133), ~0.06 ms
//!   without the x86 section (drop [`Arch::X86`] from [`Profile::arches`]); a one-rule
//!   filter in ~0.025 ms (`benches/hardening.rs`, this VM, one run);
//! - it has no 32-bit x86 target and keeps its syscall tables private: the architecture
//!   check is nook's own, and the numbers come from the `syscalls` crate's tables.

mod compile;
mod docker;
mod oci;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::caps::CapSet;

pub use compile::{CompiledProfile, Instruction};
pub use docker::DOCKER_DEFAULT_JSON;

/// An architecture a filter can be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Arch {
    /// x86_64 (`AUDIT_ARCH_X86_64`).
    X86_64,
    /// 32-bit x86 (`AUDIT_ARCH_I386`): only as a second ABI of an x86_64 filter.
    X86,
    /// aarch64 (`AUDIT_ARCH_AARCH64`).
    Aarch64,
}

impl Arch {
    /// The architecture this program runs on, if nook supports it.
    pub fn native() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "x86" => Some(Arch::X86),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// The `AUDIT_ARCH_*` value the kernel reports in `seccomp_data.arch`.
    pub const fn audit(self) -> u32 {
        match self {
            Arch::X86_64 => 0xc000_003e,
            Arch::X86 => 0x4000_0003,
            Arch::Aarch64 => 0xc000_00b7,
        }
    }

    /// The name Docker's `includes.arches` / `excludes.arches` use (Go's `GOARCH`).
    pub const fn docker_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::X86 => "x86",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The architecture of an `SCMP_ARCH_*` name, or `None` for one nook does not support.
    pub fn from_scmp(name: &str) -> Option<Arch> {
        match name {
            "SCMP_ARCH_X86_64" => Some(Arch::X86_64),
            "SCMP_ARCH_X86" => Some(Arch::X86),
            "SCMP_ARCH_AARCH64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// The other ABIs a process on this architecture can use (and a filter can include).
    pub const fn compat(self) -> &'static [Arch] {
        match self {
            Arch::X86_64 => &[Arch::X86],
            Arch::X86 | Arch::Aarch64 => &[],
        }
    }

    /// The number of syscall `name` on this architecture.
    pub fn syscall(self, name: &str) -> Option<u32> {
        let id = match self {
            Arch::X86_64 => syscalls::x86_64::Sysno::from_str(name).ok().map(|s| s.id()),
            Arch::X86 => syscalls::x86::Sysno::from_str(name).ok().map(|s| s.id()),
            Arch::Aarch64 => syscalls::aarch64::Sysno::from_str(name).ok().map(|s| s.id()),
        };
        id.and_then(|i| u32::try_from(i).ok())
    }
}

/// What the filter does with a syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Let it run.
    Allow,
    /// Fail it with this errno (at most 4095).
    Errno(u16),
    /// Kill the calling thread.
    KillThread,
    /// Kill the whole process.
    KillProcess,
    /// Send `SIGSYS`.
    Trap,
    /// Let it run and log it.
    Log,
    /// Hand it to a `ptrace` tracer with this message (without one: `ENOSYS`).
    Trace(u16),
    /// Hand it to the supervisor holding the notification fd
    /// (`SECCOMP_RET_USER_NOTIF`; without one: `ENOSYS`).
    UserNotif,
}

/// `SECCOMP_RET_*` values (`<linux/seccomp.h>`).
pub(crate) mod ret {
    pub(crate) const KILL_PROCESS: u32 = 0x8000_0000;
    pub(crate) const KILL_THREAD: u32 = 0x0000_0000;
    pub(crate) const TRAP: u32 = 0x0003_0000;
    pub(crate) const ERRNO: u32 = 0x0005_0000;
    pub(crate) const USER_NOTIF: u32 = 0x7fc0_0000;
    pub(crate) const TRACE: u32 = 0x7ff0_0000;
    pub(crate) const LOG: u32 = 0x7ffc_0000;
    pub(crate) const ALLOW: u32 = 0x7fff_0000;
}

/// The largest errno the kernel returns (`MAX_ERRNO`).
pub const MAX_ERRNO: u16 = 4095;

impl Action {
    /// The filter's return value for this action.
    pub const fn ret(self) -> u32 {
        match self {
            Action::Allow => ret::ALLOW,
            Action::Errno(e) => ret::ERRNO | e as u32,
            Action::KillThread => ret::KILL_THREAD,
            Action::KillProcess => ret::KILL_PROCESS,
            Action::Trap => ret::TRAP,
            Action::Log => ret::LOG,
            Action::Trace(d) => ret::TRACE | d as u32,
            Action::UserNotif => ret::USER_NOTIF,
        }
    }

    /// The kernel's precedence (0 = most restrictive), then the data, as a sort key.
    pub(crate) const fn precedence(self) -> (u8, u16) {
        match self {
            Action::KillProcess => (0, 0),
            Action::KillThread => (1, 0),
            Action::Trap => (2, 0),
            Action::Errno(e) => (3, e),
            Action::UserNotif => (4, 0),
            Action::Trace(d) => (5, d),
            Action::Log => (6, 0),
            Action::Allow => (7, 0),
        }
    }
}

/// How an argument is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CmpOp {
    /// `arg == value`.
    Eq,
    /// `arg != value`.
    Ne,
    /// `arg < value` (unsigned).
    Lt,
    /// `arg <= value`.
    Le,
    /// `arg > value`.
    Gt,
    /// `arg >= value`.
    Ge,
    /// `arg & mask == value`.
    MaskedEq {
        /// The mask.
        mask: u64,
    },
}

/// One condition on a syscall argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArgCondition {
    /// The argument (0..=5).
    pub index: u8,
    /// The comparison.
    pub op: CmpOp,
    /// The value compared with.
    pub value: u64,
}

impl ArgCondition {
    /// A condition.
    pub const fn new(index: u8, op: CmpOp, value: u64) -> Self {
        ArgCondition { index, op, value }
    }

    /// Whether `arg` satisfies it (the semantics the BPF program implements).
    pub const fn holds(&self, arg: u64) -> bool {
        match self.op {
            CmpOp::Eq => arg == self.value,
            CmpOp::Ne => arg != self.value,
            CmpOp::Lt => arg < self.value,
            CmpOp::Le => arg <= self.value,
            CmpOp::Gt => arg > self.value,
            CmpOp::Ge => arg >= self.value,
            CmpOp::MaskedEq { mask } => arg & mask == self.value,
        }
    }
}

/// A kernel version `major.minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KernelVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
}

impl KernelVersion {
    /// Parses `"5.10"`, `"6.1.0-13-amd64"` (the first two numbers).
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.trim().split(['.', '-', '+']);
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?;
        let digits = minor.find(|c: char| !c.is_ascii_digit()).unwrap_or(minor.len());
        let minor = minor[..digits].parse().ok()?;
        Some(KernelVersion { major, minor })
    }

    /// The running kernel's version (`/proc/sys/kernel/osrelease`), if readable.
    pub fn running() -> Option<Self> {
        std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().and_then(|s| Self::parse(&s))
    }
}

/// Docker's `includes` / `excludes`: when a rule applies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applies {
    /// Capability names (`CAP_SYS_ADMIN`): includes needs all, excludes any.
    pub caps: Vec<String>,
    /// Architectures by Docker's names (`amd64`, `arm64`, `x86`, ...).
    pub arches: Vec<String>,
    /// A minimum kernel version.
    pub min_kernel: Option<KernelVersion>,
}

impl Applies {
    fn is_empty(&self) -> bool {
        self.caps.is_empty() && self.arches.is_empty() && self.min_kernel.is_none()
    }
}

/// One rule: these syscalls, when every argument condition holds, get this action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallRule {
    /// Syscall names.
    pub names: Vec<String>,
    /// The action.
    pub action: Action,
    /// Conditions, all of which must hold (none: always).
    pub args: Vec<ArgCondition>,
    /// The rule applies only if all of these hold for the target.
    pub includes: Applies,
    /// The rule does not apply if any of these holds for the target.
    pub excludes: Applies,
}

impl SyscallRule {
    /// A rule for `names` with `action`, without conditions.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>, action: Action) -> Self {
        SyscallRule {
            names: names.into_iter().map(Into::into).collect(),
            action,
            args: Vec::new(),
            includes: Applies::default(),
            excludes: Applies::default(),
        }
    }

    /// Adds an argument condition.
    pub fn arg(mut self, condition: ArgCondition) -> Self {
        self.args.push(condition);
        self
    }

    /// Whether the rule applies to `target` (Docker's `includes`/`excludes` logic; an
    /// unknown kernel version satisfies `includes.min_kernel` and not `excludes.min_kernel`).
    pub fn applies_to(&self, target: &Target) -> bool {
        let arch = target.arch.docker_name();
        let ex = &self.excludes;
        if !ex.is_empty() {
            if ex.arches.iter().any(|a| a == arch) {
                return false;
            }
            if ex.caps.iter().any(|c| target.caps.contains_name(c)) {
                return false;
            }
            if let (Some(min), Some(k)) = (ex.min_kernel, target.kernel)
                && k >= min
            {
                return false;
            }
        }
        let inc = &self.includes;
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == arch) {
            return false;
        }
        if !inc.caps.iter().all(|c| target.caps.contains_name(c)) {
            return false;
        }
        if let (Some(min), Some(k)) = (inc.min_kernel, target.kernel)
            && k < min
        {
            return false;
        }
        true
    }
}

/// A seccomp profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// What a syscall no rule matches gets.
    pub default_action: Action,
    /// Further ABIs to include besides the target's own (only those the target can run,
    /// [`Arch::compat`], are used).
    pub arches: Vec<Arch>,
    /// The rules.
    pub rules: Vec<SyscallRule>,
}

impl Profile {
    /// A profile with a default action and no rules.
    pub fn new(default_action: Action) -> Self {
        Profile { default_action, arches: Vec::new(), rules: Vec::new() }
    }

    /// Adds a rule.
    pub fn rule(&mut self, rule: SyscallRule) -> &mut Self {
        self.rules.push(rule);
        self
    }

    /// Docker's default profile (moby `profiles/seccomp/default.json`, see
    /// [`DOCKER_DEFAULT_JSON`]), parsed once.
    pub fn docker_default() -> &'static Profile {
        static DEFAULT: OnceLock<Profile> = OnceLock::new();
        DEFAULT.get_or_init(|| {
            Profile::from_docker_json(DOCKER_DEFAULT_JSON.as_bytes()).expect("the embedded default profile parses")
        })
    }

    /// Checks every value the kernel would refuse or misread.
    pub fn validate(&self) -> Result<(), SeccompError> {
        let check = |a: Action| match a {
            Action::Errno(e) if e > MAX_ERRNO => Err(SeccompError::ErrnoOutOfRange { value: u64::from(e) }),
            _ => Ok(()),
        };
        check(self.default_action)?;
        for r in &self.rules {
            check(r.action)?;
            if let Some(c) = r.args.iter().find(|c| c.index > 5) {
                return Err(SeccompError::ArgIndex { syscalls: r.names.join(","), index: u64::from(c.index) });
            }
        }
        Ok(())
    }

    /// Whether any rule (or the default) hands syscalls to a user-notification supervisor.
    pub fn uses_user_notif(&self) -> bool {
        self.default_action == Action::UserNotif || self.rules.iter().any(|r| r.action == Action::UserNotif)
    }
}

/// What a profile is compiled for: Docker resolves `includes`/`excludes` against these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The architecture of the processes the filter confines.
    pub arch: Arch,
    /// The capability set they get.
    pub caps: CapSet,
    /// The kernel version (`None`: unknown, see [`SyscallRule::applies_to`]).
    pub kernel: Option<KernelVersion>,
}

impl Target {
    /// This machine: its architecture and kernel, with `caps`. `None` on an architecture
    /// nook does not support.
    pub fn host(caps: CapSet) -> Option<Self> {
        Some(Target { arch: Arch::native()?, caps, kernel: KernelVersion::running() })
    }
}

/// A profile that cannot be loaded or compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// The JSON is malformed or has the wrong shape.
    #[error("seccomp profile: {source}")]
    Json {
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
    /// An action name that is not one of `SCMP_ACT_*`.
    #[error("seccomp profile: unknown action {value:?} in {field}")]
    UnknownAction {
        /// Where (`"defaultAction"`, `"syscalls[3].action"`).
        field: String,
        /// The name.
        value: String,
    },
    /// An operator name that is not one of `SCMP_CMP_*`.
    #[error("seccomp profile: unknown operator {value:?} in {field}")]
    UnknownOperator {
        /// Where.
        field: String,
        /// The name.
        value: String,
    },
    /// An argument index above 5.
    #[error("seccomp profile: argument index {index} (at most 5) in the rule for {syscalls}")]
    ArgIndex {
        /// The rule's syscalls.
        syscalls: String,
        /// The index.
        index: u64,
    },
    /// An errno or trace value the kernel cannot return.
    #[error("seccomp profile: errno {value} out of range (at most 4095)")]
    ErrnoOutOfRange {
        /// The value.
        value: u64,
    },
    /// A `minKernel` that is not `major.minor`.
    #[error("seccomp profile: minKernel {value:?} is not a kernel version")]
    KernelVersion {
        /// The text.
        value: String,
    },
    /// An architecture nook cannot compile for was the target.
    #[error("seccomp profile: no filter can be built for {arch}")]
    UnsupportedArch {
        /// The name.
        arch: String,
    },
    /// `seccompiler` refused a program.
    #[error("seccomp profile: compiling for {arch:?}: {source}")]
    Compile {
        /// The architecture.
        arch: Arch,
        /// What seccompiler said.
        #[source]
        source: seccompiler::BackendError,
    },
    /// The program is longer than the kernel takes (`BPF_MAXINSNS`, 4096).
    #[error("seccomp profile: the filter for {arch:?} has {len} instructions (at most 4096)")]
    TooLarge {
        /// The architecture.
        arch: Arch,
        /// Its length.
        len: usize,
    },
}

/// Docker's default profile compiled for `target`, built on first use and cached for the
/// life of the process (keyed by architecture, capability set and kernel version).
pub fn default_compiled(target: &Target) -> Result<Arc<CompiledProfile>, SeccompError> {
    static CACHE: OnceLock<Mutex<HashMap<Target, Arc<CompiledProfile>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(target) {
        return Ok(Arc::clone(hit));
    }
    let compiled = Arc::new(Profile::docker_default().compile(target)?);
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(*target, Arc::clone(&compiled));
    Ok(compiled)
}

#[cfg(test)]
mod tests;
