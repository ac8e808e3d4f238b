//! The Markdown table of medians, spreads and ratios to each baseline.

use super::stats::{Set, Stats};
use std::fmt::Write as _;

/// Baselines of each benchmark, in the order of the ratio columns.
fn baselines(bench: &str) -> &'static [&'static str] {
    match bench {
        "mapping" => &[
            "resource2",
            "resource2_wc",
            "vfio-pci",
            "guest RAM memcpy",
            "host memcpy of the backing file",
        ],
        "doorbell" => &["eventfd, two threads", "vfio-pci read(eventfd)"],
        "faults" => &["1 thread"],
        _ => &[],
    }
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "ns" if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        "ns" if v >= 1e3 => format!("{:.1} µs", v / 1e3),
        "ns" => format!("{v:.0} ns"),
        "GiB/s" => format!("{v:.2} GiB/s"),
        "KiB" if v < 1024.0 => format!("{v:.0} KiB"),
        "KiB" => format!("{:.1} MiB", v / 1024.0),
        "count" => format!("{v:.0}"),
        "ratio" => format!("{v:.3}"),
        _ if v >= 1e4 => format!("{v:.0} {unit}"),
        _ => format!("{v:.1} {unit}"),
    }
}

/// The Markdown tables: per benchmark, one line per contender of each
/// (case, metric): median, spread (p10–p90), n, and its ratio to each
/// baseline's median.
pub(super) fn table(sets: &[Set]) -> String {
    let mut out = String::new();
    let mut benches: Vec<&str> = Vec::new();
    for s in sets {
        if !benches.contains(&s.bench.as_str()) {
            benches.push(&s.bench);
        }
    }
    for b in benches {
        let bases: Vec<&str> = baselines(b)
            .iter()
            .copied()
            .filter(|x| sets.iter().any(|s| s.bench == b && s.contender == *x))
            .collect();
        let _ = writeln!(out, "\n### {b}\n");
        let mut head = "| case | metric | contender | median | p10–p90 | n |".to_string();
        let mut rule = "|---|---|---|--:|--:|--:|".to_string();
        for x in &bases {
            let _ = write!(head, " ÷ {x} |");
            rule += "--:|";
        }
        let _ = writeln!(out, "{head}\n{rule}");
        // Rows grouped by metric, then by size or count.
        let mut keys: Vec<(&str, &str)> = Vec::new();
        for s in sets.iter().filter(|s| s.bench == b) {
            if !keys.contains(&(s.case.as_str(), s.metric.as_str())) {
                keys.push((&s.case, &s.metric));
            }
        }
        keys.sort_by_key(|(case, metric)| (rank(METRICS, metric), case_num(case)));
        for (case, metric) in keys {
            let mut row: Vec<&Set> = sets
                .iter()
                .filter(|s| s.bench == b && s.case == case && s.metric == metric)
                .collect();
            row.sort_by_key(|s| rank(CONTENDERS, &s.contender));
            let median_of = |c: &str| {
                row.iter()
                    .find(|s| s.contender == c)
                    .and_then(|s| Stats::of(&s.samples))
                    .map(|st| st.median)
            };
            for s in &row {
                let Some(st) = Stats::of(&s.samples) else {
                    continue;
                };
                let mut line = format!(
                    "| {case} | {metric} | {} | {} | {} – {} | {} |",
                    s.contender,
                    fmt_value(st.median, &s.unit),
                    fmt_value(st.p10, &s.unit),
                    fmt_value(st.p90, &s.unit),
                    st.n
                );
                for x in &bases {
                    let cell = match median_of(x) {
                        _ if s.unit == "count" => "".into(),
                        _ if s.contender == *x => "1".into(),
                        Some(m) if m > 0.0 => format!("{:.2}", st.median / m),
                        _ => "".into(),
                    };
                    let _ = write!(line, " {cell} |");
                }
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

/// The order of the rows.
const METRICS: &[&str] = &[
    "mmap, first",
    "mmap, while mapped",
    "mmap, again after unmapping",
    "first touch, whole mapping",
    "entries inserted, 4K",
    "entries inserted, 2M",
    "entries inserted, 1G",
    "page-table entries, 4K",
    "page-table entries, 2M",
    "page-table entries, 1G",
    "page-table memory (VmPTE)",
    "sequential read",
    "sequential write",
    "p50",
    "p99",
    "p99.9",
    "p99.9 of all rounds",
    "max of all rounds",
    "ping-pong rate",
    "one way, rings sent",
    "one way, until the receiver saw the last",
    "one way, receiver wake-ups per ring",
    "connect time of the last 10 peers",
    "RSS",
];

/// The order of the contenders within a row.
const CONTENDERS: &[&str] = &[
    "ivshmem-wb",
    "ivshmem-wc",
    "ivshmem-uc",
    "resource2",
    "resource2_wc",
    "vfio-pci",
    "guest RAM memcpy",
    "host memcpy of the backing file",
    "ivshmem read()",
    "ivshmem read(), store ring",
    "ivshmem poll()",
    "ivshmem epoll(eventfd)",
    "vfio-pci read(eventfd)",
    "ivshmem ring ioctl",
    "ivshmem ring store",
    "eventfd, two threads",
];

fn rank(list: &[&str], x: &str) -> usize {
    list.iter().position(|m| *m == x).unwrap_or(list.len())
}

/// The number a case starts with, in bytes when it names a size.
fn case_num(case: &str) -> u64 {
    case_bytes(case).unwrap_or_else(|| {
        case.split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or(0)
    })
}

/// The size in bytes a case like "256 MiB" names.
pub(super) fn case_bytes(case: &str) -> Option<u64> {
    let mut w = case.split_whitespace();
    let n: u64 = w.next()?.parse().ok()?;
    match w.next()? {
        "KiB" => Some(n << 10),
        "MiB" => Some(n << 20),
        "GiB" => Some(n << 30),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(contender: &str, unit: &str, samples: &[f64]) -> Set {
        Set {
            bench: "mapping".into(),
            case: "4 MiB".into(),
            metric: "mmap, first".into(),
            unit: unit.into(),
            contender: contender.into(),
            source: "guest".into(),
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn cases_order_by_size_and_count() {
        assert_eq!(case_bytes("256 MiB"), Some(256 << 20));
        assert_eq!(case_bytes("8 GiB"), Some(8 << 30));
        assert_eq!(case_num("1000 peers"), 1000);
        assert!(case_num("4 MiB") < case_num("8 GiB"));
    }

    #[test]
    fn table_divides_medians_by_each_baseline() {
        let t = table(&[
            set("ivshmem-wb", "ns", &[100.0, 300.0, 200.0]),
            set("resource2", "ns", &[400.0]),
            set("resource2_wc", "ns", &[800.0]),
        ]);
        let row = t.lines().find(|l| l.contains("ivshmem-wb")).unwrap();
        assert!(row.ends_with("| 0.50 | 0.25 |"), "{row}");
        assert!(t.contains("÷ resource2 | ÷ resource2_wc |"), "{t}");
        let base = t.lines().find(|l| l.contains("| resource2 |")).unwrap();
        assert!(base.ends_with("| 1 | 0.50 |"), "{base}");
    }
}
