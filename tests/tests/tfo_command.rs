//! The `tfo` command: every subcommand's exit status, output and JSON, and
//! the installed layout (make install, /etc/ld.so.preload).

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tfo_tests::{counter, Mode, Netns};

/// Set to true once shim/ implements TFO_MODE=auto (the default of the
/// configuration contract): then an unmodified client must get Fast Open in
/// `tfo doctor`'s self-test and under /etc/ld.so.preload.
const LIBRARY_HAS_AUTO_MODE: bool = true;

/// Set to true once shim/ writes TFO_STATS files: then `tfo stats` must
/// count what a run under `tfo run --stats` did.
const LIBRARY_WRITES_STATS: bool = true;

fn tfo() -> PathBuf {
    let path = tfo_tests::root().join("target/release/tfo");
    assert!(path.exists(), "{} is missing: run `make test` (it builds everything first)", path.display());
    path
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tfo-command-{label}-{}-{n}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn display(&self) -> std::path::Display<'_> {
        self.0.display()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `tfo ARGS` outside any namespace, without TFO_* from the caller.
fn tfo_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(tfo());
    cmd.args(args).env_remove("TFO_LIB").env_remove("LD_PRELOAD").env_remove("TFO_STATE_DIR");
    cmd
}

fn run_tfo(args: &[&str]) -> Output {
    tfo_command(args).output().expect("cannot run tfo")
}

/// A bash script in a fresh namespace (tests/in-netns); stdout, stderr, status.
fn in_netns(netns: &Netns, script: &str) -> Output {
    netns.run(Mode::Native, &["bash", "-c", script])
}

fn json(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(out)))
}

fn check<'a>(doctor: &'a Value, name: &str) -> &'a Value {
    doctor["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name} check: {doctor}"))
}

// ---- tfo run --------------------------------------------------------------

/// The child really has libtfo mapped, and every option became its variable.
#[test]
fn run_preloads_libtfo_and_sets_the_variables() {
    let lib = tfo_tests::library().canonicalize().unwrap();
    let stats = TempDir::new("run-stats");
    let out = tfo_command(&["run", "--mode", "explicit", "--backend", "kernel", "--server", "--log", "debug"])
        .arg("--stats")
        .arg(stats.join("sub"))
        .args(["--", "sh", "-c", "cat /proc/self/maps; env"])
        .env("LD_PRELOAD", &lib) // already there: not listed twice
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.lines().any(|l| l.ends_with(lib.to_str().unwrap())), "libtfo not mapped in the child:\n{stdout}");
    for variable in [
        format!("LD_PRELOAD={}", lib.display()),
        "TFO_MODE=explicit".to_owned(),
        "TFO_BACKEND=kernel".to_owned(),
        "TFO_SERVER=1".to_owned(),
        "TFO_LOG=debug".to_owned(),
        format!("TFO_STATS={}", stats.join("sub").display()),
    ] {
        assert!(stdout.lines().any(|l| l == variable), "{variable} missing:\n{stdout}");
    }
    assert!(stats.join("sub").is_dir(), "the statistics directory is made for the program");

    // A relative pattern becomes absolute (the program may chdir); no directory is made for it.
    let out = tfo_command(&["run", "--stats", "rel/%p.stats", "--", "sh", "-c", "echo $TFO_STATS"])
        .current_dir(&stats.0)
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), format!("{}\n", stats.join("rel/%p.stats").display()));
    assert!(!stats.join("rel").exists());
}

