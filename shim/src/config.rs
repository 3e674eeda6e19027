//! Configuration from `TFO_*` environment variables, read once at load time
//! (every name is in `read` below). A bad value earns one warning and the default; the
//! warnings are returned to the caller, because this module depends on
//! nothing else in the library. Under AT_SECURE (setuid, file capabilities)
//! the environment is ignored.

use crate::policy::{PortSet, Policy, Ranges};
use std::ffi::CString;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;


/// What libtfo does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every TCP client socket the policy admits gets Fast Open.
    Auto,
    /// Only sockets whose program sets TCP_FASTOPEN_CONNECT.
    Explicit,
    /// Nothing: a pure pass-through.
    Off,
}

/// How deferred connects are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The kernel's own TCP_FASTOPEN_CONNECT where it exists, else emulation.
    Auto,
    /// Always the kernel's option (explicit sockets are not even tracked).
    Kernel,
    /// libtfo's user-space implementation on an ordinary kernel socket.
    Emulate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Quiet,
    Warn,
    Info,
    Debug,
}

/// TFO_SERVER: listeners get the kernel's TCP_FASTOPEN.
#[derive(Clone)]
pub struct Server {
    pub queue_length: i32,
    pub ports: PortSet,
}

pub struct Config {
    pub mode: Mode,
    pub backend: Backend,
    pub log: LogLevel,
    pub log_file: Option<CString>,
    pub policy: Policy,
    pub server: Option<Server>,
    /// TFO_STATS: a directory, or a file pattern where `%p` is the pid.
    pub stats: Option<String>,
    /// Failure memory: where (TFO_STATE_DIR; see `state_dir()`), and the
    /// first backoff in seconds.
    state_dir: Option<String>,
    pub backoff_secs: u64,
}

impl Config {
    /// The failure memory's directory: TFO_STATE_DIR, else the default,
    /// settled on first use (building it allocates, which the constructor
    /// avoids: see `init`).
    pub fn state_dir(&self) -> Option<&str> {
        self.state_dir.as_deref().or_else(|| DEFAULT_STATE_DIR.get_or_init(default_state_dir).as_deref())
    }
}

/// The configuration in force: BEFORE_INIT until the constructor ran (another
/// library's constructor making calls: libtfo stays out of the way), then
/// DEFAULTS, or the one read from TFO_* variables (leaked: it lives as long
/// as the process). A pointer, not a OnceLock: the constructor of a process
/// without TFO_* variables (every process under /etc/ld.so.preload) then
/// stores one word and runs no other code (each page of code it runs costs
/// every process a page fault).
static CONFIG: AtomicPtr<Config> = AtomicPtr::new(&BEFORE_INIT as *const Config as *mut Config);

/// The failure memory's default directory, settled on first use (it
/// depends on the environment only). Outside `Config`, so that a Config
/// has no interior mutability and the two below are read-only data: each
/// page of writable data costs every process a fault.
static DEFAULT_STATE_DIR: OnceLock<Option<String>> = OnceLock::new();

static BEFORE_INIT: Config = {
    let mut off = defaults(None);
    off.mode = Mode::Off;
    off
};
static DEFAULTS: Config = defaults(None);

/// The configuration.
#[inline]
pub fn get() -> &'static Config {
    // SAFETY: CONFIG points to one of the statics above or to a leaked Box,
    // never freed.
    unsafe { &*CONFIG.load(Ordering::Acquire) }
}

/// Nothing here allocates: with no TFO_* variable set (the common case,
/// every process under /etc/ld.so.preload), loading libtfo leaves malloc
/// untouched, and a process that never opens a socket pays nothing more.
const fn defaults(state_dir: Option<String>) -> Config {
    Config {
        mode: Mode::Auto,
        backend: Backend::Auto,
        log: LogLevel::Warn,
        log_file: None,
        policy: Policy::default_policy(),
        server: None,
        stats: None,
        state_dir,
        backoff_secs: 600,
    }
}

