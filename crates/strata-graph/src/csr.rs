//! Compressed sparse row storage: the one sparse layout used for adjacency and sparse features.

use crate::error::{GraphError, Result};

/// A sparse matrix in CSR form. `values == None` means every stored entry is 1 (an unweighted
/// graph or a binary feature matrix), which halves memory for the common case.
#[derive(Clone, Debug, PartialEq)]
pub struct CsrMatrix {
    rows: usize,
    cols: usize,
    indptr: Vec<i64>,
    indices: Vec<i64>,
    values: Option<Vec<f32>>,
}

impl CsrMatrix {
    /// Builds from raw CSR arrays, checking every invariant (monotone `indptr`, column ids in
    /// range, matching lengths). Column order inside a row is normalised to ascending and
    /// duplicate entries are summed, as scipy's `sum_duplicates` does.
    pub fn from_parts(
        context: &str,
        rows: usize,
        cols: usize,
        indptr: Vec<i64>,
        indices: Vec<i64>,
        values: Option<Vec<f32>>,
    ) -> Result<Self> {
        if indptr.len() != rows + 1 {
            return Err(GraphError::invalid(
                context,
                format!("indptr has {} entries, expected rows + 1 = {}", indptr.len(), rows + 1),
            ));
        }
        if indptr[0] != 0 || indptr[rows] as usize != indices.len() {
            return Err(GraphError::invalid(
                context,
                format!(
                    "indptr must start at 0 and end at nnz = {} (found {} .. {})",
                    indices.len(),
                    indptr[0],
                    indptr[rows]
                ),
            ));
        }
        if let Some(v) = &values {
            if v.len() != indices.len() {
                return Err(GraphError::invalid(context, format!("{} values for {} indices", v.len(), indices.len())));
            }
        }
        if indptr.windows(2).any(|w| w[1] < w[0]) {
            return Err(GraphError::invalid(context, "indptr is not non-decreasing"));
        }
        if let Some(&bad) = indices.iter().find(|&&c| c < 0 || c as usize >= cols) {
            return Err(GraphError::NodeOutOfRange { context: context.to_string(), id: bad, num_nodes: cols });
        }
        let mut m = CsrMatrix { rows, cols, indptr, indices, values };
        m.canonicalize();
        Ok(m)
    }

    /// Builds from coordinate triples. Ids are checked against the shape; duplicates are summed.
    pub fn from_coo(
        context: &str,
        rows: usize,
        cols: usize,
        row_ids: &[i64],
        col_ids: &[i64],
        values: Option<&[f32]>,
    ) -> Result<Self> {
        assert_eq!(row_ids.len(), col_ids.len(), "coo arrays differ in length");
        for (&r, &c) in row_ids.iter().zip(col_ids) {
            if r < 0 || r as usize >= rows {
                return Err(GraphError::NodeOutOfRange { context: context.into(), id: r, num_nodes: rows });
            }
            if c < 0 || c as usize >= cols {
                return Err(GraphError::NodeOutOfRange { context: context.into(), id: c, num_nodes: cols });
            }
        }
        // Counting sort by row keeps this O(nnz + rows).
        let mut indptr = vec![0i64; rows + 1];
        for &r in row_ids {
            indptr[r as usize + 1] += 1;
        }
        for i in 0..rows {
            indptr[i + 1] += indptr[i];
        }
        let mut cursor: Vec<i64> = indptr[..rows].to_vec();
        let mut indices = vec![0i64; row_ids.len()];
        let mut vals = values.map(|_| vec![0f32; row_ids.len()]);
        for (k, (&r, &c)) in row_ids.iter().zip(col_ids).enumerate() {
            let slot = cursor[r as usize] as usize;
            cursor[r as usize] += 1;
            indices[slot] = c;
            if let (Some(out), Some(inp)) = (vals.as_mut(), values) {
                out[slot] = inp[k];
            }
        }
        let mut m = CsrMatrix { rows, cols, indptr, indices, values: vals };
        m.canonicalize();
        Ok(m)
    }

