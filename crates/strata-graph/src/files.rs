//! Reading the files a user names: only regular files are read. A FIFO would block `open`
//! until some writer appears (forever, for a typo'd path to a named pipe), and a device such as
//! `/dev/zero` never ends, so both are refused by name before anything is opened.

use crate::error::{GraphError, Result};
use std::path::Path;

/// What `path` is when it exists and is not a regular file (after following symlinks): "a
/// FIFO (named pipe)", "a device", "a directory", …; `None` for a regular file, or when it
/// cannot be inspected (opening it then reports why).
pub fn irregular(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::metadata(path).ok()?.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    })
}

/// Err unless `path` is a regular file (or cannot be inspected, see [`irregular`]).
pub fn check_regular(path: &Path) -> Result<()> {
    match irregular(path) {
        Some(what) => Err(GraphError::invalid(path.display(), format!("{what}: expected a regular file"))),
        None => Ok(()),
    }
}

/// `std::fs::File::open` for a regular file.
pub fn open(path: &Path) -> Result<std::fs::File> {
    check_regular(path)?;
    std::fs::File::open(path).map_err(|e| GraphError::io(path, e))
}

/// `std::fs::read` for a regular file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    check_regular(path)?;
    std::fs::read(path).map_err(|e| GraphError::io(path, e))
}

/// `std::fs::read_to_string` for a regular file.
pub fn read_to_string(path: &Path) -> Result<String> {
    check_regular(path)?;
    std::fs::read_to_string(path).map_err(|e| GraphError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.txt");
        std::fs::write(&file, "0 1\n").unwrap();
        assert_eq!(read_to_string(&file).unwrap(), "0 1\n");
        let fifo = dir.path().join("pipe");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // Would block forever in `open` without the check.
        let e = read(&fifo).unwrap_err().to_string();
        assert!(e.contains("pipe") && e.contains("FIFO"), "{e}");
        let e = read(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("/dev/zero: a device"), "{e}");
        let e = open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
    }
}