/// exec: the status is the program's own, death by a signal included; a
/// program that cannot run gets env(1)'s statuses.
#[test]
fn run_exits_with_the_programs_status() {
    assert_eq!(run_tfo(&["run", "--", "sh", "-c", "exit 7"]).status.code(), Some(7));
    let killed = run_tfo(&["run", "--", "sh", "-c", "kill -USR1 $$"]);
    assert_eq!(killed.status.signal(), Some(libc::SIGUSR1), "{:?}", killed.status);
    // What a shell shows: 128 + N.
    let shell = Command::new("bash")
        .args(["-c", r#""$0" run -- sh -c 'kill -TERM $$'; echo "status $?""#])
        .arg(tfo())
        .output()
        .unwrap();
    assert_eq!(text(&shell.stdout), "status 143\n");
    let missing = run_tfo(&["run", "--", "/nonexistent/program"]);
    assert_eq!(missing.status.code(), Some(127), "{}", text(&missing.stderr));
    let dir = TempDir::new("run-noexec");
    std::fs::write(dir.join("not-executable"), "#!/bin/sh\n").unwrap();
    let noexec = tfo_command(&["run", "--"]).arg(dir.join("not-executable")).output().unwrap();
    assert_eq!(noexec.status.code(), Some(126), "{}", text(&noexec.stderr));
    let nolib = run_tfo(&["run", "--lib", "/nonexistent/libtfo.so", "--", "true"]);
    assert_eq!(nolib.status.code(), Some(125));
    assert!(text(&nolib.stderr).contains("/nonexistent/libtfo.so, which does not exist"), "{}", text(&nolib.stderr));
}

/// One warning line for a static program (also as a script's interpreter)
/// and a setuid one; the program runs anyway. None for ordinary programs.
#[test]
fn run_warns_about_programs_the_loader_will_not_preload() {
    let dir = TempDir::new("run-warnings");
    std::fs::write(dir.join("static.c"), "#include <stdio.h>\nint main(void) { puts(\"static ran\"); return 3; }\n").unwrap();
    let cc = Command::new("gcc")
        .args(["-static", "-o"])
        .arg(dir.join("static"))
        .arg(dir.join("static.c"))
        .output()
        .expect("gcc is needed (scripts/packages.txt)");
    assert!(cc.status.success(), "static build failed (libc6-dev has libc.a): {}", text(&cc.stderr));

    let out = tfo_command(&["run", "--"]).arg(dir.join("static")).output().unwrap();
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(3), "static ran\n"));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("tfo: warning: ") && stderr.contains("is statically linked"), "{stderr}");

    let script = dir.join("script");
    std::fs::write(&script, format!("#!{}\n", dir.join("static").display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = tfo_command(&["run", "--"]).arg(&script).output().unwrap();
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("{} runs {}, which is statically linked", script.display(), dir.join("static").display())), "{stderr}");

    let setuid = dir.join("setuid-true");
    std::fs::copy("/bin/true", &setuid).unwrap();
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let out = tfo_command(&["run", "--"]).arg(&setuid).output().unwrap();
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is setuid/setgid"), "{stderr}");

    let out = run_tfo(&["run", "--", "true"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", text(&out.stderr));
}

// ---- tfo doctor -----------------------------------------------------------

/// In a namespace with Fast Open on, every check of the machine passes, the
/// sysctl's bits are explained, and the live self-test shows a repeat
/// connection with its data in the SYN.
#[test]
fn doctor_in_a_good_namespace() {
    let tfo = tfo();
    let out = in_netns(&Netns::default(), &format!("{} doctor --json", tfo.display()));
    let doctor = json(&out.stdout);
    for name in ["kernel", "tcp_fastopen", "tcp_fastopen_connect", "tcpi_fastopen_client_fail", "tcp_metrics", "blackhole", "library"] {
        assert_eq!(check(&doctor, name)["status"], "pass", "{name}: {doctor:#}");
    }
    let sysctl = check(&doctor, "tcp_fastopen");
    assert_eq!(sysctl["facts"]["value"], 3);
    let bits = sysctl["facts"]["bits"].as_array().unwrap();
    let on: Vec<&str> = bits.iter().filter(|b| b["on"] == true).map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(on, ["client", "server"]);
    assert_eq!(bits.len(), 5);
    assert!(bits.iter().all(|b| !b["meaning"].as_str().unwrap().is_empty()));

    let self_test = check(&doctor, "self_test");
    let rounds = self_test["facts"]["rounds"].as_array().unwrap();
    let round = |mode: &str| rounds.iter().find(|r| r["mode"] == mode).unwrap_or_else(|| panic!("{self_test:#}"));
    // The explicit client always works: its repeat carried data in the SYN.
    let explicit = round("explicit");
    assert_eq!(explicit["connections"][0]["syn_data_acked"], false, "{self_test:#}");
    assert_eq!(explicit["connections"][1]["syn_data_acked"], true, "{self_test:#}");
    assert_eq!(explicit["fastopen_active"], 1, "{self_test:#}");
    if LIBRARY_HAS_AUTO_MODE {
        assert_eq!(self_test["status"], "pass", "{self_test:#}");
        assert_eq!(round("auto")["connections"][1]["syn_data_acked"], true, "{self_test:#}");
        assert_eq!(doctor["ok"], true);
        assert_eq!(out.status.code(), Some(0));
    } else {
        assert_eq!(self_test["status"], "fail", "{self_test:#}");
        assert!(self_test["fix"].as_str().unwrap().contains("auto mode"), "{self_test:#}");
    }

    // The text form: one line per check, a fix under each failure.
    let out = in_netns(&Netns::default(), &format!("{} doctor", tfo.display()));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.iter().filter(|l| !l.starts_with("    ")).count(), 9, "{stdout}");
    for (i, line) in lines.iter().enumerate() {
        let symbol = line.chars().next().unwrap();
        assert!("✓✗!- ".contains(symbol), "{line}");
        if symbol == '✗' {
            assert!(lines.get(i + 1).is_some_and(|next| next.starts_with("    fix: ")), "{stdout}");
        }
    }
    assert!(stdout.starts_with("✓ kernel: Linux "), "{stdout}");
}

