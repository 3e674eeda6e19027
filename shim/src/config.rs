//! Configuration from `TFO_*` environment variables, read once at load time.
//! A bad value earns one warning on stderr and the safe default.
//! Under AT_SECURE (setuid, file capabilities) the environment is ignored.

use std::sync::OnceLock;

pub const ENV_BACKEND: &str = "TFO_BACKEND";
pub const ENV_LOG: &str = "TFO_LOG";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// TCP_FASTOPEN_CONNECT is implemented by libtfo and never reaches the kernel.
    Emulate,
    /// TCP_FASTOPEN_CONNECT goes to the kernel's own implementation untouched.
    Kernel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Quiet,
    Warn,
    Debug,
}

#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub backend: Backend,
    pub log: LogLevel,
}

const DEFAULT: Config = Config { backend: Backend::Emulate, log: LogLevel::Warn };

static CONFIG: OnceLock<Config> = OnceLock::new();

/// The configuration; the defaults until `init` has run.
#[inline]
pub fn get() -> Config {
    *CONFIG.get().unwrap_or(&DEFAULT)
}

/// Reads the environment. Called from the library constructor.
pub fn init() {
    let secure = secure_mode();
    let (backend, bad_backend) = setting(secure, ENV_BACKEND, parse_backend, DEFAULT.backend);
    let (log, bad_log) = setting(secure, ENV_LOG, parse_log, DEFAULT.log);
    let _ = CONFIG.set(Config { backend, log });
    // Warned once the configuration is in place, so TFO_LOG=quiet is obeyed.
    if let Some(value) = bad_backend {
        crate::log::warning!("ignoring {ENV_BACKEND}={value:?} (expected emulate or kernel); using emulate");
    }
    if let Some(value) = bad_log {
        crate::log::warning!("ignoring {ENV_LOG}={value:?} (expected quiet, warn or debug); using warn");
    }
}

/// One variable's value, or the default and the value not understood.
fn setting<T>(secure: bool, name: &str, parse: fn(&str) -> Option<T>, default: T) -> (T, Option<String>) {
    let Some(value) = std::env::var_os(name).filter(|_| !secure) else { return (default, None) };
    let value = value.to_string_lossy().into_owned();
    match parse(&value) {
        Some(v) => (v, None),
        None => (default, Some(value)),
    }
}

pub fn parse_backend(value: &str) -> Option<Backend> {
    match value {
        "" | "emulate" => Some(Backend::Emulate),
        "kernel" => Some(Backend::Kernel),
        _ => None,
    }
}

pub fn parse_log(value: &str) -> Option<LogLevel> {
    match value {
        "" | "warn" => Some(LogLevel::Warn),
        "quiet" => Some(LogLevel::Quiet),
        "debug" => Some(LogLevel::Debug),
        _ => None,
    }
}

fn secure_mode() -> bool {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}
