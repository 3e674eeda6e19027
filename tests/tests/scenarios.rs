//! The differential scenario suite (tests/scenarios.txt): every scenario
//! runs natively with the kernel's TCP_FASTOPEN_CONNECT, under libtfo in
//! explicit mode (emulating the option), under libtfo in auto mode (the
//! default: a socket that sets the option must keep the kernel's exact
//! semantics), and under libtfo with TFO_BACKEND=kernel, each in a fresh
//! network namespace. All traces must be identical; a mismatch prints them
//! side by side.

use std::sync::{Arc, Mutex};
use tfo_tests::{scenarios, side_by_side_titled, Mode, Scenario};

/// Runs one scenario; `Err` holds the report of a mismatch.
fn check(scenario: &Scenario) -> Result<(), String> {
    let native = scenario.trace(Mode::Native);
    let mut report = String::new();
    for (mode, title) in [
        (Mode::Shim, "libtfo (explicit, emulate)"),
        (Mode::ShimAuto, "libtfo (auto, emulate)"),
        (Mode::KernelBackend, "libtfo (TFO_BACKEND=kernel)"),
    ] {
        let other = scenario.trace(mode);
        if other != native {
            report += &format!(
                "\n=== {}: {} {} differs under {title}\n{}",
                scenario.name,
                scenario.address,
                scenario.steps.join(" "),
                side_by_side_titled(&native, &other, title)
            );
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}

#[test]
fn every_scenario_matches_the_kernel() {
    let all = scenarios();
    assert!(all.len() >= 40, "the suite must keep at least 40 scenarios");
    let only = std::env::var("TFO_SCENARIO").ok();
    let selected: Vec<_> = all.into_iter().filter(|s| only.as_ref().is_none_or(|o| s.name.contains(o.as_str()))).collect();
    // A filter that matches nothing would pass having compared nothing.
    assert!(!selected.is_empty(), "TFO_SCENARIO={} matches no scenario name in tests/scenarios.txt", only.unwrap_or_default());
    let queue = Arc::new(Mutex::new(selected));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (queue, failures) = (queue.clone(), failures.clone());
            std::thread::spawn(move || loop {
                let Some(scenario) = queue.lock().unwrap().pop() else { return };
                match check(&scenario) {
                    Ok(()) => eprintln!("scenario {} ... ok", scenario.name),
                    Err(report) => {
                        eprintln!("scenario {} ... DIFFERS", scenario.name);
                        failures.lock().unwrap().push(report);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{} scenario(s) differ from the kernel:{}", failures.len(), failures.join(""));
}
