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

    proptest::proptest! {
        /// Whatever a flat-keyed file holds, what parses renders back to the same map; the
        /// kernel's own form (`key value` lines) parses to exactly its pairs, with lines that
        /// are not `key number` around it skipped.
        #[test]
        fn flat_files_roundtrip(
            pairs in proptest::collection::btree_map("[a-z_]{1,12}", proptest::num::u64::ANY, 0..20),
            noise in proptest::collection::vec("[ -~]{0,20}", 0..5),
        ) {
            let text: String = pairs.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
            proptest::prop_assert_eq!(parse_flat(&text), pairs.clone());
            let mut noisy = text.clone();
            for n in &noise {
                noisy.push_str(n);
                noisy.push('\n');
            }
            let parsed = parse_flat(&noisy);
            for (k, v) in &pairs {
                let from_noise = noise.iter().any(|n| n.split_whitespace().next() == Some(k.as_str()));
                if !from_noise {
                    proptest::prop_assert_eq!(parsed.get(k), Some(v));
                }
            }
            let rendered: String = parsed.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
            proptest::prop_assert_eq!(parse_flat(&rendered), parsed);
        }

        /// A limit is `max` or a number, with any surrounding whitespace.
        #[test]
        fn limits_roundtrip(n in proptest::option::of(proptest::num::u64::ANY), pad in "[ \t\n]{0,3}") {
            let text = format!("{pad}{}{pad}", n.map_or_else(|| "max".to_owned(), |n| n.to_string()));
            proptest::prop_assert_eq!(parse_limit(&text), Ok(n));
        }
    }
}
