//! Failpoints: injected failures of setup steps, for tests only.
//!
//! Every setup step of the nook crates that can fail on the kernel — a cgroup directory and
//! each limit written, the container layer's directories, each netlink request, the firewall
//! apply, an IPAM allocation, every stage of the child between clone and exec — first calls
//! [`check`] with the step's name and what it acts on. Without the `failpoints` cargo
//! feature (the default) that is an inlined no-op. With it, a test can `arm` a name: the
//! `nth` hit of that name then fails with `EIO` exactly where the real call would have
//! failed, so the error the caller sees carries the same context (the call, the path, the
//! stage), and everything set up before it must be undone. `record` lists every hit, so a
//! test can first run a setup once and then fail each of its steps in turn.
//!
//! The state is process-wide: arm only in a process (or a phase of one) where nothing else
//! sets up (nook-sandbox's fault tests run in a helper process of their own).
//!
//! The child between clone and exec cannot take a lock or allocate: its stages are armed by
//! number (`arm_child_stage`, the [`Stage`](crate::Stage) as `u32`), read from an atomic.

use std::fmt::Display;
use std::io;

/// The failure injected at an armed failpoint: `EIO`, which no caller treats as "already
/// gone" or "try another way".
pub const INJECTED_ERRNO: i32 = libc::EIO;

/// Returns `Err(EIO)` if failpoint `name` is armed for this hit (`detail`: what the step acts
/// on, for `record` and `last_injected`); `Ok(())` otherwise — always, and at no cost,
/// without the `failpoints` feature.
#[inline(always)]
pub fn check(name: &'static str, detail: impl Display) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        imp::check(name, &detail)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (name, detail);
        Ok(())
    }
}

/// For the child between clone and exec (allocation- and lock-free): the errno to fail
/// stage `stage` with, or 0.
#[inline(always)]
pub(crate) fn child_errno(stage: u32) -> i32 {
    child_step_errno(stage, u32::MAX)
}

/// [`child_errno`] of step `step` of a stage with steps (a mount step).
#[inline(always)]
pub(crate) fn child_step_errno(stage: u32, step: u32) -> i32 {
    #[cfg(feature = "failpoints")]
    {
        use std::sync::atomic::Ordering::Relaxed;
        let armed_step = imp::CHILD_STEP.load(Relaxed);
        if imp::CHILD_STAGE.load(Relaxed) == stage && (armed_step == u32::MAX || armed_step == step) {
            return INJECTED_ERRNO;
        }
    }
    let _ = (stage, step);
    0
}

#[cfg(feature = "failpoints")]
pub use imp::{arm, arm_child_stage, disarm, last_injected, record, recorded};

#[cfg(feature = "failpoints")]
mod imp {
    use std::fmt::Display;
    use std::io;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Default)]
    struct State {
        recording: Option<Vec<(&'static str, String)>>,
        /// Name, which hit fails (1-based), hits so far.
        armed: Option<(String, usize, usize)>,
        injected: Option<(&'static str, String)>,
    }

    static STATE: Mutex<State> = Mutex::new(State { recording: None, armed: None, injected: None });

    /// The armed child stage (`u32::MAX`: none).
    pub(super) static CHILD_STAGE: AtomicU32 = AtomicU32::new(u32::MAX);
    /// The armed step of that stage (`u32::MAX`: any).
    pub(super) static CHILD_STEP: AtomicU32 = AtomicU32::new(u32::MAX);

    fn state() -> std::sync::MutexGuard<'static, State> {
        STATE.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn check(name: &'static str, detail: &dyn Display) -> io::Result<()> {
        let mut s = state();
        if let Some(rec) = &mut s.recording {
            rec.push((name, detail.to_string()));
        }
        let fire = match &mut s.armed {
            Some((armed, nth, hits)) if armed == name => {
                *hits += 1;
                *hits == *nth
            }
            _ => false,
        };
        if fire {
            s.armed = None;
            s.injected = Some((name, detail.to_string()));
            return Err(io::Error::from_raw_os_error(super::INJECTED_ERRNO));
        }
        Ok(())
    }

    /// Arms failpoint `name`: its `nth` hit from now on (1-based) fails, once.
    pub fn arm(name: &str, nth: usize) {
        let mut s = state();
        s.armed = Some((name.to_owned(), nth, 0));
        s.injected = None;
    }

    /// Arms child stage `stage` (a [`Stage`](crate::Stage) as `u32`; for a stage with
    /// steps — a mount — only step `step`, or any with `None`): every child cloned from now
    /// on fails there, until [`disarm`].
    pub fn arm_child_stage(stage: u32, step: Option<u32>) {
        CHILD_STEP.store(step.unwrap_or(u32::MAX), Ordering::Relaxed);
        CHILD_STAGE.store(stage, Ordering::Relaxed);
    }

    /// Disarms everything (the armed name, the child stage).
    pub fn disarm() {
        state().armed = None;
        CHILD_STAGE.store(u32::MAX, Ordering::Relaxed);
        CHILD_STEP.store(u32::MAX, Ordering::Relaxed);
    }

    /// Starts (`true`) or stops recording hits; starting clears the record.
    pub fn record(on: bool) {
        state().recording = on.then(Vec::new);
    }

    /// The hits recorded so far: (name, detail), in order.
    pub fn recorded() -> Vec<(&'static str, String)> {
        state().recording.clone().unwrap_or_default()
    }

    /// The failpoint that fired since the last [`arm`]: (name, detail).
    pub fn last_injected() -> Option<(&'static str, String)> {
        state().injected.clone()
    }
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use super::*;

    #[test]
    fn the_nth_hit_fails_once_and_hits_are_recorded() {
        record(true);
        arm("nk.test", 2);
        assert!(check("nk.test", "a").is_ok());
        assert!(check("nk.other", "x").is_ok());
        let e = check("nk.test", "b").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(INJECTED_ERRNO));
        assert!(check("nk.test", "c").is_ok(), "fires once");
        assert_eq!(last_injected(), Some(("nk.test", "b".to_owned())));
        let names: Vec<_> = recorded().into_iter().map(|(n, d)| format!("{n}:{d}")).collect();
        assert_eq!(names, ["nk.test:a", "nk.other:x", "nk.test:b", "nk.test:c"]);
        record(false);
        disarm();
    }
}
