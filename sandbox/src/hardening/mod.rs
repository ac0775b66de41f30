//! Hardening policy: what confines a sandbox beyond its namespaces — the default sets and
//! profiles, as data and pure functions. The mechanisms that apply them run in nook-ns's
//! child plan (capability sets, `no_new_privs`, the seccomp program, rlimits, Landlock);
//! this module only decides what to ask for.
//!
//! - [`seccomp`]: profiles (a typed model, Docker's and OCI's JSON formats, Docker's
//!   default profile adjusted by the capabilities granted) compiled once to classic BPF.
//! - [`caps`]: capability names, Docker's default set, Docker's add/drop rules.
//! - [`paths`]: the masked and read-only paths of Docker/OCI, as mount steps.
//! - [`devices`]: Docker's device-cgroup allowlist.
//!
//! Defaults are at least as strict as Docker's; where nook is stricter, the item says so.
//!
//! ## For the mechanism (how the pieces are meant to be applied)
//! - The capability set becomes the bounding, permitted and effective sets (and ambient and
//!   inheritable, when the program runs as non-root with ambient capabilities; otherwise the
//!   inheritable set is empty, as Docker's since CVE-2022-24769), after the last privileged
//!   plan step.
//! - The seccomp program ([`CompiledProfile::instructions`], or
//!   [`CompiledProfile::to_libc`]) is installed as the last step before `execve`, after
//!   `no_new_privs` (the program allows `execve`; a custom profile that denies it makes
//!   the exec fail, as with runc). When [`CompiledProfile::user_notif`] is set it must be
//!   installed with `SECCOMP_FILTER_FLAG_NEW_LISTENER` and the fd handed to the caller:
//!   without a listener the kernel answers those syscalls with `ENOSYS`.
//! - [`default_path_steps`] go after `/proc` and `/sys` are mounted (after `pivot_root`,
//!   with root `/`).
//! - [`default_device_policy`] goes into the sandbox's `nook_cgroup::CgroupSpec`.

pub(crate) mod apply;
pub mod caps;
pub mod devices;
pub mod paths;
pub mod seccomp;

pub use apply::LandlockStatus;
pub use caps::{CapSet, UnknownCapability};
pub use devices::default_device_policy;
pub use paths::{MASKED_PATHS, READ_ONLY_PATHS, default_path_steps};
pub use seccomp::{Action, Arch, CompiledProfile, Profile, SeccompError, Target};
