//! Weights in PyTorch Geometric's layout, for `strata train --save`: the parameter names of the
//! PyG model that computes the same function, and `torch.nn.Linear`'s `[out, in]` weights
//! (strata keeps a linear map as `[in, out]` so a sparse input can gather its rows).
//!
//! | strata | PyG model whose `load_state_dict` takes the file |
//! |---|---|
//! | `gcn` | `torch_geometric.nn.models.GCN(in, hidden, layers, classes)`: `convs.{i}.lin.weight`, `convs.{i}.bias` |
//! | `sage` | `torch_geometric.nn.models.GraphSAGE(in, hidden, layers, classes)`: `convs.{i}.lin_l.{weight,bias}`, `convs.{i}.lin_r.weight` |
//! | `gat` | `convs = ModuleList([GATConv(in, hidden, heads), …, GATConv(hidden·heads, classes, heads=1, concat=False)])`: `convs.{i}.lin.weight`, `att_src`, `att_dst`, `bias` |
//! | `gin` | `convs.{i} = GINConv(Sequential(Linear, ReLU, Linear), train_eps=True)`: `convs.{i}.eps`, `convs.{i}.nn.{0,2}.{weight,bias}`; `lin` the classifier |
//! | `gcnii` | PyG's `examples/gcn2_cora.py`: `lins.{0,1}` (`torch.nn.Linear`), `convs.{i}.weight1` (`GCN2Conv`, which multiplies `x @ weight1`: not transposed) |
//! | `mlp`, `appnp`, `dgmlp` | `lins.{i}` (`torch.nn.Linear`) |
//! | `sgc` | `lin` (`SGConv`'s) |
//!
//! The safetensors `__metadata__` says which model, its shape, the activation and the feature
//! normalisation that was applied ([`metadata`]).

use crate::{ModelConfig, ModelKind, NnError, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::Tensor;

/// The format tag in the metadata.
pub const FORMAT: &str = "strata-pyg/1";

/// Where the strata variable `name` of a `kind` model goes in PyG's `state_dict`, and whether
/// its `[in, out]` matrix is transposed to `[out, in]`.
pub fn pyg_name(kind: ModelKind, name: &str) -> Option<(String, bool)> {
    let (head, rest) = name.split_once('.')?;
    let numbered =
        |prefix: &str| head.strip_prefix(prefix).filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
    let weight = rest == "weight";
    use ModelKind::*;
    let (to, transpose) = match (kind, numbered("conv"), numbered("lin"), rest) {
        (Gcn, Some(i), _, "weight") => (format!("convs.{i}.lin.weight"), true),
        (Gcn, Some(i), _, "bias") => (format!("convs.{i}.bias"), false),
        (Gat, Some(i), _, "weight") => (format!("convs.{i}.lin.weight"), true),
        (Gat, Some(i), _, "att_src" | "att_dst" | "bias") => (format!("convs.{i}.{rest}"), false),
        (Sage, Some(i), _, "lin_neigh.weight") => (format!("convs.{i}.lin_l.weight"), true),
        (Sage, Some(i), _, "lin_self.weight") => (format!("convs.{i}.lin_r.weight"), true),
        // PyG's bias sits on the neighbour map, strata's on the root map: the sum is the same.
        (Sage, Some(i), _, "lin_self.bias") => (format!("convs.{i}.lin_l.bias"), false),
        (Gin, Some(i), _, "eps") => (format!("convs.{i}.eps"), false),
        (Gin, Some(i), _, "mlp1.weight" | "mlp1.bias") => (format!("convs.{i}.nn.0.{}", &rest[5..]), weight_of(rest)),
        (Gin, Some(i), _, "mlp2.weight" | "mlp2.bias") => (format!("convs.{i}.nn.2.{}", &rest[5..]), weight_of(rest)),
        (Gin, None, None, "weight" | "bias") if head == "head" => (format!("lin.{rest}"), weight),
        (Gcnii, Some(i), _, "weight") => (format!("convs.{i}.weight1"), false),
        (Gcnii, None, None, "weight" | "bias") if head == "lin_in" => (format!("lins.0.{rest}"), weight),
        (Gcnii, None, None, "weight" | "bias") if head == "lin_out" => (format!("lins.1.{rest}"), weight),
        (Mlp | Appnp | Dgmlp, None, Some(i), "weight" | "bias") => (format!("lins.{i}.{rest}"), weight),
        (Sgc, None, None, "weight" | "bias") if head == "lin" => (format!("lin.{rest}"), weight),
        _ => return None,
    };
    Some((to, transpose))
}

fn weight_of(rest: &str) -> bool {
    rest.ends_with(".weight")
}

/// The activation between layers (`sgc` has none: one linear map of propagated features).
pub fn activation(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Gat => "elu",
        ModelKind::Sgc => "none",
        _ => "relu",
    }
}