    /// Sorts each row by column and merges duplicates (summing values; for unweighted
    /// matrices duplicates simply collapse).
    fn canonicalize(&mut self) {
        let needs = (0..self.rows).any(|r| {
            let s = &self.indices[self.indptr[r] as usize..self.indptr[r + 1] as usize];
            s.windows(2).any(|w| w[0] >= w[1])
        });
        if !needs {
            return;
        }
        let mut indptr = Vec::with_capacity(self.rows + 1);
        let mut indices = Vec::with_capacity(self.indices.len());
        let mut values = self.values.as_ref().map(|v| Vec::with_capacity(v.len()));
        indptr.push(0i64);
        let mut row: Vec<(i64, f32)> = Vec::new();
        for r in 0..self.rows {
            let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
            row.clear();
            row.extend((a..b).map(|k| (self.indices[k], self.values.as_ref().map_or(1.0, |v| v[k]))));
            row.sort_unstable_by_key(|e| e.0);
            let mut last: Option<i64> = None;
            for &(c, v) in &row {
                if last == Some(c) {
                    if let Some(vals) = values.as_mut() {
                        *vals.last_mut().unwrap() += v;
                    }
                } else {
                    indices.push(c);
                    if let Some(vals) = values.as_mut() {
                        vals.push(v);
                    }
                    last = Some(c);
                }
            }
            indptr.push(indices.len() as i64);
        }
        self.indptr = indptr;
        self.indices = indices;
        self.values = values;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }
    pub fn indptr(&self) -> &[i64] {
        &self.indptr
    }
    pub fn indices(&self) -> &[i64] {
        &self.indices
    }
    /// Stored values, `None` when all are 1.
    pub fn values(&self) -> Option<&[f32]> {
        self.values.as_deref()
    }
    /// Values materialised (ones when the matrix is unweighted).
    pub fn values_or_ones(&self) -> Vec<f32> {
        self.values.clone().unwrap_or_else(|| vec![1.0; self.nnz()])
    }
    pub fn row(&self, r: usize) -> &[i64] {
        &self.indices[self.indptr[r] as usize..self.indptr[r + 1] as usize]
    }
    pub fn row_values(&self, r: usize) -> Option<&[f32]> {
        self.values.as_ref().map(|v| &v[self.indptr[r] as usize..self.indptr[r + 1] as usize])
    }
    pub fn row_nnz(&self, r: usize) -> usize {
        (self.indptr[r + 1] - self.indptr[r]) as usize
    }
    /// Value at (r, c), 0 when absent. Rows are sorted, so this is a binary search.
    pub fn get(&self, r: usize, c: usize) -> f32 {
        let row = self.row(r);
        match row.binary_search(&(c as i64)) {
            Ok(k) => self.row_values(r).map_or(1.0, |v| v[k]),
            Err(_) => 0.0,
        }
    }
    /// Row ids of every stored entry (COO rows), in storage order.
    pub fn row_ids(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.nnz());
        for r in 0..self.rows {
            out.extend(std::iter::repeat_n(r as i64, self.row_nnz(r)));
        }
        out
    }
    /// (row, col, value) triples in storage order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize, f32)> + '_ {
        (0..self.rows).flat_map(move |r| {
            let vals = self.row_values(r);
            self.row(r).iter().enumerate().map(move |(k, &c)| (r, c as usize, vals.map_or(1.0, |v| v[k])))
        })
    }
    pub fn transpose(&self) -> CsrMatrix {
        let rows = self.row_ids();
        let vals = self.values.as_deref();
        CsrMatrix::from_coo("transpose", self.cols, self.rows, &self.indices, &rows, vals)
            .expect("transpose of a valid matrix is valid")
    }
    /// Drops stored values, making every entry 1.
    pub fn into_binary(mut self) -> CsrMatrix {
        self.values = None;
        self
    }
    /// Clips values into `[lo, hi]`; a no-op for binary matrices inside the range.
    pub fn clip(mut self, lo: f32, hi: f32) -> CsrMatrix {
        if let Some(v) = self.values.as_mut() {
            v.iter_mut().for_each(|x| *x = x.clamp(lo, hi));
            if v.iter().all(|&x| x == 1.0) {
                self.values = None;
            }
        }
        self
    }
    /// Removes explicitly stored zeros.
    pub fn eliminate_zeros(self) -> CsrMatrix {
        let Some(vals) = &self.values else { return self };
        if vals.iter().all(|&v| v != 0.0) {
            return self;
        }
        self.filter(|_, _, v| v != 0.0)
    }
    /// Keeps the entries for which `keep(row, col, value)` holds.
    pub fn filter(&self, mut keep: impl FnMut(usize, usize, f32) -> bool) -> CsrMatrix {
        let mut indptr = Vec::with_capacity(self.rows + 1);
        let mut indices = Vec::new();
        let mut values = self.values.as_ref().map(|_| Vec::new());
        indptr.push(0);
        for r in 0..self.rows {
            let rv = self.row_values(r);
            for (k, &c) in self.row(r).iter().enumerate() {
                let v = rv.map_or(1.0, |v| v[k]);
                if keep(r, c as usize, v) {
                    indices.push(c);
                    if let Some(out) = values.as_mut() {
                        out.push(v);
                    }
                }
            }
            indptr.push(indices.len() as i64);
        }
        CsrMatrix { rows: self.rows, cols: self.cols, indptr, indices, values }
    }
    /// Rows `ids` in that order (a row gather).
    pub fn select_rows(&self, ids: &[usize]) -> CsrMatrix {
        let mut indptr = Vec::with_capacity(ids.len() + 1);
        let mut indices = Vec::new();
        let mut values = self.values.as_ref().map(|_| Vec::new());
        indptr.push(0);
        for &r in ids {
            indices.extend_from_slice(self.row(r));
            if let (Some(out), Some(v)) = (values.as_mut(), self.row_values(r)) {
                out.extend_from_slice(v);
            }
            indptr.push(indices.len() as i64);
        }
        CsrMatrix { rows: ids.len(), cols: self.cols, indptr, indices, values }
    }
    /// Dense row-major copy.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, c, v) in self.iter() {
            out[r * self.cols + c] += v;
        }
        out
    }
    /// Elementwise union with `other` (same shape), keeping the larger value where both store
    /// an entry. Used to symmetrise (A ∪ Aᵀ).
    pub fn union_max(&self, other: &CsrMatrix) -> CsrMatrix {
        assert_eq!((self.rows, self.cols), (other.rows, other.cols));
        let weighted = self.values.is_some() || other.values.is_some();
        let mut indptr = Vec::with_capacity(self.rows + 1);
        let mut indices = Vec::with_capacity(self.nnz().max(other.nnz()));
        let mut values = Vec::new();
        indptr.push(0);
        for r in 0..self.rows {
            let (a, b) = (self.row(r), other.row(r));
            let (av, bv) = (self.row_values(r), other.row_values(r));
            let (mut i, mut j) = (0, 0);
            while i < a.len() || j < b.len() {
                let take_a = j >= b.len() || (i < a.len() && a[i] <= b[j]);
                let take_b = i >= a.len() || (j < b.len() && b[j] <= a[i]);
                let va = if take_a { av.map_or(1.0, |v| v[i]) } else { f32::NEG_INFINITY };
                let vb = if take_b { bv.map_or(1.0, |v| v[j]) } else { f32::NEG_INFINITY };
                indices.push(if take_a { a[i] } else { b[j] });
                if weighted {
                    values.push(va.max(vb));
                }
                if take_a {
                    i += 1;
                }
                if take_b {
                    j += 1;
                }
            }
            indptr.push(indices.len() as i64);
        }
        CsrMatrix { rows: self.rows, cols: self.cols, indptr, indices, values: weighted.then_some(values) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coo_sorts_and_sums_duplicates() {
        let m = CsrMatrix::from_coo("t", 3, 3, &[2, 0, 0, 2], &[1, 2, 2, 0], Some(&[1.0, 2.0, 3.0, 4.0])).unwrap();
        assert_eq!(m.indptr(), &[0, 1, 1, 3]);
        assert_eq!(m.indices(), &[2, 0, 1]);
        assert_eq!(m.values().unwrap(), &[5.0, 4.0, 1.0]);
        assert_eq!(m.get(0, 2), 5.0);
        assert_eq!(m.get(1, 1), 0.0);
    }

    #[test]
    fn rejects_bad_parts() {
        assert!(CsrMatrix::from_parts("t", 2, 2, vec![0, 1], vec![0], None).is_err());
        assert!(CsrMatrix::from_parts("t", 2, 2, vec![0, 2, 1], vec![0, 1], None).is_err());
        let e = CsrMatrix::from_parts("t", 2, 2, vec![0, 1, 2], vec![0, 5], None).unwrap_err();
        assert!(e.to_string().contains("node id 5 out of range"), "{e}");
    }

    #[test]
    fn transpose_and_union() {
        let m = CsrMatrix::from_coo("t", 3, 3, &[0, 1], &[1, 2], None).unwrap();
        let s = m.union_max(&m.transpose());
        assert_eq!(s.nnz(), 4);
        assert_eq!(s.get(2, 1), 1.0);
        assert!(s.values().is_none());
    }
}
