//! `tfo cookies`: the kernel's Fast Open cookie cache (tcp_metrics), as
//! `ip tcp_metrics` shows it, as text or JSON.

use crate::cli::CookiesArgs;
use crate::format::duration_ms;
use cookie_store::Metrics;
use serde::Serialize;
use std::net::IpAddr;
use std::process::ExitCode;

#[derive(Serialize)]
struct Entry {
    destination: Option<IpAddr>,
    source: Option<IpAddr>,
    /// Hex; null when the entry holds no cookie (only SYN drops).
    cookie: Option<String>,
    mss: Option<u16>,
    age_ms: Option<u64>,
    syn_drops: u16,
    last_syn_drop_ms_ago: Option<u64>,
}

impl Entry {
    fn from(m: &Metrics) -> Self {
        Entry {
            destination: m.destination,
            source: m.source,
            cookie: m.has_cookie().then(|| m.fastopen_cookie.iter().flatten().map(|b| format!("{b:02x}")).collect()),
            mss: m.fastopen_mss,
            age_ms: m.age_ms,
            syn_drops: m.fastopen_syn_drops.unwrap_or(0),
            last_syn_drop_ms_ago: m.fastopen_syn_drop_age_ms,
        }
    }

    fn line(&self) -> String {
        let show = |ip: Option<IpAddr>| ip.map_or("?".to_owned(), |ip| ip.to_string());
        let mut line = format!(
            "{} source {} cookie {} mss {}",
            show(self.destination),
            show(self.source),
            self.cookie.as_deref().unwrap_or("-"),
            self.mss.map_or("?".to_owned(), |v| v.to_string()),
        );
        if let Some(age) = self.age_ms {
            line += &format!(" age {}", duration_ms(age));
        }
        if self.syn_drops > 0 {
            line += &format!(" syn_drops {}", self.syn_drops);
            if let Some(ago) = self.last_syn_drop_ms_ago {
                line += &format!(" last {} ago", duration_ms(ago));
            }
        }
        line
    }
}

pub fn cookies(args: CookiesArgs) -> ExitCode {
    let entries = match cookie_store::dump() {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!("tfo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shown: Vec<Entry> = entries
        .iter()
        // Entries with Fast Open data: a cookie, or SYNs with data that went unanswered.
        .filter(|m| m.has_cookie() || m.fastopen_syn_drops.unwrap_or(0) > 0)
        .filter(|m| match (&args.destination, m.destination) {
            (None, _) => true,
            (Some(filter), Some(d)) => filter.matches(d),
            (Some(_), None) => false,
        })
        .map(Entry::from)
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&shown).expect("plain values"));
    } else {
        for entry in &shown {
            println!("{}", entry.line());
        }
    }
    ExitCode::SUCCESS
}
