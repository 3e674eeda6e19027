//! A fixed-seed batch of the differential fuzzer (tests/src/fuzz): random
//! call sequences run natively and under libtfo in explicit mode (and in
//! auto mode where it owes the kernel's answers), each in fresh
//! namespaces; every trace must match the kernel's.
//!
//! Divergences named in tests/fuzz-known.txt (defects not fixed yet) are
//! reported, not failed on; any other divergence fails the test with a
//! scenario line ready for tests/scenarios.txt. Delete a name from that
//! file once its fix lands. `make fuzz N=... SEED=...` runs larger batches.

use std::collections::BTreeSet;
use tfo_tests::fuzz::{compare, known_file, known_names, run_batch, Outcome};

const SEED: u64 = 1;
const COUNT: u64 = 200;

#[test]
fn fixed_seed_batch_matches_the_kernel() {
    let known = known_names(&known_file());
    let batch = run_batch(SEED, 0, COUNT, 4, |_, _| {});
    assert_eq!(batch.compared as u64, COUNT);
    // A batch of mostly timing-dependent sequences would prove little.
    assert!(batch.flaky.len() as u64 * 10 <= COUNT, "{} of {COUNT} sequences are nondeterministic natively: {:?}", batch.flaky.len(), batch.flaky);

    let mut unknown = String::new();
    let mut unknown_names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (index, d) in &batch.divergences {
        seen.insert(d.scenario.name.clone());
        if known.contains(&d.scenario.name) {
            eprintln!("known divergence {} (sequence {index}): {}", d.scenario.name, d.signature);
        } else if !repeats(d) {
            eprintln!("sequence {index} diverged ({}) but did not repeat it twice more: timing, not counted", d.signature);
        } else {
            unknown += &format!("\n=== sequence {index} of seed {SEED}: {}\n{}", d.signature, d.report());
            unknown_names.insert(d.scenario.name.clone());
        }
    }
    let gone: Vec<_> = known.difference(&seen).collect();
    eprintln!(
        "{} sequences: {} same ({} also in auto mode), {} nondeterministic, {} diverging ({} distinct); {} known name(s) not seen in this batch",
        batch.compared,
        batch.same,
        batch.same_in_auto_mode,
        batch.flaky.len(),
        batch.divergences.len(),
        seen.len(),
        gone.len()
    );
    assert!(
        unknown.is_empty(),
        "libtfo diverges from the kernel in sequences whose names are not in {} (shrink one with `make fuzz`):{unknown}\n\
         names, should these be known defects:\n{}",
        known_file().display(),
        unknown_names.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// Whether a divergence comes back the same way in two more comparisons:
/// a failure must not hang on one unlucky schedule.
fn repeats(d: &tfo_tests::fuzz::Divergence) -> bool {
    (0..2).all(|_| matches!(compare(&d.scenario), Outcome::Differs(again) if again.signature == d.signature))
}
