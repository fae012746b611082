//! Reading NumPy `.npy` arrays inside `.npz` archives (stored or deflated), the format both the
//! gnn-benchmark graph files and `scipy.sparse.save_npz` use. Pickled object arrays are never
//! unpickled: asking for one is an error, and loaders simply do not ask.

use crate::error::{GraphError, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The element type of an array, from its `descr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    Bool,
    I8,
    U8,
    I16,
    I32,
    I64,
    U32,
    U64,
    F32,
    F64,
    /// Fixed-width bytes (`|S4`): scipy stores `format` this way.
    Bytes(usize),
    /// Anything we do not decode (unicode strings, pickled objects).
    Other,
}

impl DType {
    fn parse(descr: &str) -> (DType, bool) {
        let big = descr.starts_with('>');
        let body = descr.trim_start_matches(['<', '>', '|', '=']);
        let t = match body {
            "b1" => DType::Bool,
            "i1" => DType::I8,
            "u1" => DType::U8,
            "i2" => DType::I16,
            "i4" => DType::I32,
            "i8" => DType::I64,
            "u4" => DType::U32,
            "u8" => DType::U64,
            "f4" => DType::F32,
            "f8" => DType::F64,
            s if s.starts_with('S') => s[1..].parse().map(DType::Bytes).unwrap_or(DType::Other),
            _ => DType::Other,
        };
        (t, big)
    }
    fn size(self) -> usize {
        match self {
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::I16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
            DType::Bytes(n) => n,
            DType::Other => 0,
        }
    }
    fn is_integer(self) -> bool {
        matches!(
            self,
            DType::Bool | DType::I8 | DType::U8 | DType::I16 | DType::I32 | DType::I64 | DType::U32 | DType::U64
        )
    }
}

/// One decoded array: shape, dtype and raw little-endian bytes.
#[derive(Clone, Debug)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub descr: String,
    data: Vec<u8>,
}

/// An `.npy` header: where the data starts and what it must hold.
struct NpyHeader {
    /// Bytes before the data (magic, version, length, header text).
    data_start: usize,
    shape: Vec<usize>,
    dtype: DType,
    descr: String,
    /// Bytes the shape and dtype need (`None` for a dtype without a fixed size).
    data_bytes: Option<usize>,
}

/// The most header bytes an `.npy` may have (numpy writes well under 1 KiB).
const MAX_HEADER: usize = 1 << 16;

impl NpyHeader {
    /// Bytes to read for [`NpyHeader::parse`] to see the header length.
    const PREFIX: usize = 12;

    /// Parses the header at the start of `bytes`, which must hold all of it (see
    /// [`NpyHeader::length`]).
    fn parse(bytes: &[u8], path: &Path, key: &str) -> Result<NpyHeader> {
        let err = |msg: String| GraphError::Npy { path: path.into(), key: key.into(), msg };
        let (start, hlen) = NpyHeader::length(bytes).map_err(err)?;
        if bytes.len() < start + hlen {
            return Err(err("header truncated".into()));
        }
        let header = String::from_utf8_lossy(&bytes[start..start + hlen]).to_string();
        let descr = header_field(&header, "descr").ok_or_else(|| err(format!("no descr in header {header}")))?;
        let descr = descr.trim_matches(|c| c == '\'' || c == '"').to_string();
        let fortran = header_field(&header, "fortran_order").unwrap_or_default();
        if fortran.trim() == "True" {
            return Err(err("Fortran-ordered arrays are not supported; save with C order".into()));
        }
        let shape_txt = header_field(&header, "shape").ok_or_else(|| err("no shape in header".into()))?;
        let shape: Vec<usize> = shape_txt
            .trim_matches(|c| c == '(' || c == ')')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_end_matches('L').parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| err(format!("bad shape {shape_txt}")))?;
        let (dtype, big) = DType::parse(&descr);
        if big && dtype.size() > 1 {
            return Err(err(format!("big-endian dtype {descr} is not supported")));
        }
        // A forged shape must not overflow: the element count and byte size are checked products.
        let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let needed = count.and_then(|c| c.checked_mul(dtype.size()));
        let (Some(_), Some(needed)) = (count, needed) else {
            return Err(err(format!("shape {shape:?} of {descr} is too large to address")));
        };
        let data_bytes = (dtype != DType::Other).then_some(needed);
        Ok(NpyHeader { data_start: start + hlen, shape, dtype, descr, data_bytes })
    }

    /// Where the header text starts and how long it is, from the first bytes of the file.
    fn length(bytes: &[u8]) -> std::result::Result<(usize, usize), String> {
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err("not an .npy array (bad magic)".into());
        }
        let (hlen, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
            v => return Err(format!("unsupported .npy version {v}")),
        };
        if hlen > MAX_HEADER {
            return Err(format!("a header of {hlen} bytes (at most {MAX_HEADER})"));
        }
        Ok((start, hlen))
    }
}

impl NpyArray {
    /// Parses the bytes of one `.npy` file. `key` names it in errors.
    pub fn parse(mut bytes: Vec<u8>, path: &Path, key: &str) -> Result<NpyArray> {
        let h = NpyHeader::parse(&bytes, path, key)?;
        let err = |msg: String| GraphError::Npy { path: path.into(), key: key.into(), msg };
        bytes.drain(..h.data_start);
        if let Some(needed) = h.data_bytes {
            if bytes.len() < needed {
                return Err(err(format!(
                    "data truncated: shape {:?} of {} needs {needed} bytes, found {}",
                    h.shape,
                    h.descr,
                    bytes.len()
                )));
            }
            bytes.truncate(needed);
        }
        Ok(NpyArray { shape: h.shape, dtype: h.dtype, descr: h.descr, data: bytes })
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Raw bytes (for fixed-width byte strings).
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
    /// The values as f32 when the dtype is numeric (integers and floats), else `None`.
    pub fn f32_values(&self) -> Option<Vec<f32>> {
        (!matches!(self.dtype, DType::Other | DType::Bytes(_)))
            .then(|| (0..self.len()).map(|i| self.element_f64(i) as f32).collect())
    }

    fn element_f64(&self, i: usize) -> f64 {
        let b = &self.data[i * self.dtype.size()..];
        match self.dtype {
            DType::Bool | DType::U8 => b[0] as f64,
            DType::I8 => b[0] as i8 as f64,
            DType::I16 => i16::from_le_bytes([b[0], b[1]]) as f64,
            DType::I32 => i32::from_le_bytes(b[..4].try_into().unwrap()) as f64,
            DType::U32 => u32::from_le_bytes(b[..4].try_into().unwrap()) as f64,
            DType::I64 => i64::from_le_bytes(b[..8].try_into().unwrap()) as f64,
            DType::U64 => u64::from_le_bytes(b[..8].try_into().unwrap()) as f64,
            DType::F32 => f32::from_le_bytes(b[..4].try_into().unwrap()) as f64,
            DType::F64 => f64::from_le_bytes(b[..8].try_into().unwrap()),
            DType::Bytes(_) | DType::Other => f64::NAN,
        }
    }
    fn element_i64(&self, i: usize) -> i64 {
        let b = &self.data[i * self.dtype.size()..];
        match self.dtype {
            DType::I64 => i64::from_le_bytes(b[..8].try_into().unwrap()),
            DType::U64 => u64::from_le_bytes(b[..8].try_into().unwrap()) as i64,
            _ => self.element_f64(i) as i64,
        }
    }
}

/// Pulls `'key': value` out of the header dict text (values here never contain `':`).
fn header_field(header: &str, key: &str) -> Option<String> {
    let pat = format!("'{key}':");
    let at = header.find(&pat)? + pat.len();
    let rest = header[at..].trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find(',').unwrap_or(rest.len()) };
    Some(rest[..end].trim().to_string())
}

