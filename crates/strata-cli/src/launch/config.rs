//! `strata launch`'s flags as a [`PipelineConfig`]: the mode's defaults, the presets, the
//! paper's ablation switches.

use super::args::LaunchArgs;
use strata_pipe::{Mode, PipeModel, PipelineConfig};

pub(super) fn config(a: &LaunchArgs) -> anyhow::Result<PipelineConfig> {
    let model: PipeModel = a.model.parse().map_err(|e| anyhow::anyhow!("--model {e}"))?;
    let mode: Mode = a.mode.parse().map_err(|e| anyhow::anyhow!("--mode {e}"))?;
    let (stages, ways) = match mode {
        Mode::Pipeline => (a.stages.unwrap_or(4), a.ways.unwrap_or(1)),
        Mode::Graph => (a.stages.unwrap_or(1), a.ways.unwrap_or(4)),
        Mode::Hybrid => (a.stages.unwrap_or(2), a.ways.unwrap_or(2)),
    };
    let mut cfg = PipelineConfig::gcnii(a.layers, stages);
    cfg.mode = mode;
    cfg.ways = ways;
    cfg.model = model;
    cfg.hidden = 64;
    cfg.chunks = a.chunks;
    cfg.epochs = a.epochs;
    cfg.seed = a.seed;
    cfg.shuffle = !a.no_shuffle;
    cfg.grad_scale = if a.no_trick2 { 1.0 } else { a.grad_scale };
    cfg.carry_stale_grads = a.no_trick2;
    cfg.refresh = 1;
    cfg.eval_every = a.eval_every;
    cfg.history_dtype = a.history_dtype;
    cfg.trim_heap = a.trim_heap;
    cfg.recompute = a.recompute;
    cfg.memory_budget = a.memory_budget.map(|b| b.as_u64());
    cfg.warm_start = a.warm_start;
    cfg.allow_nonfinite = a.allow_nonfinite_loss;
    cfg.balance = a.balance;
    cfg.trainer = a.trainer.parse().map_err(|e| anyhow::anyhow!("--trainer {e}"))?;
    if model != PipeModel::Gcnii {
        cfg.dropout = 0.5;
        cfg.weight_decay_conv = 5e-4;
    }
    if a.preset.as_deref() == Some("gnnpipe") {
        // GNNPipe's run scripts: hidden 100, dropout 0.5, Adam lr 1e-3 without weight decay.
        cfg.hidden = 100;
        cfg.dropout = 0.5;
        cfg.lr = 1e-3;
        cfg.weight_decay = 0.0;
        cfg.weight_decay_conv = 0.0;
        cfg.refresh = 23;
    }
    if let Some(r) = a.refresh {
        cfg.refresh = r;
    }
    if let Some(h) = a.hidden {
        cfg.hidden = h;
    }
    if let Some(lr) = a.lr {
        cfg.lr = lr;
    }
    if let Some(d) = a.dropout {
        cfg.dropout = d;
    }
    if let Some(w) = a.weight_decay {
        cfg.weight_decay = w;
    }
    if let Some(w) = a.weight_decay_conv {
        cfg.weight_decay_conv = w;
    }
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("--mode {} --model {} --trainer {}: {e}", a.mode, a.model, a.trainer))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: LaunchArgs,
    }

    fn cfg(args: &[&str]) -> anyhow::Result<PipelineConfig> {
        config(&Cli::try_parse_from(std::iter::once("launch").chain(args.iter().copied()))?.a)
    }

    /// `--preset gnnpipe` sets the paper's hyper-parameters; explicit flags still win; bad
    /// values are refused with the setting named.
    #[test]
    fn gnnpipe_preset_and_weight_decay_flags() {
        let d = cfg(&[]).unwrap();
        assert_eq!((d.hidden, d.lr, d.weight_decay, d.weight_decay_conv), (64, 0.01, 5e-4, 0.01));
        let p = cfg(&["--preset", "gnnpipe"]).unwrap();
        assert_eq!((p.hidden, p.dropout, p.lr, p.weight_decay, p.weight_decay_conv), (100, 0.5, 1e-3, 0.0, 0.0));
        let o =
            cfg(&["--preset", "gnnpipe", "--hidden", "32", "--weight-decay", "1e-3", "--weight-decay-conv", "2e-3"])
                .unwrap();
        assert_eq!((o.hidden, o.lr, o.weight_decay, o.weight_decay_conv), (32, 1e-3, 1e-3, 2e-3));
        let e = cfg(&["--weight-decay=-1"]).unwrap_err().to_string();
        assert!(e.contains("weight decay"), "{e}");
        assert!(cfg(&["--preset", "pyg"]).is_err());
    }

    #[test]
    fn trick_flags_map_to_the_paper_ablations() {
        let d = cfg(&[]).unwrap();
        assert_eq!((d.shuffle, d.grad_scale, d.carry_stale_grads, d.refresh), (true, 2.0, false, 1));
        assert_eq!(cfg(&["--preset", "gnnpipe"]).unwrap().refresh, 23);
        assert_eq!(cfg(&["--preset", "gnnpipe", "--refresh", "4"]).unwrap().refresh, 4);
        let t = cfg(&["--no-trick2"]).unwrap();
        assert_eq!((t.grad_scale, t.carry_stale_grads), (1.0, true));
        let g = cfg(&["--grad-scale", "1"]).unwrap();
        assert_eq!((g.grad_scale, g.carry_stale_grads), (1.0, false));
        let all_off = cfg(&["--no-shuffle", "--no-trick2", "--refresh", "5"]).unwrap();
        assert_eq!((all_off.shuffle, all_off.carry_stale_grads, all_off.refresh), (false, true, 5));
        assert!(cfg(&["--no-trick2", "--grad-scale", "3"]).is_err(), "--no-trick2 sets the scale itself");
    }

    #[test]
    fn warm_start_is_refused_where_there_is_no_history_to_fill() {
        assert!(cfg(&["--warm-start", "true"]).unwrap().warm_start);
        for args in [&["--mode", "graph"][..], &["--trainer", "sf", "--model", "gcn"][..]] {
            let e = cfg(&[args, &["--warm-start", "true"]].concat()).unwrap_err().to_string();
            assert!(e.contains("--warm-start"), "{e}");
        }
    }

    #[test]
    fn heap_trimming_is_off_unless_asked_for() {
        assert!(!cfg(&[]).unwrap().trim_heap);
        assert!(cfg(&["--trim-heap"]).unwrap().trim_heap);
    }
}
