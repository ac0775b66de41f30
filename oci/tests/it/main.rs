//! nook-oci's integration tests, one binary (`cargo test -p nook-oci --test it`): each
//! conformance scenario runs against both `runc` (when installed) and `nook-oci`, each with
//! its own `--root`, on a busybox bundle, and compares what can be observed — state JSON
//! fields and status transitions, exit codes, the process's output, error cases.

mod config_fields;
mod conformance;
mod console;
mod containerd;
mod harness;
mod locking;
mod nook_only;
mod podman;
mod tier2;
