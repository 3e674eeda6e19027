//! Real, unmodified programs under the preload: they behave as without it,
//! and those that ask for TCP_FASTOPEN_CONNECT get it from libtfo.

use tfo_tests::{counter, Mode, Netns};

fn run(netns: &Netns, mode: Mode, script: &str) -> String {
    let out = netns.run(mode, &["bash", "-c", script]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{mode:?}: {script}\n{text}");
    text
}

fn have(program: &str) -> bool {
    std::process::Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

/// bash, python, curl, nc: same output with and without libtfo.
#[test]
fn library_loads_without_changing_behaviour() {
    let script = r#"
        echo "bash $((6 * 7))"
        python3 -c 'import socket, sys; print("python", sys.version_info.major)'
        curl --version | head -n 1 | cut -d" " -f1
        printf 'through nc\n' | nc -N 127.0.0.1 7000
        printf 'through nc6\n' | nc -N ::1 7000
    "#;
    let netns = Netns::default();
    let native = run(&netns, Mode::Native, script);
    assert_eq!(native, "bash 42\npython 3\ncurl\nthrough nc\nthrough nc6\n");
    assert_eq!(run(&netns, Mode::Shim, script), native);
}

/// curl --tcp-fastopen sets TCP_FASTOPEN_CONNECT: under libtfo its request
/// rides in the SYN to an ordinary server (tcp_fastopen 0x400: every listener
/// takes Fast Open).
#[test]
fn curl_tcp_fastopen_sends_its_request_in_the_syn() {
    assert!(have("curl") && have("python3"), "curl and python3 are needed (.ci/run installs them)");
    let dir = std::env::temp_dir().join(format!("tfo-www-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "hello from the namespace\n").unwrap();
    let script = format!(
        r#"python3 -m http.server -d {} -b 127.0.0.1 8000 >/dev/null 2>&1 &
           for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/8000) 2>/dev/null && break; sleep 0.05; done
           curl -s --tcp-fastopen http://127.0.0.1:8000/"#,
        dir.display()
    );
    let netns = Netns { prime: true, sysctl: Some(0x403), counters: true, ..Netns::default() };
    let shim = run(&netns, Mode::Shim, &script);
    let native = run(&netns, Mode::Native, &script);
    std::fs::remove_dir_all(&dir).ok();
    assert!(shim.starts_with("hello from the namespace\n"), "{shim}");
    assert_eq!(counter(&shim, "TcpExtTCPFastOpenActive"), Some(1), "{shim}");
    assert_eq!(shim, native);
}

/// A Python program that uses the option itself, as the seed shows.
#[test]
fn python_client_with_the_option() {
    let script = r#"python3 - <<'EOF'
import socket
for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, 30, 1)
    print("option", s.getsockopt(socket.IPPROTO_TCP, 30))
    s.connect((host, 7000))
    s.sendall(b"ping from python")
    print(s.recv(100).decode())
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    print("syn data acked", bool(info[5] & 32))
    s.close()
EOF"#;
    let netns = Netns { prime: true, counters: true, ..Netns::default() };
    let shim = run(&netns, Mode::Shim, script);
    assert!(shim.contains("syn data acked True"), "{shim}");
    assert_eq!(counter(&shim, "TcpExtTCPFastOpenActive"), Some(2), "{shim}");
    assert_eq!(shim, run(&netns, Mode::Native, script));
}

/// `tfo run` preloads libtfo; `tfo cookies` lists the kernel's cookie cache.
#[test]
fn tfo_command_runs_programs_and_lists_cookies() {
    let tfo = tfo_tests::root().join("target/release/tfo");
    let client = tfo_tests::example("tfo_client");
    let script = format!(
        "{tfo} cookies; {tfo} run --backend emulate -- {client} 127.0.0.1 7000 via-tfo-run",
        tfo = tfo.display(),
        client = client.display()
    );
    let netns = Netns { prime: true, counters: true, ..Netns::default() };
    let out = run(&netns, Mode::Native, &script);
    assert!(out.contains("127.0.0.1 source 127.0.0.1 cookie "), "{out}");
    assert!(out.contains("::1 source ::1 cookie "), "{out}");
    assert!(out.contains("reply: via-tfo-run\ndata in SYN acknowledged: yes"), "{out}");
    assert_eq!(counter(&out, "TcpExtTCPFastOpenActive"), Some(1), "{out}");
}

/// An asyncio event loop (epoll, non-blocking sockets) and 32 threads of
/// blocking clients, all using the option: every request is echoed and
/// rides in the SYN, natively and under libtfo alike.
#[test]
fn event_loop_and_threads_under_load() {
    for (script, total) in [("asyncio_client.py", 200), ("threads_client.py", 320)] {
        let path = tfo_tests::root().join("tests/programs").join(script);
        let command = format!("python3 {}", path.display());
        let netns = Netns { prime: true, counters: true, ..Netns::default() };
        let shim = run(&netns, Mode::Shim, &command);
        assert!(shim.contains(&format!("echoed {total} of {total}\ndata in SYN {total}\n")), "{script}: {shim}");
        assert_eq!(counter(&shim, "TcpExtTCPFastOpenActive"), Some(total), "{shim}");
        assert_eq!(shim, run(&netns, Mode::Native, &command), "{script}");
    }
}

/// A bad setting earns one line on stderr and the default; TFO_LOG=quiet
/// silences it; stdout is never touched.
#[test]
fn bad_configuration_warns_once_on_stderr() {
    let run_with = |vars: &[(&str, &str)]| {
        let out = std::process::Command::new("/bin/echo")
            .arg("unchanged")
            .env("LD_PRELOAD", tfo_tests::library())
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (stdout, stderr) = run_with(&[("TFO_BACKEND", "bogus")]);
    assert_eq!(stdout, "unchanged\n");
    // The line names the process: "libtfo[PID]: warning: ...".
    let (prefix, message) = stderr.split_once("]: ").unwrap_or_else(|| panic!("{stderr}"));
    assert!(prefix.strip_prefix("libtfo[").is_some_and(|pid| pid.parse::<u32>().is_ok()), "{stderr}");
    assert_eq!(message, "warning: ignoring TFO_BACKEND=\"bogus\" (expected auto, kernel or emulate); using auto\n");
    let (stdout, stderr) = run_with(&[("TFO_BACKEND", "bogus"), ("TFO_LOG", "quiet")]);
    assert_eq!((stdout.as_str(), stderr.as_str()), ("unchanged\n", ""));
    let (_, stderr) = run_with(&[("TFO_LOG", "loud")]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
