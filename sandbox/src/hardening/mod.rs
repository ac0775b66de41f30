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

pub mod caps;
pub mod devices;
pub mod paths;
pub mod seccomp;

pub use caps::{CapSet, UnknownCapability};
pub use devices::default_device_policy;
pub use paths::{MASKED_PATHS, READ_ONLY_PATHS, default_path_steps};
pub use seccomp::{Action, Arch, CompiledProfile, Profile, SeccompError, Target};
