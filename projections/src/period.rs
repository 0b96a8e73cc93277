//! Periods of the statistics: UTC days, ISO weeks and months. Folds bucket by UTC day
//! (days since 1970-01-01); reports roll days up into weeks, months or one total.

use std::collections::HashMap;
use std::hash::Hash;

use jiff::civil::Date;
use serde::{Serialize, Serializer};

/// Days since 1970-01-01 (UTC) of a Unix time in seconds.
pub fn day_of(at: i64) -> i32 {
    at.div_euclid(86_400) as i32
}

/// The civil date of a day number.
pub fn date_of(day: i32) -> Date {
    jiff::Timestamp::from_second(i64::from(day) * 86_400)
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date())
        .unwrap_or_default()
}

/// The day number of a civil date.
pub fn day_of_date(date: Date) -> i32 {
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| day_of(z.timestamp().as_second()))
        .unwrap_or(0)
}

/// How a report groups days.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Day,
    Week,
    #[default]
    Month,
    /// Everything selected, as one period.
    Total,
}

impl std::str::FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(Granularity::Day),
            "week" => Ok(Granularity::Week),
            "month" => Ok(Granularity::Month),
            "total" => Ok(Granularity::Total),
            other => Err(format!(
                "unknown period `{other}`: day, week, month or total"
            )),
        }
    }
}

impl Granularity {
    /// The first day of the period holding `day` (for `total`, `day` itself).
    pub fn start(self, day: i32) -> i32 {
        let date = date_of(day);
        match self {
            Granularity::Day | Granularity::Total => day,
            Granularity::Week => day - i32::from(date.weekday().to_monday_zero_offset()),
            Granularity::Month => day - i32::from(date.day()) + 1,
        }
    }

    /// The label of the period holding `day`: `2026-11-23`, `2026-W48`, `2026-11`, `total`.
    pub fn label(self, day: i32) -> String {
        let date = date_of(day);
        match self {
            Granularity::Day => date.to_string(),
            Granularity::Week => {
                let w = date.iso_week_date();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            Granularity::Month => format!("{:04}-{:02}", date.year(), date.month()),
            Granularity::Total => "total".to_owned(),
        }
    }
}

/// A fast, deterministic hasher for the folds' small keys (ids, interned names, days): the
/// FxHash mix. Keys come from the log, not from an attacker racing the hash table, so the
/// flooding resistance of SipHash buys nothing here and costs a good share of the fold.
#[derive(Debug, Clone, Copy, Default)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A hash map with [`FxHasher`].
pub type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// Serializes a hash map as a map sorted by key, so equal maps give equal bytes.
pub fn sorted<K, V, H, S>(map: &HashMap<K, V, H>, serializer: S) -> Result<S::Ok, S::Error>
where
    K: Ord + Serialize + Eq + Hash,
    V: Serialize,
    S: Serializer,
{
    let mut entries: Vec<(&K, &V)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    serializer.collect_map(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let day = day_of(
            "2026-11-23T12:00:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_second(),
        );
        assert_eq!(Granularity::Day.label(day), "2026-11-23");
        assert_eq!(Granularity::Week.label(day), "2026-W48");
        assert_eq!(Granularity::Month.label(day), "2026-11");
        assert_eq!(day_of_date("2026-11-23".parse().unwrap()), day);
        assert_eq!(day_of(-1), -1);
    }
}

/// (De)serializes a hash map with non-string keys as a list of `[key, value]` pairs sorted by
/// key, so equal maps give equal bytes.
pub mod pairs {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K, V, H, S>(map: &HashMap<K, V, H>, serializer: S) -> Result<S::Ok, S::Error>
    where
        K: Ord + Serialize + Eq + Hash,
        V: Serialize,
        S: Serializer,
    {
        let mut entries: Vec<(&K, &V)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        serializer.collect_seq(entries)
    }

    pub fn deserialize<'de, K, V, H, D>(deserializer: D) -> Result<HashMap<K, V, H>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        H: std::hash::BuildHasher + Default,
        D: Deserializer<'de>,
    {
        let entries: Vec<(K, V)> = Vec::deserialize(deserializer)?;
        Ok(entries.into_iter().collect())
    }
}

/// Names (agents, teams, categories, ...) interned as small numbers, in order of first use,
/// so hot-path keys are copies instead of strings. Only `names` is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Names {
    names: Vec<String>,
    #[serde(skip)]
    index: FastMap<String, u32>,
}

impl Names {
    /// The id of `name`, assigning the next one on first use.
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), id);
        id
    }

    /// The id of `name` if it was ever used.
    pub fn find(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("?", String::as_str)
    }

    /// How many names are interned.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Rebuilds the index after deserializing.
    pub fn restored(&mut self) {
        self.index = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
    }
}