/// Client Fast Open off in the namespace: the sysctl check fails and says
/// which value to set; doctor exits 1.
#[test]
fn doctor_says_how_to_turn_client_fast_open_on() {
    let tfo = tfo();
    for (sysctl, wanted) in [(0, 1), (2, 3)] {
        let netns = Netns { sysctl: Some(sysctl), ..Netns::default() };
        let out = in_netns(&netns, &format!("{} doctor", tfo.display()));
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        let line = stdout.lines().position(|l| l.starts_with(&format!("✗ net.ipv4.tcp_fastopen = {sysctl} "))).expect(&stdout);
        assert!(stdout.lines().nth(line).unwrap().contains("0x1 client off"), "{stdout}");
        let fix = stdout.lines().nth(line + 1).unwrap();
        assert!(fix.starts_with(&format!("    fix: sysctl -w net.ipv4.tcp_fastopen={wanted} ")), "{stdout}");
        let out = in_netns(&netns, &format!("{} doctor --json", tfo.display()));
        let doctor = json(&out.stdout);
        assert_eq!(doctor["ok"], false);
        assert_eq!(check(&doctor, "tcp_fastopen")["status"], "fail");
        assert_eq!(check(&doctor, "tcp_fastopen")["facts"]["value"], sysctl);
    }
}

/// No library, or one the loader refuses: the library check fails with the
/// reason, the self-test is skipped, doctor exits 1.
#[test]
fn doctor_reports_a_missing_or_broken_library() {
    let out = run_tfo(&["doctor", "--json", "--lib", "/nonexistent/libtfo.so"]);
    assert_eq!(out.status.code(), Some(1));
    let doctor = json(&out.stdout);
    let library = check(&doctor, "library");
    assert_eq!(library["status"], "fail");
    assert_eq!(library["facts"]["found"], false);
    assert!(library["fix"].as_str().unwrap().contains("make install"), "{library}");
    assert_eq!(check(&doctor, "self_test")["status"], "skip");

    // A tfo on its own: nothing next to it, nothing in ../lib.
    let dir = TempDir::new("doctor-alone");
    std::fs::create_dir(dir.join("bin")).unwrap();
    std::fs::copy(tfo(), dir.join("bin/tfo")).unwrap();
    let out = Command::new(dir.join("bin/tfo")).arg("doctor").env_remove("TFO_LIB").output().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains(&format!("✗ libtfo: libtfo.so not found (looked at {}", dir.join("bin/libtfo.so").display())), "{stdout}");

    // A file that is no shared object: the loader's own words come back.
    std::fs::write(dir.join("bin/libtfo.so"), "not an ELF file").unwrap();
    let out = Command::new(dir.join("bin/tfo")).args(["doctor", "--json"]).env_remove("TFO_LIB").output().unwrap();
    let library = check(&json(&out.stdout), "library").clone();
    assert_eq!((library["status"].as_str(), library["facts"]["loads"].as_bool()), (Some("fail"), Some(false)), "{library}");
    assert!(library["facts"]["loader"].as_str().unwrap().contains("cannot be preloaded"), "{library}");
}

