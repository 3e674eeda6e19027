//! Delta debugging: drops steps (and namespace options) from a diverging
//! sequence while it still diverges the same way (same signature,
//! confirmed deterministic natively by `compare`).

use super::{compare, generate::WATCHDOG, Divergence, Outcome};
use crate::Scenario;

/// Candidate sequences tried at most per divergence (each costs 2-3 runs).
const BUDGET: usize = 200;

/// The smallest sequence found that diverges like `found`.
pub fn shrink(found: &Divergence) -> Divergence {
    let mut best = found.clone();
    let mut tries = 0;
    let mut attempt = |candidate: &Scenario, best: &mut Divergence| -> bool {
        if tries >= BUDGET {
            return false;
        }
        tries += 1;
        match compare(candidate) {
            Outcome::Differs(d) if d.signature == best.signature => {
                *best = d;
                true
            }
            _ => false,
        }
    };

    // Chunks of halving size, then single steps until nothing more goes.
    // The watchdog (first step) stays: without it a hang would stall the run.
    let mut chunk = best.scenario.steps.len() / 2;
    loop {
        let mut removed = false;
        let mut i = 1;
        while i < best.scenario.steps.len() {
            let mut candidate = best.scenario.clone();
            let end = (i + chunk.max(1)).min(candidate.steps.len());
            candidate.steps.drain(i..end);
            if attempt(&candidate, &mut best) {
                removed = true;
            } else {
                i += chunk.max(1);
            }
        }
        if chunk > 1 {
            chunk /= 2;
        } else if !removed {
            break;
        }
    }

    // Steps of forked children, one at a time.
    for i in 0..best.scenario.steps.len() {
        while let Some(children) = best.scenario.steps.get(i).and_then(|s| s.strip_prefix("fork=")).map(String::from) {
            let parts: Vec<&str> = children.split(',').collect();
            let shorter = (0..parts.len()).filter(|_| parts.len() > 1).find_map(|j| {
                let mut candidate = best.scenario.clone();
                let rest: Vec<&str> = parts.iter().enumerate().filter(|&(k, _)| k != j).map(|(_, p)| *p).collect();
                candidate.steps[i] = format!("fork={}", rest.join(","));
                attempt(&candidate, &mut best).then_some(())
            });
            if shorter.is_none() {
                break;
            }
        }
    }

    // Namespace options that turn out not to matter.
    for option in 0..3 {
        let mut candidate = best.scenario.clone();
        match option {
            0 if candidate.netns.capture => candidate.netns.capture = false,
            1 if candidate.netns.prime => candidate.netns.prime = false,
            2 if candidate.netns.sysctl.is_some() => candidate.netns.sysctl = None,
            _ => continue,
        }
        attempt(&candidate, &mut best);
    }

    // The watchdog too, when nothing hung.
    if !best.native.contains(" HANG") && !best.shim.contains(" HANG") && best.scenario.steps.first().map(String::as_str) == Some(WATCHDOG) {
        let mut candidate = best.scenario.clone();
        candidate.steps.remove(0);
        attempt(&candidate, &mut best);
    }
    best
}
