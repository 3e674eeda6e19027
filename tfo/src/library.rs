//! Where libtfo.so is: given with --lib, in TFO_LIB, next to the tfo binary
//! (the build tree: target/release/), or in ../lib/ beside the binary's
//! directory (installed: $PREFIX/bin/tfo and $PREFIX/lib/libtfo.so).

use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "libtfo.so";

/// The library found, as an absolute path, and how it was found.
pub struct Located {
    pub path: PathBuf,
    pub how: &'static str,
}

/// Why no library was found; `ADVICE` says what to do.
pub struct NotFound(pub String);

pub const ADVICE: &str = "build it with `make build`, install it with `make install`, or name it with --lib or TFO_LIB";

pub fn find(explicit: Option<&Path>) -> Result<Located, NotFound> {
    // A library named explicitly must exist: never fall back behind the
    // user's back to another copy.
    if let Some(path) = explicit {
        return named(path, "--lib");
    }
    if let Some(path) = std::env::var_os("TFO_LIB").filter(|v| !v.is_empty()) {
        return named(Path::new(&path), "TFO_LIB");
    }
    let candidates = beside_binary();
    for (path, how) in &candidates {
        if path.is_file() {
            return Ok(Located { path: absolute(path), how });
        }
    }
    let tried: Vec<String> = candidates.iter().map(|(p, _)| p.display().to_string()).collect();
    Err(NotFound(format!(
        "{FILE_NAME} not found (looked at {})",
        if tried.is_empty() { "nothing: the tfo binary's location is unknown".to_owned() } else { tried.join(", ") }
    )))
}

fn named(path: &Path, how: &'static str) -> Result<Located, NotFound> {
    if path.is_file() {
        Ok(Located { path: absolute(path), how })
    } else {
        Err(NotFound(format!("{how} names {}, which does not exist", path.display())))
    }
}

/// The build tree's and the installed layout's places, in that order.
fn beside_binary() -> Vec<(PathBuf, &'static str)> {
    // current_exe resolves symlinks (/proc/self/exe): a symlinked tfo still
    // finds the library of its real installation.
    let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) else {
        return Vec::new();
    };
    let mut places = vec![(dir.join(FILE_NAME), "next to tfo")];
    if let Some(prefix) = dir.parent() {
        places.push((prefix.join("lib").join(FILE_NAME), "in ../lib beside tfo"));
    }
    places
}

/// The loader resolves LD_PRELOAD paths against the program's working
/// directory, which the program may change: always hand it an absolute path.
fn absolute(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}