// ---- tfo cookies ----------------------------------------------------------

/// The primed cookies of both servers, as text and JSON, and filtered.
#[test]
fn cookies_as_text_and_json_with_filters() {
    let tfo = tfo();
    let script = format!(
        "{tfo} cookies; echo ==; {tfo} cookies --json; echo ==; {tfo} cookies --json ::1; echo ==; \
         {tfo} cookies --json 198.18.0.0/15; echo ==; {tfo} cookies 127.0.0.0/8",
        tfo = tfo.display()
    );
    let out = in_netns(&Netns::primed(), &script);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let parts: Vec<&str> = stdout.split("==\n").collect();
    assert_eq!(parts.len(), 5, "{stdout}");
    // 127.0.0.1 source 127.0.0.1 cookie 0a1b... mss 65483 age 12ms
    let lines: Vec<&str> = parts[0].lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for line in &lines {
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!((words[1], words[3], words[5], words[7]), ("source", "cookie", "mss", "age"), "{line}");
        assert!(words[4].len() >= 8 && words[4].chars().all(|c| c.is_ascii_hexdigit()), "{line}");
    }
    let all = json(parts[1].as_bytes());
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2);
    for entry in all {
        assert_eq!(entry["destination"], entry["source"]);
        assert!(entry["cookie"].as_str().unwrap().len() >= 8, "{entry}");
        assert!(entry["mss"].as_u64().unwrap() > 0, "{entry}");
        assert!(entry["age_ms"].as_u64().is_some(), "{entry}");
        assert_eq!(entry["syn_drops"], 0);
    }
    let v6 = json(parts[2].as_bytes());
    assert_eq!(v6.as_array().unwrap().len(), 1);
    assert_eq!(v6[0]["destination"], "::1");
    assert_eq!(json(parts[3].as_bytes()), serde_json::json!([]));
    assert!(parts[4].starts_with("127.0.0.1 source 127.0.0.1 cookie ") && parts[4].lines().count() == 1, "{stdout}");
}

// ---- tfo stats ------------------------------------------------------------

/// Sums of files written here, as a table and as JSON; a damaged file is
/// skipped with a warning; no file at all is an error.
#[test]
fn stats_sums_the_files() {
    let dir = TempDir::new("stats");
    std::fs::write(
        dir.join("libtfo.100.stats"),
        "pid 100\nprogram curl\nsockets_seen 3\nconnections_deferred 2\nsyn_data_sent 2\nsyn_data_acked 2\nfallback_policy 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("libtfo.200.stats"),
        "pid 200\nprogram wget\nsockets_seen 4\nsyn_data_sent 1\nsyn_data_reset 1\nreset_retries 1\nfuture_counter 7\n",
    )
    .unwrap();
    std::fs::write(dir.join("libtfo.300.stats"), "pid 300\nprogram x\nsockets_seen many\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "not statistics\n").unwrap();

    let out = tfo_command(&["stats", "--json"]).arg(&dir.0).output().unwrap();
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("libtfo.300.stats") && stderr.contains("sockets_seen is not a count"), "{stderr}");
    let stats = json(&out.stdout);
    assert_eq!(stats["files"], 2);
    assert_eq!(stats["programs"], serde_json::json!({ "curl": 1, "wget": 1 }));
    let expected = [
        ("sockets_seen", 7),
        ("connections_deferred", 2),
        ("syn_data_sent", 3),
        ("syn_data_acked", 2),
        ("fallback_policy", 1),
        ("kicks_read", 0),
        ("syn_data_reset", 1),
        ("reset_retries", 1),
        ("future_counter", 7),
    ];
    for (key, value) in expected {
        assert_eq!(stats["totals"][key], value, "{key}: {stats:#}");
    }
    // The contract's order, then keys this tfo does not know.
    let keys: Vec<&String> = stats["totals"].as_object().unwrap().keys().collect();
    assert_eq!((keys[0].as_str(), keys.last().unwrap().as_str(), keys.len()), ("sockets_seen", "future_counter", 17));

    let out = tfo_command(&["stats"]).arg(dir.join("libtfo.100.stats")).arg(dir.join("libtfo.200.stats")).output().unwrap();
    let table = text(&out.stdout);
    let row = |key: &str| table.lines().find(|l| l.split_whitespace().next() == Some(key)).map(|l| l.split_whitespace().nth(1).unwrap().to_owned());
    assert_eq!(row("files").as_deref(), Some("2"), "{table}");
    assert_eq!(row("sockets_seen").as_deref(), Some("7"), "{table}");
    assert_eq!(row("syn_data_sent").as_deref(), Some("3"), "{table}");
    assert!(out.stderr.is_empty());

    let empty = TempDir::new("stats-empty");
    assert_eq!(tfo_command(&["stats"]).arg(&empty.0).output().unwrap().status.code(), Some(1));
}

