//! The README's container recipe, executed (`make container-test`, part of
//! `make test`): `tests/container/run` makes a Debian 12 base with
//! mmdebstrap, builds examples/Dockerfile on it with podman (libtfo from its
//! .deb, named in /etc/ld.so.preload), and runs containers of the image on
//! a namespace link 50 ms from a Fast Open server. Unmodified programs in
//! the container carry their requests in the SYN on repeats, `tfo doctor`
//! passes inside, and the image rolled back (examples/Dockerfile.rollback)
//! or run with TFO_MODE=off works plainly. It fails, never skips, when
//! podman, crun, mmdebstrap or cargo-deb is missing.

use tfo_tests::{root, values};

/// Every `KEY LABEL VALUE` line's value for `key label`.
fn count(out: &str, key: &str) -> i64 {
    let v = values(out, key);
    assert_eq!(v.len(), 1, "one `{key}` line expected\n{out}");
    v[0]
}

#[test]
fn container_image_gets_fast_open_and_rolls_back() {
    let out = std::process::Command::new("timeout")
        .args(["-k", "5", "1200"])
        .arg(root().join("tests/container/run"))
        .current_dir(root())
        .output()
        .expect("cannot run tests/container/run");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "tests/container/run failed ({})\n{text}", out.status);

    // An unmodified curl in three containers: every reply, and the two
    // after the first (which fetched the cookie) carried the request.
    for i in 1..=3 {
        assert!(text.contains(&format!("curl-alone hello from http /alone{i}\n")), "{text}");
    }
    assert_eq!(count(&text, "active curl-alone"), 2, "{text}");

    // Five programs of a shell script in one container: libtfo mapped by
    // /etc/ld.so.preload, every reply right, every SYN with data (the
    // cookie is cached by now) — client and server counted them.
    let replies = ["curl", "wget", "python", "nc", "bash"];
    for (label, preloaded, syn_data) in [("libtfo", 1, 5), ("mode-off", 1, 0), ("rollback", 0, 0)] {
        assert_eq!(count(&text, &format!("{label} maps")), preloaded, "{label}: libtfo mapped?\n{text}");
        for program in replies {
            assert!(text.contains(&format!("{label} {program} hello from http /{program}\n")), "{label} {program}\n{text}");
        }
        // Nothing else printed: no loader error after the rollback.
        let lines = text.lines().filter(|l| l.starts_with(&format!("{label} "))).count();
        assert_eq!(lines, 1 + replies.len(), "{label}: unexpected output\n{text}");
        assert_eq!(count(&text, &format!("active {label}")), syn_data, "{label}: SYNs with data (client)\n{text}");
        assert_eq!(count(&text, &format!("passive {label}")), syn_data, "{label}: SYNs with data (server)\n{text}");
    }

    // tfo doctor, the image's command, passes inside the container: with
    // --privileged its live self-test runs and passes; without, it is
    // skipped (the container may not configure a network namespace).
    assert_eq!(count(&text, "doctor-status privileged"), 0, "{text}");
    assert!(text.contains("doctor-privileged ✓ live self-test: an unmodified client"), "{text}");
    assert_eq!(count(&text, "doctor-status plain"), 0, "{text}");
    assert!(text.contains("doctor-plain - live self-test: skipped (not permitted"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("doctor-") && l.contains(" ✗ ")), "{text}");
}
