//! Node-classification models built from the layer library.

use crate::config::{ModelConfig, ModelKind};
use crate::conv::{dgmlp_features, sgc_propagate, Appnp, GatConv, Gcn2Conv, GcnConv, GinConv, Init, Linear, SageConv};
use crate::error::Result;
use crate::input::Input;
use crate::message_passing::{Adjacency, GraphTensors, Norm};
use crate::ops::FastDropout;
use std::rc::Rc;
use tch::{nn, Tensor};

/// The layers, and the graph operator the message-passing ones are handed on every call.
enum Net {
    Mlp(Vec<Linear>),
    Gcn(Vec<GcnConv>, Rc<Adjacency>),
    Sage(Vec<SageConv>, Rc<Adjacency>),
    Gat(Vec<GatConv>, Rc<Adjacency>),
    Gin(Vec<GinConv>, Linear, Rc<Adjacency>),
    Appnp(Vec<Linear>, Appnp, Rc<Adjacency>),
    Sgc(Linear, Tensor),
    Gcnii {
        input: Linear,
        convs: Vec<Gcn2Conv>,
        output: Linear,
        adj: Rc<Adjacency>,
    },
    /// Precomputed node-adaptive features and the MLP on top.
    Dgmlp(Vec<Linear>, Tensor),
}

/// A node-classification model bound to one graph (its cached operators) and one var store.
pub struct Model {
    pub config: ModelConfig,
    pub vs: nn::VarStore,
    net: Net,
}

impl Net {
    /// Whether any parameter lives in the secondary weight-decay group.
    fn has_secondary(&self) -> bool {
        matches!(self, Net::Gcn(c, _) if c.len() > 1) || matches!(self, Net::Gcnii { .. })
    }
}

/// Parameter groups: group 0 gets `weight_decay`, group 1 `weight_decay_secondary`.
const PRIMARY: usize = 0;
const SECONDARY: usize = 1;

