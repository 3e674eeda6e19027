//! Whether the dynamic loader will preload libtfo into a program: it does
//! not run for statically linked executables (no PT_INTERP program header:
//! Go binaries, musl static builds), and it ignores LD_PRELOAD's paths for
//! programs that gain privileges (setuid, setgid, file capabilities).
//! Scripts are judged by their interpreter (`#!`), through `env` too.

use object::elf::{FileHeader32, FileHeader64, PT_INTERP};
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, FileKind, ReadCache};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The kernel follows at most this many nested interpreters.
const MAX_INTERPRETER_DEPTH: usize = 4;

/// One sentence per reason libtfo will not be loaded into `program`.
pub fn preload_warnings(program: &OsStr) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(path) = find_program(Path::new(program)) {
        inspect(&path, None, 0, &mut warnings);
    }
    warnings
}

fn inspect(path: &Path, script: Option<&Path>, depth: usize, warnings: &mut Vec<String>) {
    let Ok(mut file) = File::open(path) else { return };
    let mut start = [0u8; 256];
    let Ok(len) = read_prefix(&mut file, &mut start) else { return };
    let start = &start[..len];
    // Who runs it, as a phrase: "/usr/bin/foo" or "script's interpreter /bin/x".
    let subject = match script {
        Some(s) => format!("{} runs {}, which", s.display(), path.display()),
        None => path.display().to_string(),
    };
    if let Some(line) = start.strip_prefix(b"#!") {
        if depth < MAX_INTERPRETER_DEPTH {
            if let Some(interpreter) = interpreter(line) {
                inspect(&interpreter, Some(script.unwrap_or(path)), depth + 1, warnings);
            }
        }
        return;
    }
    if !start.starts_with(b"\x7fELF") {
        return;
    }
    if has_interpreter(file) == Some(false) {
        warnings.push(format!(
            "{subject} is statically linked (no dynamic loader): libtfo cannot be preloaded into it; running it without Fast Open"
        ));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o6000 != 0 {
            warnings.push(format!(
                "{subject} is setuid/setgid: the loader ignores LD_PRELOAD when it gains privileges; running it anyway"
            ));
        }
    }
    if has_file_capabilities(path) {
        warnings.push(format!(
            "{subject} has file capabilities: the loader ignores LD_PRELOAD when it gains privileges; running it anyway"
        ));
    }
}

fn read_prefix(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..])? {
            0 => break,
            n => len += n,
        }
    }
    Ok(len)
}

/// The program a `#!` line runs. For `#!/usr/bin/env [-S] prog`, `prog`
/// found in PATH: env itself is dynamic and would hide a static target.
fn interpreter(line: &[u8]) -> Option<PathBuf> {
    let line = line.split(|&b| b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let first = PathBuf::from(words.next()?);
    if first.file_name() != Some(OsStr::new("env")) {
        return Some(first);
    }
    let target = words.find(|w| !w.starts_with('-') && !w.contains('='));
    target.and_then(|t| find_program(Path::new(t))).or(Some(first))
}

/// None when the file is not an ELF executable object can read.
fn has_interpreter(file: File) -> Option<bool> {
    let data = ReadCache::new(file);
    match FileKind::parse(&data).ok()? {
        FileKind::Elf32 => program_has_interp::<FileHeader32<Endianness>>(&data),
        FileKind::Elf64 => program_has_interp::<FileHeader64<Endianness>>(&data),
        _ => None,
    }
}

fn program_has_interp<H: FileHeader<Endian = Endianness>>(data: &ReadCache<File>) -> Option<bool> {
    let header = H::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let headers = header.program_headers(endian, data).ok()?;
    Some(headers.iter().any(|h| h.p_type(endian) == PT_INTERP))
}

fn has_file_capabilities(path: &Path) -> bool {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: both strings are NUL-terminated; a null buffer of size 0 asks only for the size.
    let size = unsafe { libc::getxattr(path.as_ptr(), c"security.capability".as_ptr(), std::ptr::null_mut(), 0) };
    size > 0
}

/// The file `program` names, searched in PATH as execvp does.
pub fn find_program(program: &Path) -> Option<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Some(program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_programs_and_their_scripts_earn_no_warning() {
        assert_eq!(preload_warnings(OsStr::new("sh")), Vec::<String>::new());
        let script = std::env::temp_dir().join(format!("tfo-env-script-{}", std::process::id()));
        std::fs::write(&script, "#!/usr/bin/env -S sh -e\necho hi\n").unwrap();
        assert_eq!(preload_warnings(script.as_os_str()), Vec::<String>::new());
        std::fs::remove_file(script).unwrap();
    }

    #[test]
    fn env_lines_resolve_their_program() {
        assert_eq!(interpreter(b"/bin/sh -e\n"), Some(PathBuf::from("/bin/sh")));
        let sh = interpreter(b"/usr/bin/env -S sh -x\n").unwrap();
        assert_eq!(sh.file_name(), Some(OsStr::new("sh")));
    }
}
