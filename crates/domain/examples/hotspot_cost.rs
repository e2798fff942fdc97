//! What the hotspot analysis (每月一题) costs on a city's history: a simulated Ordos of
//! `PER_MONTH` reports a month over the 24 months before a proposal month (with the test
//! history's planted patterns and bursts), the analysis run `RUNS` times, each timed.
//!
//! `cargo run --release -p whistle-domain --example hotspot_cost -- [PER_MONTH] [RUNS]`
//! (defaults 42,000 and 5: a million reports, about what Ordos files in two years).

use std::time::Instant;

use whistle_domain::hotspot::{self, sim, Month, Params};

fn main() {
    let mut args = std::env::args().skip(1).map(|a| {
        a.replace(',', "")
            .parse::<u32>()
            .unwrap_or_else(|e| panic!("{a}: {e} (usage: hotspot_cost [PER_MONTH] [RUNS])"))
    });
    let per_month = args.next().unwrap_or(42_000);
    let runs = args.next().unwrap_or(5).max(1);
    let month = Month::new(2026, 12).expect("a month");
    let made = Instant::now();
    let history = sim::history(7, month, per_month);
    println!(
        "history: {} reports in {:.2} s",
        history.records.len(),
        made.elapsed().as_secs_f64()
    );
    let params = Params::default();
    let mut times = Vec::with_capacity(runs as usize);
    for _ in 0..runs {
        let started = Instant::now();
        let proposal = hotspot::propose(&history.records, month, &params);
        times.push(started.elapsed().as_secs_f64());
        assert!(
            !proposal.candidates.is_empty(),
            "the planted patterns are found"
        );
        if times.len() == 1 {
            println!(
                "proposal: {} reports read, {} places examined, {} topics proposed",
                proposal.reports,
                proposal.places,
                proposal.candidates.len()
            );
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "analysis: median {:.3} s, min {:.3} s, max {:.3} s over {runs} runs",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
