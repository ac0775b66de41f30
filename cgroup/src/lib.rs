//! Cgroup v1, v2 and hybrid resource control for nook. Not implemented yet: see the `nook-cgroup` issue.