/// What libtfo wrote for a run under `tfo run --stats` counts that run.
#[test]
fn stats_count_what_a_run_did() {
    if !LIBRARY_WRITES_STATS {
        eprintln!("skipped until shim/ writes TFO_STATS (LIBRARY_WRITES_STATS)");
        return;
    }
    let dir = TempDir::new("stats-run");
    let script = format!(
        "TFO_EXCLUDE=none {tfo} run --stats {dir} -- {client} 127.0.0.1:7000 counted && {tfo} stats --json {dir}",
        tfo = tfo().display(),
        dir = dir.0.display(),
        client = tfo_tests::root().join("target/release/tfo-std-client").display()
    );
    let out = in_netns(&Netns::primed(), &script);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let stats = json(stdout.split_once("counted\n").expect(&stdout).1.as_bytes());
    assert_eq!(stats["files"], 1);
    for key in ["sockets_seen", "connections_deferred", "syn_data_sent", "syn_data_acked"] {
        assert_eq!(stats["totals"][key], 1, "{key}: {stats:#}");
    }
}

// ---- tfo failures / forget -------------------------------------------------

fn failure_memory() -> TempDir {
    let dir = TempDir::new("failures");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700)).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    std::fs::write(dir.join("198.18.0.2"), format!("libtfo-failure v1 2 {} dropped\n", now + 600)).unwrap();
    std::fs::write(dir.join("2001-db8--1"), format!("libtfo-failure v1 1 {} reset\n", now - 5)).unwrap();
    std::fs::write(dir.join("198.18.0.3"), "libtfo-failure v9 what\n").unwrap();
    std::fs::write(dir.join("elsewhere"), "libtfo-failure v1 1 1 reset\n").unwrap();
    std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join("198.18.0.4")).unwrap();
    std::fs::write(dir.join(".198.18.0.5.tmp"), "half written").unwrap();
    // A path (the local source address 198.18.0.1) stopped after two
    // destinations, and one that only notes Fast Open worked (not listed).
    std::fs::write(dir.join("path-198.18.0.1"), format!("libtfo-path v1 1 {} option - 0 0\n", now + 300)).unwrap();
    std::fs::write(dir.join("path-2001-db8--9"), format!("libtfo-path v1 0 0 dropped - 0 {now}\n")).unwrap();
    dir
}

