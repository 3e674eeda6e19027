//! The differential fuzzer's command line: `make fuzz N=... SEED=...`.
//!
//! Runs N random call sequences natively and under libtfo (explicit mode,
//! emulation), each in fresh namespaces, shrinks one divergence of each
//! kind to a minimal sequence and prints it as a line for
//! tests/scenarios.txt, with both traces side by side.

use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tfo_tests::fuzz::{auto_owes_kernel_answers, compare, generate, known_file, known_names, run_batch, set_target, shrink::shrink, trace, Divergence, Outcome, Target};
use tfo_tests::{scenarios_in, side_by_side, side_by_side_titled, Mode};

#[derive(Parser)]
#[command(about = "Differential fuzzer: the kernel's TCP_FASTOPEN_CONNECT against libtfo")]
struct Args {
    /// Seed of the batch.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Sequences to run.
    #[arg(long, short = 'n', default_value_t = 1000)]
    count: u64,
    /// Index of the first sequence.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Parallel runs (at most 4).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Report divergences as found, without shrinking them.
    #[arg(long)]
    no_shrink: bool,
    /// Append each new kind of divergence (shrunk) to this file as a scenario line.
    #[arg(long)]
    findings: Option<PathBuf>,
    /// Print sequence INDEX of the seed and both of its traces, then stop.
    #[arg(long, value_name = "INDEX")]
    show: Option<u64>,
    /// Do not shrink divergences whose name starts a line of FILE (a findings
    /// file of an earlier run); read once the batch is done.
    #[arg(long, value_name = "FILE")]
    skip: Option<PathBuf>,
    /// Compare the scenario lines of FILE instead (e.g. tests/fuzz-findings.txt).
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// What to compare: explicit (the emulation, and auto mode where it owes
    /// the kernel's answers), oldkernel (the emulation libtfo picks itself on
    /// a kernel before 4.11) or auto (auto mode against its invariants).
    #[arg(long, default_value = "explicit", value_parser = ["explicit", "oldkernel", "auto"])]
    mode: String,
}

fn main() {
    let args = Args::parse();
    set_target(match args.mode.as_str() {
        "oldkernel" => Target::OldKernel,
        "auto" => Target::Auto,
        _ => Target::Explicit,
    });
    if let Some(index) = args.show {
        let scenario = generate::sequence(args.seed, index);
        println!("{}", scenario.line());
        let native = trace(&scenario, Mode::Native);
        let first = if args.mode == "oldkernel" { Mode::OldKernel } else { Mode::Shim };
        println!("{}", side_by_side(&native, &trace(&scenario, first)));
        if auto_owes_kernel_answers(&scenario, &native) {
            println!("{}", side_by_side_titled(&native, &trace(&scenario, Mode::ShimAuto), "libtfo (auto mode)"));
        }
        return;
    }
    if let Some(file) = args.replay {
        replay(&file);
        return;
    }
    let known = known_names(&known_file());
    let started = std::time::Instant::now();
    let done = Arc::new(Mutex::new(0u64));
    let count = args.count;
    let batch = run_batch(args.seed, args.first, count, args.workers, move |index, outcome| {
        let mut d = done.lock().unwrap();
        *d += 1;
        if let Outcome::Differs(div) = outcome {
            eprintln!("sequence {index}: differs: {}", div.signature);
        }
        if d.is_multiple_of(100) {
            eprintln!("{} / {count} sequences", *d);
        }
    });

    // One divergence per signature, shrunk.
    let skip = args.skip.as_deref().map(known_names).unwrap_or_default();
    let mut classes: BTreeMap<String, (usize, u64, Divergence)> = BTreeMap::new();
    for (index, d) in batch.divergences.iter().filter(|(_, d)| !skip.contains(&d.scenario.name)) {
        classes.entry(d.signature.clone()).or_insert((0, *index, d.clone())).0 += 1;
    }
    let shrunk: Vec<(usize, u64, Divergence)> = if args.no_shrink {
        classes.into_values().collect()
    } else {
        shrink_all(classes.into_values().collect(), args.workers)
    };

    println!("mode {}: seed {} sequences {}..{}: {} compared in {:.0} s", args.mode, args.seed, args.first, args.first + count, batch.compared, started.elapsed().as_secs_f64());
    println!(
        "  same: {} (of which also in auto mode: {}), natively nondeterministic (skipped): {}, diverging: {}",
        batch.same,
        batch.same_in_auto_mode,
        batch.flaky.len(),
        batch.divergences.len()
    );
    if !batch.flaky.is_empty() {
        println!("  nondeterministic: {:?}", batch.flaky);
    }
    println!("  distinct divergences: {}{}", shrunk.len(), if skip.is_empty() { String::new() } else { " (not counting those of --skip)".into() });
    let mut new_lines = Vec::new();
    for (hits, index, d) in &shrunk {
        let status = if known.contains(&d.scenario.name) { "known" } else { "NEW" };
        println!("\n=== {} ({status}; {hits} sequence(s), first {index}): {}", d.scenario.name, d.signature);
        println!("{}", d.report());
        new_lines.push(format!("# {}\n{}", d.signature, d.scenario.line()));
    }
    if let Some(path) = args.findings {
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        let fresh: Vec<_> = shrunk.iter().zip(&new_lines).filter(|((_, _, d), _)| !existing.contains(&format!("{} |", d.scenario.name))).map(|(_, l)| l.clone()).collect();
        let mut text = existing;
        for line in &fresh {
            text += &format!("{line}\n");
        }
        std::fs::write(&path, text).expect("cannot write the findings file");
        eprintln!("{} new finding(s) appended to {}", fresh.len(), path.display());
    }
}

fn shrink_all(classes: Vec<(usize, u64, Divergence)>, workers: usize) -> Vec<(usize, u64, Divergence)> {
    let total = classes.len();
    let queue = Arc::new(Mutex::new(classes));
    let out = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..workers.clamp(1, 4))
        .map(|_| {
            let (queue, out) = (queue.clone(), out.clone());
            std::thread::spawn(move || loop {
                let Some((hits, index, d)) = queue.lock().unwrap().pop() else { return };
                let small = shrink(&d);
                let mut out = out.lock().unwrap();
                out.push((hits, index, small));
                eprintln!("shrunk {} / {total}: {} steps -> {}", out.len(), d.scenario.steps.len(), out.last().unwrap().2.scenario.steps.len());
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a shrink worker panicked");
    }
    let mut out = std::mem::take(&mut *out.lock().unwrap());
    out.sort_by(|a, b| a.2.scenario.name.cmp(&b.2.scenario.name));
    out
}

/// Compares each scenario line of `file`, and says which still differ.
fn replay(file: &std::path::Path) {
    let (mut same, mut differ) = (0, 0);
    for scenario in scenarios_in(file) {
        match compare(&scenario) {
            Outcome::Same { .. } => {
                same += 1;
                println!("{}: same", scenario.name);
            }
            Outcome::Flaky => println!("{}: natively nondeterministic", scenario.name),
            Outcome::Differs(d) => {
                differ += 1;
                println!("{}: differs ({})\n{}", scenario.name, d.signature, d.sides());
            }
        }
    }
    println!("{same} same, {differ} differ");
}