/// Called from the library constructor with the environment the loader
/// passes it. Without TFO_* variables the defaults are in force; with some
/// (and not under AT_SECURE) they are read, and the warnings about values
/// not understood are returned. Inlined into the constructor, so that the
/// usual case runs no code beyond it.
#[inline(always)]
pub fn init(envp: *const *const libc::c_char) -> Vec<String> {
    // The scan first: without TFO_* variables getauxval is never called
    // (its first call looks it up, which costs more than the scan).
    if !any_tfo_variable(envp) {
        CONFIG.store(&DEFAULTS as *const Config as *mut Config, Ordering::Release);
        return Vec::new();
    }
    init_from_environment()
}

#[cold]
#[inline(never)]
fn init_from_environment() -> Vec<String> {
    if secure_mode() {
        CONFIG.store(&DEFAULTS as *const Config as *mut Config, Ordering::Release);
        return Vec::new();
    }
    let (config, warnings) = read(Env { secure: false, warnings: Vec::new() });
    CONFIG.store(Box::into_raw(Box::new(config)), Ordering::Release);
    warnings
}

/// Whether the environment names any TFO_* variable. A scan of `envp`
/// (the constructor's argument: libtfo imports no `environ`, which would
/// cost every process a symbol lookup) without std's lock, an allocation or
/// a libc call (each libc function's first call looks it up:
/// lazy_imports.c), so that the usual case, none, costs the constructor a
/// few hundred instructions.
#[inline(always)]
fn any_tfo_variable(envp: *const *const libc::c_char) -> bool {
    // SAFETY: the loader passes null or the process's null-terminated array
    // of NUL-terminated strings, and no other thread runs yet.
    unsafe {
        let mut entry = envp;
        while !entry.is_null() && !(*entry).is_null() {
            let name = *entry as *const u8;
            // Byte by byte: the string may be shorter than the prefix.
            if *name == b'T' && *name.add(1) == b'F' && *name.add(2) == b'O' && *name.add(3) == b'_' {
                return true;
            }
            entry = entry.add(1);
        }
    }
    false
}

struct Env {
    secure: bool,
    warnings: Vec<String>,
}

impl Env {
    fn raw(&self, name: &str) -> Option<String> {
        std::env::var_os(name).filter(|_| !self.secure).map(|v| v.to_string_lossy().into_owned())
    }

    /// One variable: its parsed value, or the default with a warning.
    fn setting<T>(&mut self, name: &str, parse: impl Fn(&str) -> Option<T>, default: T, expected: &str, default_text: &str) -> T {
        let Some(value) = self.raw(name) else { return default };
        match parse(&value) {
            Some(v) => v,
            None => {
                self.warnings.push(format!("ignoring {name}={value:?} (expected {expected}); using {default_text}"));
                default
            }
        }
    }
}

fn read(mut env: Env) -> (Config, Vec<String>) {
    let state_dir = env.raw("TFO_STATE_DIR").filter(|d| !d.is_empty());
    let mut c = defaults(state_dir);
    c.mode = env.setting("TFO_MODE", parse_mode, Mode::Auto, "auto, explicit or off", "auto");
    c.backend = env.setting("TFO_BACKEND", parse_backend, Backend::Auto, "auto, kernel or emulate", "auto");
    c.log = env.setting("TFO_LOG", parse_log, LogLevel::Warn, "quiet, warn, info or debug", "warn");
    c.log_file = env.raw("TFO_LOG_FILE").filter(|f| !f.is_empty()).and_then(|f| CString::new(f).ok());
    c.policy.ports = env.setting("TFO_PORTS", PortSet::parse, PortSet::all(), "all or ports like 80,443,8000-8999", "all");
    c.policy.include = env.setting("TFO_INCLUDE", Ranges::parse, Ranges::All, "all or CIDRs like 10.0.0.0/8,2001:db8::/32", "all");
    c.policy.exclude =
        env.setting("TFO_EXCLUDE", Ranges::parse, Ranges::loopback(), "none or CIDRs like 10.0.0.0/8", "127.0.0.0/8,::1/128");
    let server = env.setting("TFO_SERVER", parse_bool, false, "0 or 1", "0");
    let queue_length = env.setting("TFO_SERVER_QLEN", |v| v.parse::<i32>().ok().filter(|n| (1..=65535).contains(n)), 256, "1 to 65535", "256");
    let server_ports = env.setting("TFO_SERVER_PORTS", PortSet::parse, PortSet::all(), "all or ports like 80,443", "all");
    c.server = server.then_some(Server { queue_length, ports: server_ports });
    c.stats = env.raw("TFO_STATS").filter(|s| !s.is_empty());
    c.backoff_secs = env.setting("TFO_BACKOFF", |v| v.parse::<u64>().ok().filter(|n| *n >= 1), 600, "a number of seconds", "600");
    (c, env.warnings)
}

