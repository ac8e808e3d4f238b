//! What a run did: the counts a worker keeps, merged per process and per
//! run, and the text form in which a process sends them to its parent.

use std::collections::BTreeMap;

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Calls issued.
    pub calls: u64,
    /// Calls by kind.
    pub ops: BTreeMap<String, u64>,
    /// Failed calls by errno.
    pub errors: BTreeMap<i32, u64>,
    /// SIGBUS raised by touching a mapping whose device had gone.
    pub sigbus: u64,
    /// Children forked by the `fork` call (besides the processes).
    pub forks: u64,
    /// Of those, the ones that died of a signal (each one a failure).
    pub fork_deaths: u64,
}

impl Report {
    pub(crate) fn merge(&mut self, o: &Report) {
        self.calls += o.calls;
        self.sigbus += o.sigbus;
        self.forks += o.forks;
        self.fork_deaths += o.fork_deaths;
        for (k, v) in &o.ops {
            *self.ops.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.errors {
            *self.errors.entry(*k).or_default() += v;
        }
    }

    /// A line-based text form, for a pipe between processes.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "calls {}\nsigbus {}\nforks {}\nfork_deaths {}\n",
            self.calls, self.sigbus, self.forks, self.fork_deaths
        );
        for (k, v) in &self.ops {
            s += &format!("op {k} {v}\n");
        }
        for (k, v) in &self.errors {
            s += &format!("err {k} {v}\n");
        }
        s
    }

    /// Parses [`Report::to_text`].
    pub fn from_text(t: &str) -> Option<Report> {
        let mut r = Report::default();
        for line in t.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["calls", n] => r.calls = n.parse().ok()?,
                ["sigbus", n] => r.sigbus = n.parse().ok()?,
                ["forks", n] => r.forks = n.parse().ok()?,
                ["fork_deaths", n] => r.fork_deaths = n.parse().ok()?,
                ["op", k, n] => {
                    r.ops.insert((*k).to_string(), n.parse().ok()?);
                }
                ["err", k, n] => {
                    r.errors.insert(k.parse().ok()?, n.parse().ok()?);
                }
                [] => {}
                _ => return None,
            }
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        let mut r = Report {
            calls: 10,
            sigbus: 2,
            forks: 3,
            fork_deaths: 1,
            ..Default::default()
        };
        r.ops.insert("mmap".into(), 4);
        r.errors.insert(19, 3);
        assert_eq!(Report::from_text(&r.to_text()), Some(r));
        assert_eq!(Report::from_text("bogus line here"), None);
    }
}
