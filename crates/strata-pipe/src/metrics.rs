//! Every Prometheus metric strata exports, named and described in one place: a worker's
//! (`strata worker --metrics-addr`) and a launch's (`strata launch --metrics-addr`, which also
//! exports each worker's phases as the workers report them, so one scrape target covers a run
//! whose workers it started). Times are histograms in seconds ([`SECONDS_BUCKETS`]), sizes in
//! bytes, accuracies fractions in [0, 1].

use crate::launcher::LaunchEpoch;
use crate::stage_core::Breakdown;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};

/// Bucket bounds (seconds) of every `_seconds` histogram: 1 ms to 10 min.
pub const SECONDS_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// The HELP text of a worker's metrics (call once, after installing a recorder).
pub fn describe_worker() {
    describe_counter!("strata_epochs_total", "Epochs this worker ran, by mode (train or eval).");
    describe_counter!(
        "strata_bytes_sent_total",
        Unit::Bytes,
        "Tensor payload bytes this worker sent, by kind (activation, gradient, halo, weight)."
    );
    describe_counter!(
        "strata_wire_bytes_sent_total",
        Unit::Bytes,
        "Encoded bytes of this worker's tensor sends: protobuf messages plus gRPC's 5-byte prefixes."
    );
    describe_gauge!("strata_peak_rss_bytes", Unit::Bytes, "This process's peak resident memory so far (VmHWM).");
    describe_gauge!("strata_cuda_peak_bytes", Unit::Bytes, "Peak bytes of the CUDA caching allocator (CUDA only).");
    describe_histogram!(
        "strata_epoch_phase_seconds",
        Unit::Seconds,
        "Seconds each epoch spent per kind of action (phase: forward, recompute, backward, recv_wait, send, \
         all_reduce, step, evaluate; epoch_kind: train or eval)."
    );
}

/// One epoch's phases on this worker.
pub fn record_worker_phases(phases: &Breakdown, train: bool) {
    let kind = if train { "train" } else { "eval" };
    for (phase, secs) in phases.phases() {
        histogram!("strata_epoch_phase_seconds", "phase" => phase, "epoch_kind" => kind).record(secs);
    }
}

/// The HELP text of a launch's metrics.
pub fn describe_launch() {
    describe_counter!("strata_launch_epochs_total", "Training epochs this launch completed.");
    describe_gauge!("strata_launch_last_epoch", "The last completed training epoch (0-based).");
    describe_gauge!("strata_launch_loss", "Mean training loss of the last epoch.");
    describe_gauge!(
        "strata_launch_accuracy",
        "Accuracy (a fraction in [0, 1]) at the last evaluation, by split (val, test)."
    );
    describe_histogram!("strata_launch_epoch_seconds", Unit::Seconds, "Wall-clock seconds of each training epoch.");
    describe_histogram!(
        "strata_launch_eval_seconds",
        Unit::Seconds,
        "Wall-clock seconds of each evaluation pass after an epoch."
    );
    describe_histogram!(
        "strata_launch_phase_seconds",
        Unit::Seconds,
        "Seconds each worker's training epoch spent per kind of action, as the worker reported it (rank; phase: \
         forward, recompute, backward, recv_wait, send, all_reduce, step, evaluate)."
    );
    describe_counter!(
        "strata_launch_bytes_sent_total",
        Unit::Bytes,
        "Tensor payload bytes the workers sent in training epochs, by kind (layer, halo, weight)."
    );
    describe_counter!(
        "strata_launch_wire_bytes_sent_total",
        Unit::Bytes,
        "Encoded bytes of the workers' tensor sends in training epochs (protobuf plus gRPC prefixes)."
    );
    describe_gauge!(
        "strata_launch_worker_peak_rss_bytes",
        Unit::Bytes,
        "Each worker's peak resident memory so far (VmHWM), by rank."
    );
}

/// A finished training epoch of a launch (and its evaluation, when one ran).
pub fn record_launch_epoch(e: &LaunchEpoch) {
    counter!("strata_launch_epochs_total").increment(1);
    gauge!("strata_launch_last_epoch").set(e.epoch as f64);
    gauge!("strata_launch_loss").set(e.loss);
    histogram!("strata_launch_epoch_seconds").record(e.epoch_ms / 1e3);
    if let Some(ms) = e.eval_ms {
        histogram!("strata_launch_eval_seconds").record(ms / 1e3);
    }
    for (split, acc) in [("val", e.val_accuracy), ("test", e.test_accuracy)] {
        if let Some(a) = acc {
            gauge!("strata_launch_accuracy", "split" => split).set(a);
        }
    }
    for (rank, phases) in e.phases_per_worker.iter().enumerate() {
        for (phase, secs) in phases.phases() {
            histogram!("strata_launch_phase_seconds", "rank" => rank.to_string(), "phase" => phase).record(secs);
        }
    }
    for (kind, bytes) in [("layer", e.layer_bytes), ("halo", e.halo_bytes), ("weight", e.weight_bytes)] {
        counter!("strata_launch_bytes_sent_total", "kind" => kind).increment(bytes);
    }
    counter!("strata_launch_wire_bytes_sent_total").increment(e.wire_bytes);
    for (rank, &rss) in e.memory_bytes_per_worker.iter().enumerate() {
        gauge!("strata_launch_worker_peak_rss_bytes", "rank" => rank.to_string()).set(rss as f64);
    }
}
