//! Every scenario by name: the suite's, the benchmarks' and the stress
//! campaign's; and the commands that choose among them, `list`, `suite`,
//! `run` and `demo`.

use crate::scenarios::{self, Scenario};
use crate::{bench, session, stress};
use anyhow::{Context, Result};
use ivshmem_vmrun::cli::{Cli, Given};
use std::time::Duration;

/// The suite's scenarios, with the run's base timeout.
fn suite_scenarios(cli: &Cli) -> Vec<Scenario> {
    scenarios::all(Duration::from_secs(cli.timeout))
}

/// The benchmarks' and the stress campaign's scenarios, with their full
/// budgets (e.g. for the rerun command a failing one prints).
fn other_scenarios() -> Vec<(Scenario, &'static str)> {
    let bench = bench::scenarios(&bench::Opts::default());
    let stress = stress::scenarios(&Default::default());
    (bench.into_iter().map(|s| (s, "bench")))
        .chain(stress.into_iter().map(|s| (s, "stress")))
        .collect()
}

/// `list`: prints every scenario's name and what it is about.
pub fn list(cli: &Cli) -> Result<bool> {
    for s in &suite_scenarios(cli) {
        let tag = if s.in_suite { "" } else { " (not in suite)" };
        println!("{:26} {}{tag}", s.name, s.about);
    }
    for (s, tag) in &other_scenarios() {
        println!("{:26} {} ({tag})", s.name, s.about);
    }
    Ok(true)
}

/// `suite`: runs the suite's scenarios, or those whose names contain one
/// of `filter`.
pub fn suite(cli: &Cli, given: &[Given], filter: &[String]) -> Result<bool> {
    let all = suite_scenarios(cli);
    let selected: Vec<&Scenario> = all
        .iter()
        .filter(|s| s.in_suite)
        .filter(|s| filter.is_empty() || filter.iter().any(|f| s.name.contains(f.as_str())))
        .collect();
    session::run(cli, given, &selected)
}

/// `run`: runs the scenarios named, of any kind.
pub fn run(cli: &Cli, given: &[Given], names: &[String]) -> Result<bool> {
    let all = suite_scenarios(cli);
    let others = other_scenarios();
    let selected = names
        .iter()
        .map(|n| {
            all.iter()
                .chain(others.iter().map(|(s, _)| s))
                .find(|s| s.name == n)
                .with_context(|| format!("no scenario named '{n}' (see `list`)"))
        })
        .collect::<Result<Vec<_>>>()?;
    session::run(cli, given, &selected)
}

/// `demo`: runs the demo.
pub fn demo(cli: &Cli, given: &[Given]) -> Result<bool> {
    let all = suite_scenarios(cli);
    let selected: Vec<&Scenario> = all.iter().filter(|s| s.name == "demo").collect();
    session::run(cli, given, &selected)
}