impl Model {
    // Long on purpose: one short match arm per architecture; splitting it would scatter the table of models.
    pub fn new(config: &ModelConfig, graph: &GraphTensors, input: &Input, classes: i64) -> Result<Model> {
        config.validate()?;
        let vs = nn::VarStore::new(graph.device);
        let root = vs.root();
        let (p, s) = (root.set_group(PRIMARY), root.set_group(SECONDARY));
        let c = config;
        let f = input.dim();
        let widths = |first: i64, hidden: i64, last: i64, layers: usize| -> Vec<(i64, i64)> {
            (0..layers)
                .map(|l| (if l == 0 { first } else { hidden }, if l + 1 == layers { last } else { hidden }))
                .collect()
        };
        let net = match c.model {
            ModelKind::Mlp => Net::Mlp(
                widths(f, c.hidden, classes, c.layers)
                    .into_iter()
                    .enumerate()
                    .map(|(l, (i, o))| Linear::new(&(&p / format!("lin{l}")), i, o, true, Init::TorchDefault))
                    .collect(),
            ),
            ModelKind::Gcn => {
                let adj = graph.adjacency(Norm::SymWithSelfLoops);
                Net::Gcn(
                    widths(f, c.hidden, classes, c.layers)
                        .into_iter()
                        .enumerate()
                        .map(|(l, (i, o))| GcnConv::new(&(if l == 0 { &p } else { &s } / format!("conv{l}")), i, o))
                        .collect(),
                    adj,
                )
            }
            ModelKind::Sage => {
                let adj = graph.adjacency(Norm::Mean);
                Net::Sage(
                    widths(f, c.hidden, classes, c.layers)
                        .into_iter()
                        .enumerate()
                        .map(|(l, (i, o))| SageConv::new(&(&p / format!("conv{l}")), i, o))
                        .collect(),
                    adj,
                )
            }
            ModelKind::Gat => {
                let mut layers = Vec::new();
                for l in 0..c.layers {
                    let last = l + 1 == c.layers;
                    let fan_in = if l == 0 { f } else { c.hidden * c.heads };
                    // Output layer: one head for Cora-size graphs, as in the paper.
                    let (out, heads, concat) = if last { (classes, 1, false) } else { (c.hidden, c.heads, true) };
                    layers.push(GatConv::new(&(&p / format!("conv{l}")), fan_in, out, heads, concat));
                }
                Net::Gat(layers, graph.adjacency(Norm::SelfLoops))
            }
            ModelKind::Gin => {
                let adj = graph.adjacency(Norm::Sum);
                let convs = (0..c.layers)
                    .map(|l| {
                        GinConv::new(&(&p / format!("conv{l}")), if l == 0 { f } else { c.hidden }, c.hidden, c.hidden)
                    })
                    .collect();
                Net::Gin(convs, Linear::new(&(&p / "head"), c.hidden, classes, true, Init::TorchDefault), adj)
            }
            ModelKind::Appnp => Net::Appnp(
                vec![
                    Linear::new(&(&p / "lin0"), f, c.hidden, true, Init::TorchDefault),
                    Linear::new(&(&p / "lin1"), c.hidden, classes, true, Init::TorchDefault),
                ],
                Appnp::new(c.layers, c.alpha),
                graph.adjacency(Norm::SymWithSelfLoops),
            ),
            ModelKind::Sgc => {
                let adj = graph.adjacency(Norm::SymWithSelfLoops);
                let x = sgc_propagate(&adj, &input.to_dense(), c.layers);
                Net::Sgc(Linear::new(&(&p / "lin"), f, classes, true, Init::TorchDefault), x)
            }
            ModelKind::Gcnii => {
                let adj = graph.adjacency(Norm::SymWithSelfLoops);
                Net::Gcnii {
                    input: Linear::new(&(&p / "lin_in"), f, c.hidden, true, Init::TorchDefault),
                    convs: (0..c.layers)
                        .map(|l| Gcn2Conv::new(&(&s / format!("conv{l}")), c.hidden, c.alpha, c.theta, l + 1))
                        .collect(),
                    output: Linear::new(&(&p / "lin_out"), c.hidden, classes, true, Init::TorchDefault),
                    adj,
                }
            }
            ModelKind::Dgmlp => {
                let adj = graph.adjacency(Norm::SymWithSelfLoops);
                let comps = graph.graph().connected_components();
                let num = comps.iter().copied().max().map_or(0, |m| m + 1) as i64;
                let comp = Tensor::from_slice(&comps.iter().map(|&c| c as i64).collect::<Vec<_>>()).to(graph.device);
                let x = dgmlp_features(&adj, &input.to_dense(), c.layers, &comp, num);
                let mlp = widths(f, c.hidden, classes, c.transform_layers)
                    .into_iter()
                    .enumerate()
                    .map(|(l, (i, o))| Linear::new(&(&p / format!("lin{l}")), i, o, true, Init::TorchDefault))
                    .collect();
                Net::Dgmlp(mlp, x)
            }
        };
        Ok(Model { config: config.clone(), vs, net })
    }

    /// Logits `[n, classes]` for every node.
    pub fn forward(&self, x: &Input, train: bool) -> Tensor {
        self.forward_with_hidden(x, train).1
    }