/// `$XDG_RUNTIME_DIR/libtfo` (a per-user directory by definition), else
/// `/tmp/libtfo-UID`.
fn default_state_dir() -> Option<String> {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Some(format!("{}/libtfo", dir.to_string_lossy()));
    }
    // SAFETY: getuid has no preconditions.
    Some(format!("/tmp/libtfo-{}", unsafe { libc::getuid() }))
}

pub fn parse_mode(value: &str) -> Option<Mode> {
    match value {
        "" | "auto" => Some(Mode::Auto),
        "explicit" => Some(Mode::Explicit),
        "off" => Some(Mode::Off),
        _ => None,
    }
}

pub fn parse_backend(value: &str) -> Option<Backend> {
    match value {
        "" | "auto" => Some(Backend::Auto),
        "kernel" => Some(Backend::Kernel),
        "emulate" => Some(Backend::Emulate),
        _ => None,
    }
}

pub fn parse_log(value: &str) -> Option<LogLevel> {
    match value {
        "" | "warn" => Some(LogLevel::Warn),
        "quiet" => Some(LogLevel::Quiet),
        "info" => Some(LogLevel::Info),
        "debug" => Some(LogLevel::Debug),
        _ => None,
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "" | "0" | "off" | "no" => Some(false),
        "1" | "on" | "yes" => Some(true),
        _ => None,
    }
}

fn secure_mode() -> bool {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a configuration with `vars` set (one test at a time: the
    /// environment is the process's).
    fn with(vars: &[(&str, &str)]) -> (Config, Vec<String>) {
        let _guard = ENV_LOCK.lock().unwrap();
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        let result = read(Env { secure: false, warnings: Vec::new() });
        for (k, _) in vars {
            std::env::remove_var(k);
        }
        result
    }

    static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn defaults_are_auto_mode_with_loopback_excluded() {
        let (c, warnings) = with(&[]);
        assert!(warnings.is_empty());
        assert_eq!((c.mode, c.backend, c.log), (Mode::Auto, Backend::Auto, LogLevel::Warn));
        assert!(!c.policy.admits("127.0.0.1".parse().unwrap(), 80));
        assert!(c.server.is_none() && c.stats.is_none());
    }

    #[test]
    fn a_bad_value_gives_one_warning_naming_it_and_the_default() {
        let (c, warnings) = with(&[("TFO_MODE", "turbo"), ("TFO_PORTS", "80-"), ("TFO_EXCLUDE", "10.0.0.0/99")]);
        assert_eq!(c.mode, Mode::Auto);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("TFO_MODE=\"turbo\"") && warnings[0].ends_with("using auto"));
        assert!(!c.policy.admits("127.0.0.1".parse().unwrap(), 80), "the default exclusion stays");
    }

    #[test]
    fn server_settings() {
        let (c, w) = with(&[("TFO_SERVER", "1"), ("TFO_SERVER_QLEN", "16"), ("TFO_SERVER_PORTS", "8080")]);
        assert!(w.is_empty());
        let s = c.server.unwrap();
        assert_eq!(s.queue_length, 16);
        assert!(s.ports.contains(8080) && !s.ports.contains(80));
    }
}
