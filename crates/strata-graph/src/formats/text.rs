//! What the text formats share: opening (gzip or plain), numbered lines, fields, and typed
//! parsing whose error names the file, the line and the field.

use crate::error::{GraphError, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Opens a text file, decompressing `.gz` transparently.
pub(crate) fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = crate::files::open(path)?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 16, reader)))
}

/// Iterates lines with 1-based numbers, mapping I/O errors (bad gzip too) to the file.
pub(crate) fn lines(path: &Path) -> Result<impl Iterator<Item = Result<(usize, String)>>> {
    let p = path.to_path_buf();
    Ok(open_text(path)?.lines().enumerate().map(move |(i, l)| l.map(|l| (i + 1, l)).map_err(|e| GraphError::io(&p, e))))
}

/// Splits one record on commas, tabs or whitespace.
pub(crate) fn fields(line: &str) -> Vec<&str> {
    if line.contains(',') {
        line.split(',').map(str::trim).collect()
    } else {
        line.split_whitespace().collect()
    }
}

pub(crate) fn parse_field<T: std::str::FromStr>(path: &Path, line: usize, field: &str, what: &str) -> Result<T> {
    field.parse().map_err(|_| GraphError::Parse {
        path: path.into(),
        line,
        msg: format!("expected {what}, found `{field}`"),
    })
}
