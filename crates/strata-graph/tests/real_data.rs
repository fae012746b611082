//! Readers and recipes checked against the real files in `../shared/graphs` and the statistics
//! its README lists.

use strata_graph::formats::{read_graph_npz, read_scipy_sparse};
use strata_graph::registry::{self, locate_or_skip};
use strata_graph::{edge_cut, edge_difference, partition, random_partition, Attack, ContiguousOrder, Split};

#[test]
fn planetoid_statistics() {
    // (file, nodes, undirected edges, self loops, features, classes, unlabelled, split sizes)
    let expected = [
        ("cora", 2708, 5278, 0, 1433, 7, 0, (140, 500, 1000)),
        ("citeseer", 3327, 4552, 124, 3703, 6, 15, (120, 500, 1000)),
        ("pubmed", 19717, 44324, 3, 0, 3, 0, (60, 500, 1000)),
    ];
    for (name, n, e, loops, f, c, unl, (tr, va, te)) in expected {
        let Some(path) = locate_or_skip(&format!("planetoid/{name}.npz")) else { return };
        let d = read_graph_npz(&path).unwrap();
        assert_eq!(d.num_nodes(), n, "{name} nodes");
        assert_eq!(d.graph.num_undirected_edges(), e, "{name} edges");
        assert_eq!(d.graph.num_self_loops(), loops, "{name} self loops");
        if f > 0 {
            assert_eq!(d.features.dim(), f, "{name} features");
        }
        assert_eq!(d.num_classes, c, "{name} classes");
        assert_eq!(d.labels.iter().filter(|&&l| l < 0).count(), unl, "{name} unlabelled");
        let s = &d.splits[0];
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (tr, va, te), "{name} split");
    }
}

#[test]
fn prognn_clean_graphs_and_metattack_budgets() {
    let expected = [
        ("cora-lcc", "cora", 2485, 5069),
        ("citeseer-lcc", "citeseer", 2110, 3668),
        ("polblogs-lcc", "polblogs", 1222, 16714),
        ("cora-ml-lcc", "cora_ml", 2810, 7981),
    ];
    for (name, prefix, n, e) in expected {
        if locate_or_skip(&format!("nettack/{prefix}.npz")).is_none() {
            return;
        }
        let clean = registry::load(name, None).unwrap();
        assert_eq!(clean.num_nodes(), n, "{name} nodes");
        assert_eq!(clean.graph.num_undirected_edges(), e, "{name} edges");
        assert_eq!(clean.graph.num_self_loops(), 0);
        assert!(clean.graph.is_symmetric());
        for rate in [0.05, 0.1, 0.15, 0.2, 0.25] {
            let rel = format!("prognn/meta/{prefix}_meta_adj_{rate}.npz");
            let Some(path) = locate_or_skip(&rel) else { return };
            let adj = read_scipy_sparse(&path).unwrap();
            let poisoned = strata_graph::with_poisoned_adjacency(&clean, adj, &rel).unwrap();
            let (added, removed) = edge_difference(&clean.graph, &poisoned.graph).unwrap();
            let budget = (rate * e as f64).floor() as usize;
            assert_eq!(added + removed, budget, "{rel}: {added} added + {removed} removed");
        }
    }
    // The registry's --attack path gives the same graph.
    if locate_or_skip("prognn/meta/cora_meta_adj_0.05.npz").is_some() {
        let clean = registry::load("cora-lcc", None).unwrap();
        let p = registry::load("cora-lcc", Some("meta:0.05".parse::<Attack>().unwrap())).unwrap();
        assert_eq!(edge_difference(&clean.graph, &p.graph).unwrap(), (253, 0));
        let n = registry::load("cora-lcc", Some(Attack::Nettack(3))).unwrap();
        assert!(edge_difference(&clean.graph, &n.graph).unwrap().0 > 0);
        // Pro-GNN's published Cora split (the nettacked-nodes file: 10 / 10 / 80 %).
        let sp = &p.splits[0];
        assert_eq!((sp.train.len(), sp.val.len(), sp.test.len()), (247, 249, 1988));
    }
}

#[test]
fn geom_gcn_graphs_with_ten_splits() {
    // (name, nodes, feature dim, classes)
    for (name, n, f, c) in
        [("cornell", 183, 1703, 5), ("texas", 183, 1703, 5), ("wisconsin", 251, 1703, 5), ("film", 7600, 932, 5)]
    {
        if locate_or_skip(&format!("webkb/{name}/out1_graph_edges.txt")).is_none() {
            return;
        }
        let d = registry::load(name, None).unwrap();
        assert_eq!(d.num_nodes(), n, "{name}");
        assert_eq!(d.features.dim(), f, "{name}");
        assert_eq!(d.num_classes, c, "{name}");
        assert_eq!(d.splits.len(), 10, "{name}");
        assert!(d.graph.num_entries() > n / 2);
    }
}

#[test]
fn forwardgnn_cora_ml_splits() {
    if locate_or_skip("forwardgnn/cora_ml/split0.json").is_none() {
        return;
    }
    let d = registry::load("cora-ml", None).unwrap();
    assert_eq!(d.num_nodes(), 2995);
    assert!(d.graph.is_symmetric());
    assert_eq!(d.splits.len(), 5);
    let s: &Split = &d.splits[0];
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (1916, 480, 599));
}

#[test]
fn karate_is_embedded() {
    let d = registry::load("karate", None).unwrap();
    assert_eq!(d.num_nodes(), 34);
    assert_eq!(d.graph.num_undirected_edges(), 78);
    assert_eq!(d.num_classes, 2);
}

#[test]
fn partitioner_beats_random_on_cora() {
    let Some(path) = locate_or_skip("planetoid/cora.npz") else { return };
    let d = read_graph_npz(path).unwrap();
    for k in [4, 8, 16] {
        let p = partition(&d.graph, k, 0);
        let ours = edge_cut(&d.graph, &p);
        let random = edge_cut(&d.graph, &random_partition(d.num_nodes(), k, 0));
        let mut sizes = vec![0usize; k];
        p.iter().for_each(|&x| sizes[x] += 1);
        let max = *sizes.iter().max().unwrap() as f64;
        let avg = d.num_nodes() as f64 / k as f64;
        eprintln!(
            "cora k={k}: edge cut {ours} (multilevel) vs {random} (random), {:.1}%, max part {:.3}x avg",
            100.0 * ours as f64 / random as f64,
            max / avg
        );
        assert!((ours as f64) < 0.25 * random as f64, "k={k}: cut {ours} vs random {random}");
        assert!(max <= avg * 1.05, "k={k}: parts {sizes:?} unbalanced");
        let o = ContiguousOrder::new(&p, k);
        let renumbered = d.graph.permuted(&o.order);
        let new_part: Vec<usize> = (0..d.num_nodes()).map(|u| o.part_of(u)).collect();
        assert_eq!(edge_cut(&renumbered, &new_part), ours);
    }
}
