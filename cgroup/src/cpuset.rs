//! CPU and memory-node lists in the kernel's format (`0-3,7`).

use std::collections::BTreeSet;
use std::fmt;

/// A set of CPU (or memory node) numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuSet(BTreeSet<u32>);

impl CpuSet {
    /// Parses `0-3,7` (empty text is the empty set, as cgroup files show it).
    pub fn parse(text: &str) -> Result<CpuSet, String> {
        let mut set = BTreeSet::new();
        for part in text.trim().split(',').filter(|p| !p.is_empty()) {
            let num = |s: &str| s.trim().parse::<u32>().map_err(|_| format!("{s:?} is not a number"));
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(format!("range {part} runs backwards"));
                    }
                    if b - a > 65_536 {
                        return Err(format!("range {part} is too large"));
                    }
                    set.extend(a..=b);
                }
                None => {
                    set.insert(num(part)?);
                }
            }
        }
        Ok(CpuSet(set))
    }

    /// Whether every member is also in `other`.
    pub fn is_subset_of(&self, other: &CpuSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Whether `n` is a member.
    pub fn contains(&self, n: u32) -> bool {
        self.0.contains(&n)
    }

    /// The members in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for CpuSet {
    /// Prints the compact kernel form (`0-3,7`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut iter = self.0.iter().copied().peekable();
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end = iter.next().expect("peeked");
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end { write!(f, "{start}")? } else { write!(f, "{start}-{end}")? }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let s = CpuSet::parse("0-3,7,5\n").unwrap();
        assert_eq!(s.to_string(), "0-3,5,7");
        assert!(CpuSet::parse("").unwrap().is_empty());
        assert!(CpuSet::parse("3-1").is_err());
        assert!(CpuSet::parse("a").is_err());
        assert!(CpuSet::parse("1").unwrap().is_subset_of(&s));
        assert!(!CpuSet::parse("4").unwrap().is_subset_of(&s));
    }
}