/// An opened `.npz` archive. Arrays are decoded on demand, so pickled keys are never touched.
pub struct Npz {
    path: PathBuf,
    archive: zip::ZipArchive<std::io::BufReader<std::fs::File>>,
}

impl Npz {
    pub fn open(path: impl AsRef<Path>) -> Result<Npz> {
        let path = path.as_ref().to_path_buf();
        let file = crate::files::open(&path)?;
        let archive = zip::ZipArchive::new(std::io::BufReader::new(file))
            .map_err(|source| GraphError::Zip { path: path.clone(), source })?;
        Ok(Npz { path, archive })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Keys (entry names without `.npy`).
    pub fn keys(&self) -> Vec<String> {
        self.archive.file_names().map(|n| n.trim_end_matches(".npy").to_string()).collect()
    }
    pub fn contains(&self, key: &str) -> bool {
        self.archive.index_for_name(&format!("{key}.npy")).is_some() || self.archive.index_for_name(key).is_some()
    }
    /// Decodes one array; `expected` describes it for the missing-key message. An array larger
    /// than [`crate::limits::memory_budget`] is refused before it is inflated.
    pub fn array(&mut self, key: &str, expected: &str) -> Result<NpyArray> {
        self.array_within(key, expected, crate::limits::memory_budget())
    }

    fn array_within(&mut self, key: &str, expected: &str, budget: Option<u64>) -> Result<NpyArray> {
        let name = if self.archive.index_for_name(&format!("{key}.npy")).is_some() {
            format!("{key}.npy")
        } else if self.archive.index_for_name(key).is_some() {
            key.to_string()
        } else {
            return Err(GraphError::MissingKey { path: self.path.clone(), key: key.into(), expected: expected.into() });
        };
        let path = self.path.clone();
        let entry = self.archive.by_name(&name).map_err(|source| GraphError::Zip { path: path.clone(), source })?;
        let err = |msg: String| GraphError::Npy { path: path.clone(), key: key.into(), msg };
        let unreadable =
            |e: std::io::Error| err(format!("entry unreadable ({e}); the archive may be truncated or corrupt"));
        // Inflate the header first, then no more than the data its shape declares (and the
        // memory budget allows): never by the size the zip header declares, never to the end
        // of a stream that inflates without bound.
        let mut bytes = Vec::new();
        let mut entry = entry.take(NpyHeader::PREFIX as u64);
        entry.read_to_end(&mut bytes).map_err(unreadable)?;
        let (start, hlen) = NpyHeader::length(&bytes).map_err(err)?;
        entry.set_limit((start + hlen).saturating_sub(bytes.len()) as u64);
        entry.read_to_end(&mut bytes).map_err(unreadable)?;
        let header = NpyHeader::parse(&bytes, &path, key)?;
        // Object arrays have no fixed size; strata reads none (1 MiB of one is enough to say so).
        let data = header.data_bytes.unwrap_or(1 << 20);
        if let Some(budget) = budget.filter(|&b| data as u64 > b) {
            return Err(err(format!(
                "shape {:?} of {} needs {data} bytes, more than the {budget} bytes of memory this process may use",
                header.shape, header.descr
            )));
        }
        // Whatever the entry holds past its declared data is never inflated, and the buffer grows
        // with the bytes that arrive, not by the size the header declares.
        let end = header.data_start + data;
        entry.set_limit(end.saturating_sub(bytes.len()) as u64);
        entry.read_to_end(&mut bytes).map_err(unreadable)?;
        NpyArray::parse(bytes, &path, key)
    }
    fn check_integer(&self, key: &str, a: &NpyArray) -> Result<()> {
        if !a.dtype.is_integer() {
            return Err(GraphError::Dtype {
                path: self.path.clone(),
                key: key.into(),
                expected: "an integer dtype".into(),
                found: a.descr.clone(),
            });
        }
        Ok(())
    }
    /// An integer array as i64 (any integer dtype accepted, floats rejected).
    pub fn i64s(&mut self, key: &str, expected: &str) -> Result<Vec<i64>> {
        let a = self.array(key, expected)?;
        self.check_integer(key, &a)?;
        Ok((0..a.len()).map(|i| a.element_i64(i)).collect())
    }
    /// A numeric array as f32 (integers and floats accepted).
    pub fn f32s(&mut self, key: &str, expected: &str) -> Result<Vec<f32>> {
        let a = self.array(key, expected)?;
        if matches!(a.dtype, DType::Other | DType::Bytes(_)) {
            return Err(GraphError::Dtype {
                path: self.path.clone(),
                key: key.into(),
                expected: "a numeric dtype".into(),
                found: a.descr.clone(),
            });
        }
        Ok((0..a.len()).map(|i| a.element_f64(i) as f32).collect())
    }
}

/// Encodes one `.npy` (format 1.0) file: `descr` like `<f4`, C order.
pub fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_txt = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Builds an `.npz` archive in memory and writes it atomically (temporary file, fsync, rename).
#[derive(Default)]
pub struct NpzWriter {
    entries: Vec<(String, Vec<u8>)>,
}

impl NpzWriter {
    pub fn new() -> NpzWriter {
        NpzWriter::default()
    }
    pub fn i64s(&mut self, key: &str, shape: &[usize], v: &[i64]) -> &mut Self {
        self.raw(key, "<i8", shape, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
    pub fn i32s(&mut self, key: &str, shape: &[usize], v: &[i32]) -> &mut Self {
        self.raw(key, "<i4", shape, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
    pub fn f32s(&mut self, key: &str, shape: &[usize], v: &[f32]) -> &mut Self {
        self.raw(key, "<f4", shape, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
    /// Any array, given its numpy `descr` and little-endian bytes.
    pub fn raw(&mut self, key: &str, descr: &str, shape: &[usize], bytes: Vec<u8>) -> &mut Self {
        self.entries.push((format!("{key}.npy"), npy_bytes(descr, shape, &bytes)));
        self
    }
    /// A CSR matrix under `prefix` (`{prefix}data`, `indices`, `indptr`, `shape`), the layout
    /// of the gnn-benchmark graph files.
    pub fn csr(&mut self, prefix: &str, m: &crate::CsrMatrix) -> &mut Self {
        let idx: Vec<i32> = m.indices().iter().map(|&i| i as i32).collect();
        let ptr: Vec<i32> = m.indptr().iter().map(|&i| i as i32).collect();
        self.f32s(&format!("{prefix}data"), &[m.nnz()], &m.values_or_ones());
        self.i32s(&format!("{prefix}indices"), &[m.nnz()], &idx);
        self.i32s(&format!("{prefix}indptr"), &[m.rows() + 1], &ptr);
        self.i64s(&format!("{prefix}shape"), &[2], &[m.rows() as i64, m.cols() as i64])
    }
    /// Node features as the gnn-benchmark files hold them: sparse as `attr_*` CSR, dense as
    /// `attr_matrix`.
    pub fn features(&mut self, f: &crate::Features) -> &mut Self {
        match f {
            crate::Features::Sparse(m) => self.csr("attr_", m),
            crate::Features::Dense { rows, cols, data } => self.f32s("attr_matrix", &[*rows, *cols], data),
        }
    }
    /// The archive bytes (entries stored uncompressed, as `np.savez` does).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut out);
            let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
            for (name, bytes) in &self.entries {
                zip.start_file(name.as_str(), opts).expect("in-memory zip");
                std::io::Write::write_all(&mut zip, bytes).expect("in-memory zip");
            }
            zip.finish().expect("in-memory zip");
        }
        out.into_inner()
    }
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::registry::write_atomic(path.as_ref(), &self.to_bytes())
    }
}

/// Writes an `.npz` archive to disk one array at a time, each streamed in pieces, so arrays
/// larger than memory can be written; atomically (a temporary file in the same directory,
/// fsync, rename in [`NpzFileWriter::finish`]; dropped unfinished, nothing is left behind).
pub struct NpzFileWriter {
    zip: zip::ZipWriter<std::io::BufWriter<tempfile::NamedTempFile>>,
    path: std::path::PathBuf,
}

impl NpzFileWriter {
    pub fn create(path: &Path) -> Result<NpzFileWriter> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| GraphError::io(dir, e))?;
        // A dataset is for others to read (workers on a shared volume): a plain file's mode.
        let tmp = crate::registry::temp_beside(path, "", 0o666)?;
        Ok(NpzFileWriter {
            zip: zip::ZipWriter::new(std::io::BufWriter::with_capacity(1 << 20, tmp)),
            path: path.to_path_buf(),
        })
    }

    /// Adds `key` with numpy type `descr` and `shape`, made of `count` records: `record(i, out)`
    /// appends record i's little-endian bytes to `out`.
    pub fn array_from(
        &mut self,
        key: &str,
        descr: &str,
        shape: &[usize],
        count: usize,
        mut record: impl FnMut(usize, &mut Vec<u8>),
    ) -> Result<()> {
        let io = |e: std::io::Error| GraphError::io(&self.path, e);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        self.zip
            .start_file(format!("{key}.npy"), opts)
            .map_err(|e| GraphError::invalid(self.path.display(), format!("writing `{key}`: {e}")))?;
        let header = npy_bytes(descr, shape, &[]);
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(&header);
        for i in 0..count {
            record(i, &mut buf);
            if buf.len() >= 1 << 20 {
                std::io::Write::write_all(&mut self.zip, &buf).map_err(io)?;
                buf.clear();
            }
        }
        std::io::Write::write_all(&mut self.zip, &buf).map_err(io)
    }

    /// `v` as int64 `key` (a 1-D array).
    pub fn i64s(&mut self, key: &str, v: &[i64]) -> Result<()> {
        self.array_from(key, "<i8", &[v.len()], v.len(), |i, out| out.extend_from_slice(&v[i].to_le_bytes()))
    }

    /// A CSR matrix in [`NpzWriter::csr`]'s layout, streamed from `m` without a copy.
    pub fn csr(&mut self, prefix: &str, m: &crate::CsrMatrix) -> Result<()> {
        let values = m.values();
        self.array_from(&format!("{prefix}data"), "<f4", &[m.nnz()], m.nnz(), |i, out| {
            out.extend_from_slice(&values.map_or(1.0, |v| v[i]).to_le_bytes())
        })?;
        let idx = m.indices();
        self.array_from(&format!("{prefix}indices"), "<i4", &[m.nnz()], m.nnz(), |i, out| {
            out.extend_from_slice(&(idx[i] as i32).to_le_bytes())
        })?;
        let ptr = m.indptr();
        self.array_from(&format!("{prefix}indptr"), "<i4", &[ptr.len()], ptr.len(), |i, out| {
            out.extend_from_slice(&(ptr[i] as i32).to_le_bytes())
        })?;
        self.i64s(&format!("{prefix}shape"), &[m.rows() as i64, m.cols() as i64])
    }

    /// Completes the archive, makes it durable and moves it into place; returns its size.
    pub fn finish(self) -> Result<u64> {
        let path = self.path;
        let buffered = self
            .zip
            .finish()
            .map_err(|e| GraphError::invalid(path.display(), format!("finishing the archive: {e}")))?;
        let tmp = buffered.into_inner().map_err(|e| GraphError::io(&path, e.into_error()))?;
        let bytes = tmp.as_file().metadata().map_err(|e| GraphError::io(tmp.path(), e))?.len();
        crate::registry::persist_atomic(tmp, &path)?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_values() {
        let data: Vec<u8> = [1i32, -2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = NpyArray::parse(npy_bytes("<i4", &[3], &data), Path::new("x"), "k").unwrap();
        assert_eq!(a.shape, vec![3]);
        assert_eq!(a.element_i64(1), -2);
        let two = NpyArray::parse(npy_bytes("<f8", &[1, 2], &[0u8; 16]), Path::new("x"), "k").unwrap();
        assert_eq!(two.shape, vec![1, 2]);
    }

    /// A deflated entry: `header` (an .npy header and some data) then `zeros` zero bytes.
    fn bomb(dir: &Path, header: &[u8], zeros: usize) -> std::path::PathBuf {
        let path = dir.join("bomb.npz");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("x.npy", opts).unwrap();
        std::io::Write::write_all(&mut zip, header).unwrap();
        let block = vec![0u8; 1 << 20];
        for i in (0..zeros).step_by(block.len()) {
            std::io::Write::write_all(&mut zip, &block[..block.len().min(zeros - i)]).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    #[test]
    fn entries_inflate_only_to_their_declared_shape_and_budget() {
        let dir = tempfile::tempdir().unwrap();
        // Ten floats declared, 256 MiB of zeros behind them: only the ten are inflated.
        let path = bomb(dir.path(), &npy_bytes("<f4", &[10], &[0u8; 40]), 256 << 20);
        assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
        let t = std::time::Instant::now();
        let a = Npz::open(&path).unwrap().array("x", "ten floats").unwrap();
        assert_eq!((a.len(), a.bytes().len()), (10, 40));
        assert!(t.elapsed().as_secs_f64() < 0.1, "inflated the rest: {:?}", t.elapsed());
        // 2³⁰ floats declared in a file of a few MiB: refused by the budget before inflating.
        let path = bomb(dir.path(), &npy_bytes("<f4", &[1 << 30], &[]), 4 << 20);
        let e = Npz::open(&path).unwrap().array_within("x", "", Some(1 << 30)).unwrap_err().to_string();
        assert!(
            e.contains("bomb.npz") && e.contains("4294967296 bytes") && e.contains("1073741824 bytes of memory"),
            "{e}"
        );
        // Within the budget it is the data that is short.
        let e = Npz::open(&path).unwrap().array_within("x", "", None).unwrap_err().to_string();
        assert!(e.contains("data truncated"), "{e}");
        // A header claiming 4 GiB of text is refused without reading it.
        let mut forged = b"\x93NUMPY\x02\x00".to_vec();
        forged.extend_from_slice(&u32::MAX.to_le_bytes());
        let path = bomb(dir.path(), &forged, 1 << 20);
        let e = Npz::open(&path).unwrap().array("x", "").unwrap_err().to_string();
        assert!(e.contains("a header of 4294967295 bytes"), "{e}");
    }

    #[test]
    fn truncated_data_is_an_error() {
        let e = NpyArray::parse(npy_bytes("<i8", &[4], &[0u8; 8]), Path::new("f.npz"), "labels").unwrap_err();
        assert!(e.to_string().contains("f.npz: key `labels`: data truncated"), "{e}");
    }
}
