//! Sizes no real dataset reaches, so a corrupt or hostile file is refused with a clear error
//! instead of asking for terabytes. Each bound sits well above the largest public benchmark.

/// Most nodes a graph may have: 2²⁸ ≈ 268 M, 2.4× ogbn-papers100M (111 M nodes). Node ids in a
/// file must be below this; an id of 10⁹ is taken as corruption.
pub const MAX_NODES: usize = 1 << 28;

/// Most classes a node-classification dataset may have (ogbn-papers100M has 172). A label of
/// 10⁹ would otherwise size a one-hot matrix of N × 10⁹.
pub const MAX_CLASSES: usize = 1 << 16;

/// Widest feature vector a file may declare (bag-of-words graphs reach ~10⁴–10⁵ columns).
pub const MAX_FEATURE_DIM: usize = 1 << 24;

/// Bytes one array read from a file may take once decoded; 0 = no budget set. A program sets
/// it once from the memory it may use ([`set_memory_budget`]), so that a small compressed
/// file declaring gigabytes is refused before they are inflated.
static MEMORY_BUDGET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets the budget of [`memory_budget`] (e.g. the memory available to the process).
pub fn set_memory_budget(bytes: u64) {
    MEMORY_BUDGET.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

/// The budget set by [`set_memory_budget`], if any.
pub fn memory_budget() -> Option<u64> {
    Some(MEMORY_BUDGET.load(std::sync::atomic::Ordering::Relaxed)).filter(|&b| b > 0)
}

/// Checks a node id read from a file against [`MAX_NODES`]; the error says what was expected,
/// for the caller to put after the file and line.
pub(crate) fn node_id(id: i64) -> Result<usize, String> {
    if id < 0 || id as u64 >= MAX_NODES as u64 {
        return Err(format!(
            "node id {id} is outside 0..{MAX_NODES} (strata_graph::limits::MAX_NODES); expected 0-based ids of a graph that fits"
        ));
    }
    Ok(id as usize)
}

/// Checks a class label (−1 = unlabelled) against [`MAX_CLASSES`].
pub fn label(label: i64) -> Result<i64, String> {
    if label < -1 || label >= MAX_CLASSES as i64 {
        return Err(format!(
            "label {label} is outside -1..{MAX_CLASSES} (-1 = unlabelled; strata_graph::limits::MAX_CLASSES)"
        ));
    }
    Ok(label)
}
