//! `tfo stats`: sums the statistics files libtfo writes (TFO_STATS): plain
//! text, one `key value` per line, a `pid` and `program` line first, then
//! counters. Keys this version does not know are summed too, after the
//! known ones.

use crate::cli::StatsArgs;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The counters of the contract, in its order, with what each counts.
pub const COUNTERS: [(&str, &str); 16] = [
    ("sockets_seen", "TCP client sockets whose connect() libtfo saw"),
    ("connections_deferred", "connect() returned with the SYN deferred (Fast Open on)"),
    ("syn_data_sent", "first writes that left in a SYN with data"),
    ("syn_data_acked", "... whose data the server acknowledged"),
    ("fallback_policy", "not deferred: TFO_PORTS/INCLUDE/EXCLUDE"),
    ("fallback_disabled", "not deferred: client Fast Open off or unsupported"),
    ("fallback_failure_memory", "not deferred: destination in failure backoff"),
    ("fallback_error", "not deferred: any other reason"),
    ("kicks_read", "SYN sent without data: the program read first"),
    ("kicks_wait", "... it waited for input (poll/select/epoll)"),
    ("kicks_shutdown", "... it shut down before writing"),
    ("kicks_exec", "... before exec/spawn"),
    ("syn_data_dropped", "SYN data dropped (tcpi_fastopen_client_fail 3)"),
    ("syn_data_reset", "SYN with data answered by a reset"),
    ("reset_retries", "connections retried without data after such a reset"),
    ("fallback_no_cookie", "not deferred: no cookie yet (asked for on a connection of libtfo's own)"),
];

/// Keys that identify a file rather than count anything.
const IDENTITY: [&str; 2] = ["pid", "program"];

/// One parsed statistics file.
#[derive(Debug, PartialEq)]
pub struct StatsFile {
    pub program: Option<String>,
    pub counters: Vec<(String, u64)>,
}

pub fn parse(text: &str) -> Result<StatsFile, String> {
    let mut program = None;
    let mut pid = false;
    let mut counters = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once(char::is_whitespace).ok_or(format!("line {}: no value", number + 1))?;
        let value = value.trim();
        match key {
            "pid" => pid = value.parse::<u32>().is_ok(),
            "program" => program = Some(value.to_owned()),
            _ => {
                let n = value.parse().map_err(|_| format!("line {}: {key} is not a count: {value:?}", number + 1))?;
                counters.push((key.to_owned(), n));
            }
        }
    }
    if !pid {
        return Err("no pid line: not a libtfo statistics file".to_owned());
    }
    Ok(StatsFile { program, counters })
}

/// Sums over several files: counters in the contract's order, then unknown keys as met.
#[derive(Default)]
pub struct Totals {
    pub files: usize,
    pub programs: BTreeMap<String, u64>,
    pub counters: Vec<(String, u64)>,
}

impl Totals {
    fn new() -> Self {
        Totals { counters: COUNTERS.iter().map(|(k, _)| (k.to_string(), 0)).collect(), ..Totals::default() }
    }

    fn add(&mut self, file: StatsFile) {
        self.files += 1;
        *self.programs.entry(file.program.unwrap_or_else(|| "?".to_owned())).or_default() += 1;
        for (key, n) in file.counters {
            if IDENTITY.contains(&key.as_str()) {
                continue;
            }
            match self.counters.iter_mut().find(|(k, _)| *k == key) {
                Some((_, total)) => *total += n,
                None => self.counters.push((key, n)),
            }
        }
    }
}

/// The files a PATH argument stands for: itself, or a directory's *.stats files.
fn files_of(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "stats") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

pub fn stats(args: StatsArgs) -> ExitCode {
    let mut totals = Totals::new();
    for path in &args.paths {
        let files = match files_of(path) {
            Ok(files) => files,
            Err(e) => {
                eprintln!("tfo: warning: skipping {}: {e}", path.display());
                continue;
            }
        };
        for file in files {
            match std::fs::read_to_string(&file).map_err(|e| e.to_string()).and_then(|t| parse(&t)) {
                Ok(parsed) => totals.add(parsed),
                Err(e) => eprintln!("tfo: warning: skipping {}: {e}", file.display()),
            }
        }
    }
    if totals.files == 0 {
        eprintln!("tfo: no statistics file read (libtfo writes them at exit when TFO_STATS or tfo run --stats is set)");
        return ExitCode::FAILURE;
    }
    if args.json {
        let counters: Map<String, Value> = totals.counters.iter().map(|(k, n)| (k.clone(), json!(n))).collect();
        let value = json!({ "files": totals.files, "programs": totals.programs, "totals": counters });
        println!("{}", serde_json::to_string_pretty(&value).expect("plain values"));
    } else {
        let programs: Vec<String> = totals.programs.iter().map(|(p, n)| format!("{p} {n}")).collect();
        println!("{:<24} {:>10}  {}", "files", totals.files, programs.join(", "));
        for (key, n) in &totals.counters {
            let meaning = COUNTERS.iter().find(|(k, _)| k == key).map_or("", |(_, m)| m);
            println!("{key:<24} {n:>10}  {meaning}");
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_example_parses() {
        let file = parse("pid 1234\nprogram curl\nsockets_seen 3   # comment\nsyn_data_sent 2\n").unwrap();
        assert_eq!(file.program.as_deref(), Some("curl"));
        assert_eq!(file.counters, vec![("sockets_seen".to_owned(), 3), ("syn_data_sent".to_owned(), 2)]);
    }

    #[test]
    fn damaged_files_are_refused() {
        assert!(parse("program curl\nsockets_seen 3\n").is_err());
        assert!(parse("pid 1\nsockets_seen three\n").is_err());
        assert!(parse("pid 1\nsockets_seen\n").is_err());
    }

    #[test]
    fn unknown_keys_are_summed_after_the_known_ones() {
        let mut totals = Totals::new();
        totals.add(parse("pid 1\nprogram a\nnew_counter 2\nsockets_seen 1\n").unwrap());
        totals.add(parse("pid 2\nprogram a\nnew_counter 3\n").unwrap());
        assert_eq!(totals.counters[0], ("sockets_seen".to_owned(), 1));
        assert_eq!(totals.counters.last().unwrap(), &("new_counter".to_owned(), 5));
        assert_eq!(totals.programs["a"], 2);
    }
}
