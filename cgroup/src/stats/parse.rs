//! Pure parsers of the cgroupfs file formats every controller shares.

use std::collections::BTreeMap;

/// A flat-keyed file (`key value` per line: `cpu.stat`, `memory.stat`, `memory.events`).
/// Lines whose value is not a number are skipped, so new kernel keys cannot break it.
pub(crate) fn parse_flat(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (key, value, None) = (parts.next()?, parts.next()?, parts.next()) else {
                return None;
            };
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A nested-keyed file (`key sub=value sub=value` per line: `io.stat`, PSI files).
pub(crate) fn parse_nested(text: &str) -> Vec<(&str, Vec<(&str, &str)>)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let key = parts.next()?;
            Some((key, parts.filter_map(|kv| kv.split_once('=')).collect()))
        })
        .collect()
}

/// A single number, or `max` (→ `None`).
pub(crate) fn parse_limit(text: &str) -> Result<Option<u64>, String> {
    match text.trim() {
        "max" => Ok(None),
        t => t.parse().map(Some).map_err(|_| format!("expected a number or \"max\", found {t:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_max_as_none() {
        assert_eq!(parse_limit("max\n"), Ok(None));
        assert_eq!(parse_limit("33554432\n"), Ok(Some(32 << 20)));
        assert!(parse_limit("lots").is_err());
    }
}
