//! The samples: sets of them as the guests and the host measure them,
//! and their median and spread.

use serde_json::{Value, json};
use std::fs;
use std::path::Path;

/// A set of samples.
#[derive(Debug, Clone)]
pub(super) struct Set {
    pub(super) bench: String,
    pub(super) case: String,
    pub(super) metric: String,
    pub(super) unit: String,
    pub(super) contender: String,
    /// Where it was measured: a guest's name, or "host".
    pub(super) source: String,
    pub(super) samples: Vec<f64>,
}

impl Set {
    pub(super) fn from_json(v: &Value, source: &str) -> Option<Self> {
        let s = |k: &str| v.get(k)?.as_str().map(str::to_string);
        Some(Self {
            bench: s("bench")?,
            case: s("case")?,
            metric: s("metric")?,
            unit: s("unit")?,
            contender: s("contender")?,
            source: source.to_string(),
            samples: v
                .get("samples")?
                .as_array()?
                .iter()
                .filter_map(Value::as_f64)
                .collect(),
        })
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "bench": self.bench, "case": self.case, "metric": self.metric,
            "unit": self.unit, "contender": self.contender, "source": self.source,
            "samples": self.samples, "stats": Stats::of(&self.samples).map(|s| s.to_json()),
        })
    }
}

/// Median and spread of a set.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stats {
    pub(super) n: usize,
    pub(super) median: f64,
    pub(super) p10: f64,
    pub(super) p90: f64,
    pub(super) min: f64,
    pub(super) max: f64,
}

impl Stats {
    pub(super) fn of(v: &[f64]) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        // Linear interpolation between closest ranks.
        let q = |p: f64| {
            let x = p * (s.len() - 1) as f64;
            let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
            s[lo] + (s[hi] - s[lo]) * (x - lo as f64)
        };
        Some(Self {
            n: s.len(),
            median: q(0.5),
            p10: q(0.1),
            p90: q(0.9),
            min: s[0],
            max: s[s.len() - 1],
        })
    }

    fn to_json(self) -> Value {
        json!({"n": self.n, "median": self.median, "p10": self.p10, "p90": self.p90,
               "min": self.min, "max": self.max})
    }
}

/// The raw records of a guest's KTAP log: sample sets and other facts.
pub(super) fn guest_records(
    ktap: &Path,
    source: &str,
    sets: &mut Vec<Set>,
    facts: &mut Vec<Value>,
) {
    let text = fs::read_to_string(ktap).unwrap_or_default();
    for l in text.lines() {
        let Some(j) = l.trim().strip_prefix("# bench-json: ") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(j) else {
            continue;
        };
        match Set::from_json(&v, source) {
            Some(s) => sets.push(s),
            None => facts.push(json!({"source": source, "record": v})),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_median_and_spread() {
        let s = Stats::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (5, 3.0, 1.0, 5.0));
        assert!((s.p10 - 1.4).abs() < 1e-9 && (s.p90 - 4.6).abs() < 1e-9);
        assert_eq!(Stats::of(&[2.0, 4.0]).unwrap().median, 3.0);
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn guest_lines_become_sets_and_facts() {
        let dir = std::env::temp_dir().join(format!("bench-test.{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ktap.log");
        fs::write(
            &p,
            "KTAP version 1\n  # bench-json: {\"bench\":\"doorbell\",\"case\":\"c\",\"metric\":\"p50\",\"unit\":\"ns\",\"contender\":\"x\",\"samples\":[1,2]}\n# bench-json: {\"guest\":{\"kernel\":\"k\"}}\n# other\n",
        )
        .unwrap();
        let (mut sets, mut facts) = (Vec::new(), Vec::new());
        guest_records(&p, "sc/g", &mut sets, &mut facts);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].samples, vec![1.0, 2.0]);
        assert_eq!(sets[0].source, "sc/g");
        assert_eq!(facts.len(), 1);
    }
}
