//! What crosses a stage boundary: one chunk's activations going up, their gradients coming down.

use crate::config::HistoryDtype;
use tch::{Kind, Tensor};

/// Activations (or their gradients) of one chunk crossing a stage boundary.
pub struct Boundary {
    pub x: Tensor,
    /// GCNII's h⁰ rows (or its gradient); undefined for GCN.
    pub h0: Option<Tensor>,
}

impl Boundary {
    /// Activations as the next stage receives them: rounded to the 16-bit type they travel in
    /// (`HistoryDtype::value_type`), back in f32. The in-process schedule calls it so that it
    /// computes what the workers compute.
    pub fn as_sent(self, dtype: HistoryDtype) -> Boundary {
        let kind = dtype.kind();
        if kind == Kind::Float {
            return self;
        }
        let round = |t: Tensor| t.to_kind(kind).to_kind(Kind::Float);
        Boundary { x: round(self.x), h0: self.h0.map(round) }
    }

    /// Copies to keep for the backward recomputation, in the activations' wire type (exact:
    /// the values arrived in it).
    pub(crate) fn kept(&self, dtype: HistoryDtype) -> Boundary {
        let keep = |t: &Tensor| if dtype.kind() == Kind::Float { t.shallow_clone() } else { t.to_kind(dtype.kind()) };
        Boundary { x: keep(&self.x), h0: self.h0.as_ref().map(keep) }
    }
}