    /// The representation the last layer reads (after its activation, before dropout: the
    /// node embeddings `strata predict --embeddings` writes; SGC's propagated features) and
    /// the logits. `None` for a model of one layer, which has no hidden representation.
    // Long on purpose: one short match arm per architecture, as in `new`.
    pub fn forward_with_hidden(&self, x: &Input, train: bool) -> (Option<Tensor>, Tensor) {
        let dp = self.config.dropout;
        match &self.net {
            Net::Mlp(lins) => {
                let (last, rest) = lins.split_last().expect("at least one layer");
                let mut h = None;
                for (l, lin) in rest.iter().enumerate() {
                    let out = if l == 0 {
                        lin.forward_input(x, dp, train)
                    } else {
                        lin.forward(&h.take().map(|h: Tensor| h.fast_dropout(dp, train)).unwrap())
                    };
                    h = Some(out.relu());
                }
                match h {
                    Some(h) => (Some(h.shallow_clone()), last.forward(&h.fast_dropout(dp, train))),
                    None => (None, last.forward_input(x, dp, train)),
                }
            }
            Net::Gcn(convs, adj) => {
                if convs.len() == 1 {
                    return (None, convs[0].propagate(adj, &x.matmul(&convs[0].lin.w, dp, train)));
                }
                let mut h = convs[0].propagate(adj, &x.matmul(&convs[0].lin.w, dp, train)).relu();
                for conv in &convs[1..convs.len() - 1] {
                    h = conv.forward(adj, &h.fast_dropout(dp, train)).relu();
                }
                let logits = convs[convs.len() - 1].forward(adj, &h.fast_dropout(dp, train));
                (Some(h), logits)
            }
            Net::Sage(convs, adj) => {
                if convs.len() == 1 {
                    return (None, convs[0].forward_input(adj, x, dp, train));
                }
                let mut h = convs[0].forward_input(adj, x, dp, train).relu();
                for conv in &convs[1..convs.len() - 1] {
                    h = conv.forward(adj, &h.fast_dropout(dp, train)).relu();
                }
                let logits = convs[convs.len() - 1].forward(adj, &h.fast_dropout(dp, train));
                (Some(h), logits)
            }
            Net::Gat(convs, adj) => {
                let ad = self.config.att_dropout;
                if convs.len() == 1 {
                    return (None, convs[0].attend(adj, &x.matmul(&convs[0].lin.w, dp, train), ad, train));
                }
                let mut h = convs[0].attend(adj, &x.matmul(&convs[0].lin.w, dp, train), ad, train).elu();
                for conv in &convs[1..convs.len() - 1] {
                    h = conv.forward(adj, &h.fast_dropout(dp, train), ad, train).elu();
                }
                let logits = convs[convs.len() - 1].forward(adj, &h.fast_dropout(dp, train), ad, train);
                (Some(h), logits)
            }
            Net::Gin(convs, head, adj) => {
                let mut h = convs[0].forward_projected(adj, &x.matmul(convs[0].first_weight(), dp, train));
                for conv in &convs[1..] {
                    h = conv.forward(adj, &h.relu().fast_dropout(dp, train));
                }
                let h = h.relu();
                let logits = head.forward(&h.fast_dropout(dp, train));
                (Some(h), logits)
            }
            Net::Appnp(lins, prop, adj) => {
                let h = lins[0].forward_input(x, dp, train).relu();
                let logits = prop.forward(adj, &lins[1].forward(&h.fast_dropout(dp, train)));
                (Some(h), logits)
            }
            Net::Sgc(lin, propagated) => {
                let feats = propagated.to_kind(lin.w.kind());
                (Some(feats.shallow_clone()), lin.forward(&feats.fast_dropout(dp, train)))
            }
            Net::Gcnii { input, convs, output, adj } => {
                let h0 = input.forward_input(x, dp, train).relu();
                let h0_scaled = convs.first().map(|c| c.scaled_initial(&h0));
                let mut h = h0.shallow_clone();
                for conv in convs {
                    h = conv
                        .forward(adj, &h, h0_scaled.as_ref().unwrap(), dp, train, self.config.checkpoint_activations)
                        .relu();
                }
                let logits = output.forward(&h.fast_dropout(dp, train));
                (Some(h), logits)
            }
            Net::Dgmlp(mlp, feats) => {
                let mut h = feats.to_kind(mlp[0].w.kind());
                let (last, rest) = mlp.split_last().expect("at least one layer");
                for lin in rest {
                    h = lin.forward(&h.fast_dropout(dp, train)).relu();
                }
                let logits = last.forward(&h.fast_dropout(dp, train));
                (Some(h), logits)
            }
        }
    }

    /// Parameter groups in use (the optimizer must only be told about existing groups).
    pub fn num_groups(&self) -> usize {
        if self.net.has_secondary() {
            2
        } else {
            1
        }
    }

    /// Number of trainable scalars.
    pub fn num_parameters(&self) -> i64 {
        self.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }
}
