//! `/etc/hosts` and `/etc/resolv.conf` for a sandbox (helper C fills this module).
