//! What crosses a stage boundary: one chunk's rows going up (or the whole graph's), their
//! gradients coming down, and beside them a second tensor named for what it carries.

use crate::config::HistoryDtype;
use tch::{Kind, Tensor};

/// Activations (or their gradients) crossing a stage boundary.
pub struct Boundary {
    pub x: Tensor,
    pub side: Option<Side>,
}

/// The tensor that travels beside a boundary's rows.
pub enum Side {
    /// GCNII's initial residual h⁰ of the same rows (or its gradient).
    H0(Tensor),
    /// Forward-only training: the class virtual nodes' rows.
    VirtualNodes(Tensor),
    /// Forward-only inference: each vertex's class distributions summed over the layers below.
    ClassScores(Tensor),
}

/// Which [`Side`] a receiver expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SideKind {
    H0,
    VirtualNodes,
    ClassScores,
}

impl SideKind {
    /// The tensor's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            SideKind::H0 => "h0",
            SideKind::VirtualNodes => "virtual_nodes",
            SideKind::ClassScores => "class_scores",
        }
    }
    pub fn wrap(self, t: Tensor) -> Side {
        match self {
            SideKind::H0 => Side::H0(t),
            SideKind::VirtualNodes => Side::VirtualNodes(t),
            SideKind::ClassScores => Side::ClassScores(t),
        }
    }
}

impl Side {
    pub fn kind(&self) -> SideKind {
        match self {
            Side::H0(_) => SideKind::H0,
            Side::VirtualNodes(_) => SideKind::VirtualNodes,
            Side::ClassScores(_) => SideKind::ClassScores,
        }
    }
    pub fn tensor(&self) -> &Tensor {
        match self {
            Side::H0(t) | Side::VirtualNodes(t) | Side::ClassScores(t) => t,
        }
    }
    pub fn into_tensor(self) -> Tensor {
        match self {
            Side::H0(t) | Side::VirtualNodes(t) | Side::ClassScores(t) => t,
        }
    }
    /// GCNII's h⁰, if that is what this is.
    pub fn h0(&self) -> Option<&Tensor> {
        match self {
            Side::H0(t) => Some(t),
            _ => None,
        }
    }
}

/// The shapes a receiver expects: the rows, and the side tensor's kind and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundaryShape {
    pub x: Vec<i64>,
    pub side: Option<(SideKind, Vec<i64>)>,
}

impl Boundary {
    /// GCNII's h⁰ beside the rows, if it travels with them.
    pub fn h0(&self) -> Option<&Tensor> {
        self.side.as_ref().and_then(Side::h0)
    }

    /// Copies to keep for the backward recomputation, in the activations' wire type (exact:
    /// the values arrived in it).
    pub(crate) fn kept(&self, dtype: HistoryDtype) -> Boundary {
        let keep = |t: &Tensor| if dtype.kind() == Kind::Float { t.shallow_clone() } else { t.to_kind(dtype.kind()) };
        Boundary { x: keep(&self.x), side: self.side.as_ref().map(|s| s.kind().wrap(keep(s.tensor()))) }
    }
}
