//! Resource limits ([`Resource`]) for [`crate::Command::rlimit`].

use std::fmt;

/// A resource limit (`getrlimit(2)`), as the kernel numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[repr(u32)]
pub enum Resource {
    /// `RLIMIT_CPU`: CPU seconds.
    Cpu = 0,
    /// `RLIMIT_FSIZE`: largest file, bytes.
    Fsize = 1,
    /// `RLIMIT_DATA`: data segment, bytes.
    Data = 2,
    /// `RLIMIT_STACK`: stack, bytes.
    Stack = 3,
    /// `RLIMIT_CORE`: core file, bytes.
    Core = 4,
    /// `RLIMIT_RSS` (ignored by Linux).
    Rss = 5,
    /// `RLIMIT_NPROC`: processes of the real uid.
    Nproc = 6,
    /// `RLIMIT_NOFILE`: one more than the highest descriptor number.
    Nofile = 7,
    /// `RLIMIT_MEMLOCK`: locked memory, bytes.
    Memlock = 8,
    /// `RLIMIT_AS`: address space, bytes.
    As = 9,
    /// `RLIMIT_LOCKS`: file locks (ignored by Linux).
    Locks = 10,
    /// `RLIMIT_SIGPENDING`: queued signals.
    Sigpending = 11,
    /// `RLIMIT_MSGQUEUE`: POSIX message queue bytes.
    Msgqueue = 12,
    /// `RLIMIT_NICE`: ceiling of the nice value (20 - limit).
    Nice = 13,
    /// `RLIMIT_RTPRIO`: real-time priority ceiling.
    Rtprio = 14,
    /// `RLIMIT_RTTIME`: real-time CPU microseconds.
    Rttime = 15,
}

impl Resource {
    /// Every resource, in kernel order.
    pub const ALL: [Resource; 16] = [
        Resource::Cpu,
        Resource::Fsize,
        Resource::Data,
        Resource::Stack,
        Resource::Core,
        Resource::Rss,
        Resource::Nproc,
        Resource::Nofile,
        Resource::Memlock,
        Resource::As,
        Resource::Locks,
        Resource::Sigpending,
        Resource::Msgqueue,
        Resource::Nice,
        Resource::Rtprio,
        Resource::Rttime,
    ];

    /// `RLIM_INFINITY`: no limit.
    pub const INFINITY: u64 = u64::MAX;

    /// The kernel's name, e.g. `"RLIMIT_NOFILE"`.
    pub const fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "RLIMIT_CPU",
            Resource::Fsize => "RLIMIT_FSIZE",
            Resource::Data => "RLIMIT_DATA",
            Resource::Stack => "RLIMIT_STACK",
            Resource::Core => "RLIMIT_CORE",
            Resource::Rss => "RLIMIT_RSS",
            Resource::Nproc => "RLIMIT_NPROC",
            Resource::Nofile => "RLIMIT_NOFILE",
            Resource::Memlock => "RLIMIT_MEMLOCK",
            Resource::As => "RLIMIT_AS",
            Resource::Locks => "RLIMIT_LOCKS",
            Resource::Sigpending => "RLIMIT_SIGPENDING",
            Resource::Msgqueue => "RLIMIT_MSGQUEUE",
            Resource::Nice => "RLIMIT_NICE",
            Resource::Rtprio => "RLIMIT_RTPRIO",
            Resource::Rttime => "RLIMIT_RTTIME",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Resource {
    type Err = ();

    /// `"RLIMIT_NOFILE"`, `"nofile"` (any case).
    fn from_str(s: &str) -> Result<Self, ()> {
        let upper = s.to_ascii_uppercase();
        let bare = upper.strip_prefix("RLIMIT_").unwrap_or(&upper);
        Resource::ALL.into_iter().find(|r| &r.name()[7..] == bare).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_libc() {
        for r in Resource::ALL {
            assert_eq!(r.name().parse::<Resource>(), Ok(r));
        }
        assert_eq!(Resource::Nofile as u32, libc::RLIMIT_NOFILE);
        assert_eq!(Resource::Rttime as u32, libc::RLIMIT_RTTIME);
        assert_eq!(Resource::Nproc as u32, libc::RLIMIT_NPROC);
        assert_eq!("nofile".parse::<Resource>(), Ok(Resource::Nofile));
    }
}
