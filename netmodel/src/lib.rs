//! The Container Network Model (sandbox, endpoint, network) for nook. Not implemented yet: see the `nook-netmodel` issue.