/// The `__metadata__` of an exported model: strings, as safetensors requires.
pub fn metadata(
    cfg: &ModelConfig,
    in_features: i64,
    classes: i64,
    feature_normalization: &str,
    dataset: &str,
) -> Result<HashMap<String, String>> {
    let config =
        serde_json::to_string(cfg).map_err(|e| NnError::Internal(format!("the configuration as JSON: {e}")))?;
    let mut m = HashMap::new();
    for (k, v) in [
        ("format", FORMAT.to_string()),
        ("layout", "pytorch_geometric".into()),
        ("model", cfg.model.name().into()),
        ("layers", cfg.layers.to_string()),
        ("hidden", cfg.hidden.to_string()),
        ("heads", cfg.heads.to_string()),
        ("in_features", in_features.to_string()),
        ("classes", classes.to_string()),
        ("activation", activation(cfg.model).into()),
        ("feature_normalization", feature_normalization.into()),
        ("dataset", dataset.into()),
        ("config", config),
    ] {
        m.insert(k.to_string(), v);
    }
    Ok(m)
}

/// Writes `vars` (a `kind` model's variables, by strata name) to `path` in PyG's layout, with
/// `meta` as the safetensors metadata, atomically. A variable without a PyG name is an internal
/// error (a model that gained a parameter this table does not know).
pub fn save_pyg(kind: ModelKind, vars: &[(String, Tensor)], meta: HashMap<String, String>, path: &Path) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(vars.len());
    for (name, t) in vars {
        let (to, transpose) = pyg_name(kind, name)
            .ok_or_else(|| NnError::Internal(format!("the {} parameter `{name}` has no PyG name", kind.name())))?;
        let t = if transpose { t.tr() } else { t.shallow_clone() };
        let t = t.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous();
        let shape = t.size().iter().map(|&d| d as usize).collect();
        let values = Vec::<f32>::try_from(t.flatten(0, -1))?;
        tensors.push((to, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    let views = tensors
        .iter()
        .map(|(n, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| NnError::Internal(format!("{n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::tensor::serialize(views, &Some(meta))
        .map_err(|e| NnError::Internal(format!("serialising {}: {e}", path.display())))?;
    crate::checkpoint::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variable of every model has a PyG name, and no two share one.
    #[test]
    fn every_parameter_of_every_model_has_one_pyg_name() {
        let g = strata_graph::load("karate", None).unwrap();
        let task = crate::NodeTask::new(&g, tch::Device::Cpu, strata_graph::FeatureNorm::Auto, crate::Kernel::Csr);
        for kind in ModelKind::ALL {
            let cfg = ModelConfig { layers: 3, ..ModelConfig::defaults(kind) };
            let model = crate::Model::new(&cfg, &task.graph, &task.input, g.num_classes as i64).unwrap();
            let mut seen = std::collections::HashSet::new();
            for (name, t) in model.vs.variables() {
                let (to, transpose) =
                    pyg_name(kind, &name).unwrap_or_else(|| panic!("{}: `{name}` has no PyG name", kind.name()));
                assert!(seen.insert(to.clone()), "{}: two parameters map to {to}", kind.name());
                assert!(!transpose || t.dim() == 2, "{}: {name} transposed but {}-D", kind.name(), t.dim());
            }
        }
    }

    /// The file holds `[out, in]` weights under PyG's names, and the metadata.
    #[test]
    fn a_gcn_saves_torch_linear_layout_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let w = Tensor::arange(6, (tch::Kind::Float, tch::Device::Cpu)).reshape([2, 3]); // [in 2, out 3]
        let b = Tensor::zeros([3], (tch::Kind::Float, tch::Device::Cpu));
        let meta = HashMap::from([("model".to_string(), "gcn".to_string())]);
        save_pyg(ModelKind::Gcn, &[("conv0.weight".into(), w.shallow_clone()), ("conv0.bias".into(), b)], meta, &path)
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(header.metadata().as_ref().unwrap()["model"], "gcn");
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let lin = st.tensor("convs.0.lin.weight").unwrap();
        assert_eq!(lin.shape(), [3, 2]);
        let got: Vec<f32> = lin.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(got, Vec::<f32>::try_from(w.tr().contiguous().flatten(0, -1)).unwrap());
        assert!(pyg_name(ModelKind::Gcn, "conv0.unknown").is_none());
    }
}