/// The valid entries with their facts; symlinks, damaged and stray files
/// are skipped with one warning each (the half-written one silently).
#[test]
fn failures_lists_the_memory() {
    let dir = failure_memory();
    let out = tfo_command(&["failures", "--json"]).env("TFO_STATE_DIR", &dir.0).output().unwrap();
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
    for name in ["198.18.0.3: damaged", "198.18.0.4: not a regular file", "elsewhere: not named after an address"] {
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    let entries = json(&out.stdout);
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 3, "{entries:?}");
    // Paths first: they speak for every destination behind them.
    assert_eq!((entries[0]["kind"].as_str(), entries[0]["source"].as_str(), entries[0]["reason"].as_str()), (Some("path"), Some("198.18.0.1"), Some("option")));
    assert!((290..=300).contains(&entries[0]["remaining_sec"].as_u64().unwrap()), "{entries:?}");
    let first = &entries[1];
    assert_eq!((first["kind"].as_str(), first["destination"].as_str(), first["failures"].as_u64()), (Some("destination"), Some("198.18.0.2"), Some(2)));
    assert_eq!(first["reason"], "dropped");
    assert!((590..=600).contains(&first["remaining_sec"].as_u64().unwrap()), "{entries:?}");
    assert_eq!((entries[2]["destination"].as_str(), entries[2]["remaining_sec"].as_u64()), (Some("2001:db8::1"), Some(0)));

    let out = run_tfo(&["failures", "--state-dir", dir.0.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let path = lines.next().unwrap_or_default();
    assert!(path.starts_with("path from 198.18.0.1 failures 1 reason option (SYNs carrying the Fast Open option are dropped) no Fast Open for "), "{stdout}");
    let first = lines.next().unwrap_or_default();
    assert!(first.starts_with("198.18.0.2 failures 2 reason dropped (SYNs carrying data are dropped) no Fast Open for ") && first.contains(" more (until "), "{stdout}");
    assert!(stdout.contains("2001:db8::1 failures 1 reason reset (SYNs carrying data are reset) backoff over"), "{stdout}");

    // Not the user's private directory: refused altogether.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run_tfo(&["failures", "--state-dir", dir.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not 0700"), "{}", text(&out.stderr));
    let link = TempDir::new("failures-link");
    std::os::unix::fs::symlink(&dir.0, link.join("state")).unwrap();
    let out = run_tfo(&["failures", "--state-dir", link.join("state").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is a symlink"), "{}", text(&out.stderr));

    // A directory that does not exist yet holds nothing.
    let out = run_tfo(&["failures", "--json", "--state-dir", dir.join("absent").to_str().unwrap()]);
    assert_eq!((out.status.code(), json(&out.stdout)), (Some(0), serde_json::json!([])));
}

/// forget DEST removes that destination's file only; forget removes every
/// entry of ours (damaged ones too) and never what a symlink points to.
#[test]
fn forget_clears_the_memory() {
    let dir = failure_memory();
    let state = dir.0.to_str().unwrap();
    let out = run_tfo(&["forget", "--state-dir", state, "198.18.0.2"]);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "forgot 198.18.0.2\n"));
    assert!(!dir.join("198.18.0.2").exists() && dir.join("2001-db8--1").exists());

    let out = run_tfo(&["forget", "--state-dir", state, "198.18.0.2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nothing remembered for 198.18.0.2"), "{}", text(&out.stderr));

    let out = run_tfo(&["forget", "--state-dir", state]);
    assert!(out.status.success());
    let mut forgot: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    forgot.sort();
    assert_eq!(forgot, ["forgot 198.18.0.3", "forgot 2001:db8::1", "forgot path from 198.18.0.1"]);
    assert!(dir.join("elsewhere").exists(), "a symlink's target is never touched");
    assert!(std::fs::symlink_metadata(dir.join("198.18.0.4")).is_ok());
    let out = tfo_command(&["failures", "--json"]).env("TFO_STATE_DIR", &dir.0).output().unwrap();
    assert_eq!(json(&out.stdout), serde_json::json!([]));
}

// ---- installation ------------------------------------------------------------

fn install(destdir: &Path) {
    let man = tfo_tests::root().join("target/release/man/tfo.1");
    assert!(man.exists(), "{} is missing: run `make test` (it builds everything first)", man.display());
    let out = Command::new("make")
        .arg("-C")
        .arg(tfo_tests::root())
        .arg("install")
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg("PREFIX=/usr/local")
        .output()
        .expect("make is needed");
    assert!(out.status.success(), "make install: {}{}", text(&out.stdout), text(&out.stderr));
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            files.extend(files_under(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files.sort();
    files
}

/// make install lays out bin/, lib/ and the man pages; the installed tfo
/// finds the installed library in ../lib; make uninstall removes it all.
#[test]
fn make_install_and_uninstall() {
    let stage = TempDir::new("install");
    install(&stage.0);
    let prefix = stage.join("usr/local");
    let lib = prefix.join("lib/libtfo.so");
    let installed: Vec<String> =
        files_under(&stage.0).iter().map(|p| p.strip_prefix(&prefix).unwrap().display().to_string()).collect();
    let mut expected = vec!["bin/tfo".to_owned(), "lib/libtfo.so".to_owned()];
    for page in ["tfo", "tfo-cookies", "tfo-doctor", "tfo-failures", "tfo-forget", "tfo-probe", "tfo-run", "tfo-stats"] {
        expected.push(format!("share/man/man1/{page}.1"));
    }
    expected.sort();
    assert_eq!(installed, expected);
    let page = std::fs::read_to_string(prefix.join("share/man/man1/tfo-run.1")).unwrap();
    assert!(page.contains(".TH tfo-run 1") && page.contains("TFO_MODE"), "{page}");

    let out = Command::new(prefix.join("bin/tfo"))
        .args(["run", "--", "cat", "/proc/self/maps"])
        .env_remove("TFO_LIB")
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert!(text(&out.stdout).lines().any(|l| l.ends_with(lib.to_str().unwrap())), "{}", text(&out.stderr));

    let out = Command::new("make")
        .arg("-C")
        .arg(tfo_tests::root())
        .arg("uninstall")
        .arg(format!("DESTDIR={}", stage.display()))
        .arg("PREFIX=/usr/local")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(files_under(&stage.0), Vec::<PathBuf>::new());
}

/// The README's /etc/ld.so.preload recipe, for real but only inside a
/// private mount and network namespace: every program started there loads
/// the installed library, and curl's repeat requests ride in the SYN.
#[test]
fn etc_ld_so_preload_recipe() {
    let before = std::fs::read("/etc/ld.so.preload").ok();
    let stage = TempDir::new("etc-preload");
    install(&stage.0);
    let lib = stage.join("usr/local/lib/libtfo.so");
    let server = r#"python3 -m http.server -b 127.0.0.1 8000 >/dev/null 2>&1 &
        for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/8000) 2>/dev/null && break; sleep 0.05; done"#;
    // 0x403: curl's Fast Open reaches python's ordinary listener (0x400).
    let netns = Netns { sysctl: Some(0x403), counters: true, etc_preload: Some(lib.clone()), ..Netns::default() };

    let script = format!(
        r#"cat /etc/ld.so.preload
        grep -c -F '{lib}' /proc/self/maps
        {server}
        for i in 1 2; do curl -s --tcp-fastopen http://127.0.0.1:8000/ > /dev/null; done
        TFO_EXCLUDE=none TFO_LOG=debug curl -s -o /dev/null http://127.0.0.1:8000/ 2>&1 | grep -c libtfo"#,
        lib = lib.display()
    );
    let out = in_netns(&netns, &script);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], lib.to_str().unwrap(), "{stdout}");
    assert!(lines[1].parse::<u32>().unwrap() > 0, "libtfo not mapped into grep: {stdout}");
    assert!(lines[2].parse::<u32>().unwrap() > 0, "the last curl printed no libtfo log line: {stdout}");
    // The second --tcp-fastopen request, and the unmodified one after it.
    assert_eq!(counter(&stdout, "TcpExtTCPFastOpenActive"), Some(2), "the two repeats: {stdout}");
    assert_eq!(counter(&stdout, "TcpExtTCPFastOpenCookieReqd"), Some(1), "{stdout}");

    if LIBRARY_HAS_AUTO_MODE {
        // An unmodified curl: no --tcp-fastopen; loopback is excluded by default.
        let netns = Netns { env: vec![("TFO_EXCLUDE".into(), "none".into())], ..netns };
        let script = format!("{server}\nfor i in 1 2 3; do curl -s http://127.0.0.1:8000/ > /dev/null; done");
        let out = in_netns(&netns, &script);
        let stdout = text(&out.stdout);
        // bash's own /dev/tcp probe (preloaded too) may fetch the cookie
        // first; then all three requests carry data, else the last two.
        let active = counter(&stdout, "TcpExtTCPFastOpenActive").unwrap_or(0);
        assert!((2..=3).contains(&active), "{stdout}{}", text(&out.stderr));
    }
    assert_eq!(std::fs::read("/etc/ld.so.preload").ok(), before, "the machine's /etc/ld.so.preload changed");
}

/// `tfo --help` names every command; a command is required.
#[test]
fn help_lists_the_commands() {
    let out = run_tfo(&["--help"]);
    let help = text(&out.stdout);
    for command in ["run", "doctor", "cookies", "stats", "failures", "forget", "probe"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(command)), "{command}: {help}");
    }
    // The internal commands stay hidden.
    assert!(!help.lines().any(|l| ["inside", "selftest"].iter().any(|c| l.trim_start().starts_with(c))), "{help}");
    assert_eq!(run_tfo(&["run"]).status.code(), Some(2));
}
