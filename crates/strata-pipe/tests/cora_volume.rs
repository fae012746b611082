//! The volume model on real Cora: graph-parallel vs pipeline bytes per epoch for L=32, P=4.

use strata_graph::registry::locate_or_skip;
use strata_graph::{partition, ContiguousOrder};
use strata_pipe::{boundary_count, VolumeModel};

#[test]
fn cora_graph_parallel_moves_several_times_the_pipeline_volume() {
    let Some(_) = locate_or_skip("planetoid/cora.npz") else { return };
    let d = strata_graph::load("cora", None).unwrap();
    let g = d.graph.symmetrized();
    let n = g.num_nodes();
    let p = 4;
    // Contiguous-ID partition (as in the GNNPipe notes' table) and our multilevel partition.
    let contiguous: Vec<usize> = (0..n).map(|u| u * p / n).collect();
    let multilevel = partition(&g, p, 0);
    let b_contiguous = boundary_count(&g, &contiguous);
    let b_multilevel = boundary_count(&g, &multilevel);
    assert!(b_multilevel < b_contiguous, "multilevel {b_multilevel} vs contiguous {b_contiguous}");
    // Renumbering a partition into contiguous ranges leaves B unchanged.
    let order = ContiguousOrder::new(&multilevel, p);
    let renumbered = g.permuted(&order.order);
    let parts: Vec<usize> = (0..n).map(|u| order.part_of(u)).collect();
    assert_eq!(boundary_count(&renumbered, &parts), b_multilevel);
    for (name, t) in [("GCN", 1), ("GCNII", 2)] {
        let m = VolumeModel { nodes: n, layers: 32, width: 64, tensors_per_boundary: t, parameters: 0 };
        let ratio = m.graph_parallel(b_contiguous, p).0 / m.pipeline(p);
        eprintln!(
            "Cora P=4 L=32 {name}: B = {b_contiguous} (contiguous ids), {b_multilevel} (multilevel); graph-parallel / pipeline = {ratio:.2}"
        );
        // The notes predict ≈ 6 for contiguous partitions with T = 1 (L·B / ((P−1)·N·T)).
        let expected = 32.0 * b_contiguous as f64 / (3.0 * n as f64 * t as f64);
        assert!((ratio - expected).abs() < 1e-9);
        assert!(ratio > 1.0);
    }
}
