//! The `perf_event` controller: joined on v1 (`Resources::perf_event`), implicit on v2.
//! Nothing to write: perf tools select the cgroup.

use super::{Controller, Join};

/// `Resources::perf_event`: join the perf_event hierarchy.
pub(crate) static PART: Join = Join(Controller::PerfEvent);
