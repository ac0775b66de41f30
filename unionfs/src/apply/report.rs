//! Progress reports to the caller's callback.

use std::cell::Cell;
use std::rc::Rc;

use super::Progress;

/// Progress is reported at least this often (input bytes) within a big entry.
const PROGRESS_EVERY: u64 = 4 * 1024 * 1024;

/// Progress reporting.
pub(super) struct Reporter<'o> {
    pub(super) cb: Option<&'o mut dyn FnMut(Progress)>,
    pub(super) counter: Rc<Cell<u64>>,
    pub(super) total: Option<u64>,
    /// Input bytes at the last report.
    pub(super) last: u64,
    /// Entry data written since the last report (a well-compressed big file reads little
    /// input but still takes time to write).
    pub(super) data_since: u64,
}

impl Reporter<'_> {
    pub(super) fn report(&mut self, entries: u64) {
        if let Some(cb) = self.cb.as_mut() {
            let bytes_read = self.counter.get();
            self.last = bytes_read;
            self.data_since = 0;
            cb(Progress { bytes_read, bytes_total: self.total, entries });
        }
    }

    /// Within a big entry, after `data` more bytes were written: reports when enough input
    /// was read or enough data written since the last report.
    pub(super) fn tick(&mut self, entries: u64, data: u64) {
        if self.cb.is_some() {
            self.data_since += data;
            if self.counter.get() - self.last >= PROGRESS_EVERY || self.data_since >= PROGRESS_EVERY {
                self.report(entries);
            }
        }
    }
}
