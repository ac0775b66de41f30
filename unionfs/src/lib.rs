//! Layered root filesystems (overlayfs, copy driver, layer store) for nook. Not implemented yet: see the `nook-unionfs` issue.
