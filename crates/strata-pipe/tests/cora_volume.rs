//! Boundary vertices on real Cora, the quantity the graph-parallel volume model is driven by:
//! the multilevel partitioner cuts fewer than contiguous ids, and renumbering keeps the cut.
//! (That measured bytes equal the model is checked by the multi-process tests in `tests/`.)

use strata_graph::registry::locate_or_skip;
use strata_graph::{partition, ContiguousOrder};
use strata_pipe::{boundary_count, VolumeModel};

#[test]
fn multilevel_partition_cuts_fewer_boundary_vertices_than_contiguous_ids() {
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
        let m = VolumeModel {
            nodes: n,
            layers: 32,
            width: 64,
            tensors_per_boundary: t,
            parameters: 0,
            activation_bytes: 4,
        };
        let ratio = m.graph_parallel(b_contiguous, p).0 / m.pipeline(p);
        eprintln!(
            "Cora P=4 L=32 {name}: B = {b_contiguous} (contiguous ids), {b_multilevel} (multilevel); graph-parallel / pipeline = {ratio:.2}"
        );
    }
}
