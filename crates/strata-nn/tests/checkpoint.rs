//! Checkpoints round-trip: weights saved atomically load into a fresh model with identical outputs.

use strata_graph::registry;
use strata_nn::checkpoint::{load_checkpoint, save_checkpoint};
use strata_nn::{train_node_classifier, Kernel, Model, ModelConfig, ModelKind, NodeTask};

#[test]
fn saved_weights_reload_exactly() {
    let d = registry::load("karate", None).unwrap();
    let mut cfg = ModelConfig::defaults(ModelKind::Gcnii);
    cfg.layers = 4;
    cfg.epochs = 30;
    let task = NodeTask::new(&d, tch::Device::Cpu, strata_graph::FeatureNorm::Auto, Kernel::EdgeList);
    let (model, _) = train_node_classifier(&task, &cfg, &d.splits[0], 0, |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    save_checkpoint(&model.vs, &path, &serde_json::json!({"config": cfg})).unwrap();
    let mut fresh = Model::new(&cfg, &task.graph, &task.input, task.classes).unwrap();
    let before = fresh.forward(&task.input, false);
    load_checkpoint(&mut fresh.vs, &path).unwrap();
    let a = model.forward(&task.input, false);
    let b = fresh.forward(&task.input, false);
    assert!(a.equal(&b), "reloaded model differs");
    assert!(!before.equal(&b), "loading changed nothing");
    assert!(load_checkpoint(&mut fresh.vs, &dir.path().join("missing.safetensors"))
        .unwrap_err()
        .to_string()
        .contains("missing.safetensors"));
}
