//! Worker security and robustness across processes: mutual TLS and tokens, malformed input
//! refused while the worker keeps serving, a panicking stage reported as failed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use strata_tests::strata_bin;

/// A worker started with `args`; returns it and its address.
fn start_worker(args: &[&str], envs: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = Command::new(strata_bin());
    cmd.args(["worker", "--threads", "1"])
        .args(args)
        .env_remove("STRATA_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "worker did not start: {line}");
    (child, line.trim().rsplit(' ').next().unwrap().to_string())
}

fn health(addr: &str, creds: &strata_pipe::security::Credentials) -> Result<(), tonic::Status> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = strata_pipe::worker::client(addr, creds).map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        tokio::time::timeout(Duration::from_secs(10), c.health(strata_pipe::proto::HealthRequest {}))
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("no answer"))?
            .map(|_| ())
    })
}

/// Mutual TLS: a worker with the cluster's certificates answers a client holding one; a client
/// with a certificate from another CA, or with none (plaintext), is refused in the handshake;
/// with TLS a worker may listen beyond loopback without a token. Roles: a worker certificate
/// cannot Configure, the launcher's cannot push tensors or serve as a worker. `strata cluster
/// certs` refuses to overwrite.
#[test]
// Long on purpose: one certificate authority and one worker serve every refusal case in turn.
fn mutual_tls_refuses_unknown_certificates_and_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, other) = (dir.path().join("cluster"), dir.path().join("other"));
    for d in [&cluster, &other] {
        let out = Command::new(strata_bin())
            .args(["cluster", "certs", "--out", d.to_str().unwrap(), "--workers", "2"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for f in
        ["ca.pem", "ca-key.pem", "worker-0.pem", "worker-0-key.pem", "worker-1.pem", "launcher.pem", "launcher-key.pem"]
    {
        assert!(cluster.join(f).exists(), "{f}");
    }
    let again =
        Command::new(strata_bin()).args(["cluster", "certs", "--out", cluster.to_str().unwrap()]).output().unwrap();
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));

    // Beyond loopback with TLS and no token: allowed.
    let (mut w, addr) =
        start_worker(&["--listen", "0.0.0.0:0", "--rank", "0", "--tls-dir", cluster.to_str().unwrap()], &[]);
    let addr = format!("127.0.0.1:{}", addr.rsplit(':').next().unwrap());
    let creds = |d: &std::path::Path| strata_pipe::security::Credentials {
        token: None,
        tls: Some(strata_pipe::security::TlsIdentity::load(d, "launcher").unwrap()),
    };
    assert!(health(&addr, &creds(&cluster)).is_ok(), "the cluster's own launcher certificate is refused");
    // Each refusal happens in the TLS handshake: the call never reaches the service, so the
    // client sees a transport failure, not an answer from the worker. Its code depends on which
    // side notices first: Unavailable or Unknown, Internal when a plaintext client's HTTP/2
    // frames meet the TLS server's alert (GOAWAY, FRAME_SIZE_ERROR), or Cancelled when TLS 1.3
    // lets the client finish its side and send the request before the server's refusal of its
    // certificate closes the connection.
    let handshake_failed = |e: &tonic::Status| {
        matches!(
            e.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Cancelled
        ) && format!("{e:?}").contains("tonic::transport::Error")
    };
    let e = health(&addr, &creds(&other)).unwrap_err();
    eprintln!("another cluster's launcher: {e}");
    assert!(handshake_failed(&e), "{e}");
    // Trusting the right CA but presenting a certificate it did not sign: the worker refuses.
    let mut impostor = creds(&other);
    impostor.tls.as_mut().unwrap().ca = std::fs::read(cluster.join("ca.pem")).unwrap();
    let e = health(&addr, &impostor).unwrap_err();
    eprintln!("unknown client certificate: {e}");
    assert!(handshake_failed(&e), "{e}");
    let e = health(&addr, &strata_pipe::security::Credentials::default()).unwrap_err();
    eprintln!("plaintext: {e}");
    assert!(handshake_failed(&e), "{e}");

    // Roles: orders only from the launcher's certificate, tensors only from workers'.
    let as_worker = strata_pipe::security::Credentials {
        token: None,
        tls: Some(strata_pipe::security::TlsIdentity::load(&cluster, "worker-1").unwrap()),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let configure = |c: &strata_pipe::security::Credentials| {
        rt.block_on(async {
            let mut client = strata_pipe::worker::client(&addr, c).unwrap();
            client
                .configure(tokio_stream::iter(vec![strata_pipe::proto::ConfigPiece::default()]))
                .await
                .map(|_| ())
                .unwrap_err()
        })
    };
    let e = configure(&as_worker);
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "a worker certificate configured a worker: {e}");
    assert!(e.message().contains("launcher role"), "{e}");
    let e = configure(&creds(&cluster));
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "the launcher was not let through to the spec check: {e}");
    let push = |c: &strata_pipe::security::Credentials| {
        rt.block_on(async {
            let mut client = strata_pipe::worker::client(&addr, c).unwrap();
            client
                .push_tensor(tokio_stream::iter(vec![strata_pipe::proto::TensorPiece::default()]))
                .await
                .map(|_| ())
                .unwrap_err()
        })
    };
    let e = push(&creds(&cluster));
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "the launcher pushed a tensor: {e}");
    let e = push(&as_worker);
    assert_eq!(
        e.code(),
        tonic::Code::FailedPrecondition,
        "a worker peer was not let through to the tensor checks: {e}"
    );
    // Still serving its own cluster afterwards.
    assert!(health(&addr, &creds(&cluster)).is_ok());
    let _ = w.kill();
    let _ = w.wait();
    // The launcher's certificate cannot pose as a worker: it names no server.
    let (mut fake, fake_addr) = start_worker(
        &["--listen", "127.0.0.1:0", "--tls-dir", cluster.to_str().unwrap(), "--tls-name", "launcher"],
        &[],
    );
    let e = health(&fake_addr, &creds(&cluster)).unwrap_err();
    eprintln!("launcher certificate serving: {e}");
    assert!(handshake_failed(&e), "{e}");
    let _ = fake.kill();
    let _ = fake.wait();
    // A --tls-dir without the worker's files is a clear error.
    let out = Command::new(strata_bin())
        .args(["worker", "--rank", "7", "--tls-dir", cluster.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("worker-7.pem"), "{err}");
}

const TOKEN: &str = "garbage-test-t0ken-0001";

/// A worker on loopback with a token, configured by an in-process launcher as the single stage
/// of a GCNII-2 run on the karate club (2 chunks), checkpoints confined to `root`.
/// The launcher's channels live on the returned runtime.
fn configured_worker(
    root: &std::path::Path,
    envs: &[(&str, &str)],
) -> (Child, String, strata_pipe::PipelinePlan, strata_pipe::launcher::Launcher, tokio::runtime::Runtime) {
    let mut e = vec![("STRATA_TOKEN", TOKEN)];
    e.extend_from_slice(envs);
    let (w, addr) = start_worker(&["--listen", "127.0.0.1:0"], &e);
    let data = strata_graph::load("karate", None).unwrap();
    let split = data
        .splits
        .first()
        .cloned()
        .unwrap_or_else(|| strata_graph::Split::random_stratified(&data.labels, 0.2, 0.2, 0));
    let mut cfg = strata_pipe::PipelineConfig::gcnii(2, 1);
    cfg.chunks = 2;
    let plan = strata_pipe::PipelinePlan::new(&data, &split, &cfg);
    let creds = strata_pipe::security::Credentials::token(Some(TOKEN.into()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let launcher = rt.block_on(async {
        let mut l =
            strata_pipe::launcher::Launcher::connect(std::slice::from_ref(&addr), &creds, Duration::from_secs(10))
                .await
                .unwrap();
        l.configure(&plan, Some(root)).await.unwrap();
        l
    });
    (w, addr, plan, launcher, rt)
}

fn health_state(addr: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c =
            strata_pipe::worker::client(addr, &strata_pipe::security::Credentials::token(Some(TOKEN.into()))).unwrap();
        c.health(strata_pipe::proto::HealthRequest {}).await.unwrap().into_inner().state
    })
}

/// Everything a peer, a launcher or a stranger can send wrong gets a clear status, and the
/// worker is still serving afterwards: a 10 MiB message; a tensor header claiming 4 GiB; a
/// shape that does not fit the stage's chunks; pieces out of order; tensors piling up
/// unclaimed; Configure streams with a bad spec (rank, peers, slots, out-of-range node ids), an
/// oversized or mis-announced graph; Checkpoint and Restore outside the checkpoint root or with a
/// non-ASCII checksum; 10 MiB of raw garbage on the TCP port.
#[test]
// Long on purpose: one worker takes each malformed input in turn and must still serve between them; separate tests would each start their own worker.
fn malformed_input_is_refused_and_the_worker_keeps_serving() {
    use strata_pipe::proto::{CheckpointRequest, ConfigPiece, RestoreRequest, TensorKind, TensorPiece};
    use tokio_stream::iter;
    let root = tempfile::tempdir().unwrap();
    let (mut w, addr, plan, _launcher, _rt) = configured_worker(root.path(), &[]);
    assert_eq!(health_state(&addr), "serving");
    let creds = strata_pipe::security::Credentials::token(Some(TOKEN.into()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut garbage = vec![0u8; 10 << 20];
    let mut x = 0x9e3779b97f4a7c15u64;
    for b in garbage.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let rows0 = (plan.offsets[1] - plan.offsets[0]) as i64;
    rt.block_on(async {
        let mut c = strata_pipe::worker::client(&addr, &creds).unwrap();
        let piece = |name: &str, shape: Vec<i64>, total: u64, offset: u64, data: Vec<u8>| TensorPiece {
            name: name.into(),
            kind: TensorKind::Activation as i32,
            epoch: 0,
            address: Some(strata_pipe::proto::tensor_piece::Address::Chunk(0)),
            shape,
            total_bytes: total,
            offset,
            data: data.into(),
            value_type: 0,
        };
        let big = c
            .push_tensor(iter(vec![piece("x", vec![(10 << 20) / 4], 10 << 20, 0, garbage.clone())]))
            .await
            .unwrap_err();
        eprintln!("10 MiB message: {big}");
        assert!(matches!(big.code(), tonic::Code::ResourceExhausted | tonic::Code::OutOfRange), "{big}");
        let forged = c
            .push_tensor(iter(vec![piece("x", vec![rows0, 1 << 28], (rows0 as u64) << 30, 0, vec![1, 2, 3, 4])]))
            .await
            .unwrap_err();
        eprintln!("forged header: {forged}");
        assert_eq!(forged.code(), tonic::Code::InvalidArgument, "{forged}");
        assert!(forged.message().contains("exceeds this worker's limit"), "{forged}");
        let wrong_rows = c
            .push_tensor(iter(vec![piece(
                "x",
                vec![rows0 + 1, 64],
                ((rows0 + 1) * 256) as u64,
                0,
                vec![0; ((rows0 + 1) * 256) as usize],
            )]))
            .await
            .unwrap_err();
        eprintln!("wrong rows: {wrong_rows}");
        assert_eq!(wrong_rows.code(), tonic::Code::InvalidArgument, "{wrong_rows}");
        let disorder = c
            .push_tensor(iter(vec![piece("x", vec![rows0, 4], (rows0 * 16) as u64, 8, vec![0; 8])]))
            .await
            .unwrap_err();
        eprintln!("out of order: {disorder}");
        assert_eq!(disorder.code(), tonic::Code::InvalidArgument);
        // A 650 kB name is refused without being echoed back.
        let long = "n".repeat(650_000);
        let named = c
            .push_tensor(iter(vec![piece(&long, vec![rows0, 4], (rows0 * 16) as u64, 0, vec![0; 8])]))
            .await
            .unwrap_err();
        assert_eq!(
            named.code(),
            tonic::Code::InvalidArgument,
            "{}",
            &named.message()[..200.min(named.message().len())]
        );
        assert!(named.message().len() < 200 && named.message().contains("650000 bytes"), "{}", named.message().len());
        // Valid tensors nobody claims: refused once the unclaimed budget is spent.
        let bytes = (rows0 * 64 * 4) as usize;
        let mut refused = None;
        for i in 0..1000 {
            if let Err(e) = c
                .push_tensor(iter(vec![piece(&format!("pile{i}"), vec![rows0, 64], bytes as u64, 0, vec![0; bytes])]))
                .await
            {
                refused = Some((i, e));
                break;
            }
        }
        let (accepted, e) = refused.expect("1000 unclaimed tensors accepted");
        eprintln!("unclaimed: refused after {accepted}: {e}");
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");

        // Configure: bad specs, sizes and streams.
        let npz = strata_pipe::StageData::for_stage(&plan.dataset, &plan.specs[0]).to_npz().to_bytes();
        let mut spec = serde_json::to_value(&plan.specs[0]).unwrap();
        // As the launcher sends it: the split's ids travel in the npz.
        for k in ["train", "val", "test"] {
            spec[k] = serde_json::json!([]);
        }
        let configure = |spec: serde_json::Value, rank: u32, peers: Vec<String>, announced: u64, npz: Vec<u8>| {
            let mut c = c.clone();
            async move {
                let first = ConfigPiece { spec_json: spec.to_string(), rank, peers, npz, graph_bytes: announced };
                c.configure(iter(vec![first])).await.unwrap_err()
            }
        };
        let me = vec![addr.clone()];
        let n = npz.len() as u64;
        let mut cases: Vec<(&str, tonic::Status)> = Vec::new();
        cases.push(("rank beyond peers", configure(spec.clone(), 3, me.clone(), n, npz.clone()).await));
        cases.push((
            "peer not host:port",
            configure(spec.clone(), 0, vec!["no port here".into()], n, npz.clone()).await,
        ));
        let mut s = spec.clone();
        s["first"] = 3.into();
        s["last"] = 1.into();
        cases.push(("slots reversed", configure(s, 0, me.clone(), n, npz.clone()).await));
        let mut s = spec.clone();
        s["train"] = serde_json::json!([0]);
        cases.push(("split ids in the spec", configure(s, 0, me.clone(), n, npz.clone()).await));
        let mut far = strata_pipe::StageData::for_stage(&plan.dataset, &plan.specs[0]);
        far.split[0] = vec![1_000_000_000];
        let far = far.to_npz().to_bytes();
        cases.push(("train id 1e9", configure(spec.clone(), 0, me.clone(), far.len() as u64, far).await));
        let mut s = spec.clone();
        s["chunk_offsets"] = serde_json::json!([0, 5]);
        cases.push(("chunk offsets", configure(s, 0, me.clone(), n, npz.clone()).await));
        cases
            .push(("graph over --max-graph-bytes", configure(spec.clone(), 0, me.clone(), 1 << 50, npz.clone()).await));
        cases.push(("more bytes than announced", configure(spec.clone(), 0, me.clone(), 10, npz.clone()).await));
        cases.push(("fewer bytes than announced", configure(spec.clone(), 0, me.clone(), n + 1, npz.clone()).await));
        let whole = strata_graph::formats::graph_npz(&plan.dataset).to_bytes();
        cases.push((
            "a whole-graph npz, not a stage's share",
            configure(spec.clone(), 0, me.clone(), whole.len() as u64, whole).await,
        ));
        let mut without = strata_pipe::StageData::for_stage(&plan.dataset, &plan.specs[0]);
        without.features = strata_graph::Features::dense(0, 1, vec![]);
        without.feature_rows = 0..0;
        let without = without.to_npz().to_bytes();
        cases.push((
            "features withheld from the input stage",
            configure(spec.clone(), 0, me.clone(), without.len() as u64, without).await,
        ));
        cases.push(("npz garbage", configure(spec.clone(), 0, me.clone(), 4096, garbage[..4096].to_vec()).await));
        // Uploads in flight share one budget: while a stream that announced nearly all of it is
        // open, a second one is refused at its first piece; once the first is gone, no more.
        let max = strata_pipe::worker::DEFAULT_MAX_GRAPH_BYTES;
        let hold = || {
            let first = ConfigPiece {
                spec_json: spec.to_string(),
                rank: 0,
                peers: me.clone(),
                npz: vec![],
                graph_bytes: max - 10,
            };
            let mut c1 = c.clone();
            tokio::spawn(async move {
                use tokio_stream::StreamExt;
                c1.configure(iter(vec![first]).chain(tokio_stream::pending())).await
            })
        };
        let mut held = hold();
        // Deadlines, not counts: under a loaded test run the worker may take seconds to read the
        // first stream's piece. A probe in flight when the holding stream's first piece arrives
        // makes that stream the refused one: it is opened again until it holds the budget.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut second = None;
        while std::time::Instant::now() < deadline {
            if held.is_finished() {
                held = hold();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            let e = configure(spec.clone(), 0, me.clone(), 4096, garbage[..4096].to_vec()).await;
            if e.message().contains("uploads in flight") {
                second = Some(e);
                break;
            }
        }
        let second = second.expect("a second upload past the shared budget was not refused within 60 s");
        assert_eq!(second.code(), tonic::Code::ResourceExhausted, "{second}");
        assert!(second.message().contains("--max-graph-bytes"), "{second}");
        held.abort();
        let _ = held.await;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut freed = false;
        while std::time::Instant::now() < deadline {
            let e = configure(spec.clone(), 0, me.clone(), 4096, garbage[..4096].to_vec()).await;
            if !e.message().contains("uploads in flight") {
                freed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(freed, "the budget of an upload whose client went away was not given back within 60 s");
        cases.push(("a second upload past the shared budget", second));
        for (what, e) in &cases {
            eprintln!("configure, {what}: {e}");
            assert!(matches!(e.code(), tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted), "{what}: {e}");
        }
    });
    // Configure again, as a recovering launcher would (this also drops the unclaimed pile).
    let rt2 = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let launcher = rt2.block_on(async {
        let mut l =
            strata_pipe::launcher::Launcher::connect(std::slice::from_ref(&addr), &creds, Duration::from_secs(10))
                .await
                .unwrap();
        l.configure(&plan, Some(root.path())).await.unwrap();
        l
    });
    rt.block_on(async {
        let mut c = strata_pipe::worker::client(&addr, &creds).unwrap();
        let outside = std::env::temp_dir().join("strata-elsewhere");
        let escape = root.path().join("..").join("escape");
        for dir in [outside.display().to_string(), escape.display().to_string()] {
            let e = c.checkpoint(CheckpointRequest { dir: dir.clone(), epoch: 1 }).await.unwrap_err();
            eprintln!("checkpoint to {dir}: {e}");
            assert!(e.message().contains("outside this run's checkpoint directory"), "{e}");
            let e = c
                .restore(RestoreRequest { path: format!("{dir}/rank0.safetensors"), sha256: "00".into() })
                .await
                .unwrap_err();
            assert!(e.message().contains("outside this run's checkpoint directory"), "{e}");
        }
        assert!(!outside.exists() && !root.path().join("..").join("escape").exists());
        // A real checkpoint, then a Restore of it with a non-ASCII checksum: refused, no panic.
        let good = c
            .checkpoint(CheckpointRequest { dir: root.path().join("epoch-000001").display().to_string(), epoch: 1 })
            .await
            .unwrap()
            .into_inner();
        let path = root.path().join("epoch-000001").join(&good.file).display().to_string();
        let e = c.restore(RestoreRequest { path: path.clone(), sha256: "ééééééééééééé".into() }).await.unwrap_err();
        eprintln!("non-ASCII checksum: {e}");
        assert!(e.message().contains("checksum"), "{e}");
        c.restore(RestoreRequest { path, sha256: good.sha256 }).await.unwrap();
        // LoadParameters: an unknown name, a wrong shape, a missing variable, an activation sent
        // as a parameter; Outputs before any inference kept one. Refused, nothing set.
        let mut params = launcher_params(&mut c).await;
        let loader = c.clone();
        let send = |named: Vec<(String, tch::Tensor)>, kind: TensorKind| {
            let mut c = loader.clone();
            async move { c.load_parameters(iter(strata_pipe::wire::named_pieces(named, kind, 0))).await }
        };
        let (k0, t0) = (params[0].0.clone(), params[0].1.shallow_clone());
        let mut unknown: Vec<_> = params.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
        unknown.push(("slot999.weight".into(), tch::Tensor::zeros([2], tch::kind::FLOAT_CPU)));
        let mut reshaped: Vec<_> = params.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
        reshaped[0].1 = tch::Tensor::zeros([t0.numel() as i64 + 1], tch::kind::FLOAT_CPU);
        let missing: Vec<_> = params.iter().skip(1).map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
        let as_activation: Vec<_> = params.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
        for (what, e) in [
            ("unknown name", send(unknown, TensorKind::Parameter).await.unwrap_err()),
            ("wrong shape", send(reshaped, TensorKind::Parameter).await.unwrap_err()),
            ("missing variable", send(missing, TensorKind::Parameter).await.unwrap_err()),
            ("activation", send(as_activation, TensorKind::Activation).await.unwrap_err()),
        ] {
            eprintln!("load parameters, {what}: {e}");
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{what}: {e}");
        }
        let after = launcher_params(&mut c).await;
        assert!(
            after.iter().zip(&params).all(|(a, b)| a.0 == b.0 && a.1.equal(&b.1)),
            "a refused load changed weights"
        );
        // The same weights, well formed, load.
        send(std::mem::take(&mut params), TensorKind::Parameter).await.unwrap();
        let e = c.outputs(strata_pipe::proto::OutputsRequest {}).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
        assert!(k0.starts_with("slot"), "{k0}");
    });
    drop(launcher);
    // Raw bytes that are not HTTP/2 at all.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let _ = s.write_all(&garbage);
    }
    assert_eq!(health_state(&addr), "serving", "worker stopped serving after malformed input");
    assert!(w.try_wait().unwrap().is_none(), "worker exited");
    let _ = w.kill();
    let _ = w.wait();
}

/// The worker's parameters, as the launcher gathers them (Parameters).
async fn launcher_params(c: &mut strata_pipe::worker::Client) -> Vec<(String, tch::Tensor)> {
    let mut stream = c.parameters(strata_pipe::proto::ParametersRequest {}).await.unwrap().into_inner();
    let mut out: Vec<(String, strata_pipe::Assembler)> = Vec::new();
    while let Some(piece) = stream.message().await.unwrap() {
        if out.last().is_none_or(|(n, _)| *n != piece.name) {
            out.push((piece.name.clone(), strata_pipe::Assembler::new(1 << 30)));
        }
        out.last_mut().unwrap().1.push(piece).unwrap();
    }
    out.into_iter().map(|(n, a)| (n, a.finish_tensor().unwrap().1)).collect()
}

/// A stage that panics mid-epoch does not go on answering "serving": the caller gets an error,
/// Health reports the worker failed with the panic's message, and the launcher names it.
#[test]
fn a_panicking_stage_reports_itself_failed_and_the_launcher_names_it() {
    let root = tempfile::tempdir().unwrap();
    let (mut w, addr, _plan, launcher, rt) = configured_worker(root.path(), &[("STRATA_FAILPOINT", "epoch-panic")]);
    let e = rt
        .block_on(launcher.epoch(strata_pipe::proto::EpochRequest {
            epoch: 0,
            order: vec![0, 1],
            train: true,
            ..Default::default()
        }))
        .unwrap_err()
        .to_string();
    eprintln!("launcher: {e}");
    assert!(e.contains("worker 0") && e.contains(&addr) && e.contains("failed: fail point epoch-panic"), "{e}");
    assert_eq!(health_state(&addr), "failed: fail point epoch-panic");
    assert!(w.try_wait().unwrap().is_none(), "worker exited");
    let _ = w.kill();
    let _ = w.wait();
}

/// The standard gRPC health protocol (`grpc.health.v1.Health/Check`, as `grpc_health_probe`
/// and Kubernetes' `grpc:` probes call it), on the plaintext `--health-addr` and on the main
/// port without a token: the server is SERVING at once, `strata.v1.Worker` NOT_SERVING until a
/// launcher configures the worker, then SERVING.
#[test]
fn standard_grpc_health_checks_follow_the_workers_state() {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (mut w, addr) =
        start_worker(&["--listen", "127.0.0.1:0", "--health-addr", &port.to_string()], &[("STRATA_TOKEN", TOKEN)]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let check = |at: String, service: &str| {
        rt.block_on(async {
            let channel =
                tonic::transport::Channel::from_shared(format!("http://{at}")).unwrap().connect().await.unwrap();
            let r = HealthClient::new(channel).check(HealthCheckRequest { service: service.into() }).await.unwrap();
            r.into_inner().status()
        })
    };
    let probe = format!("127.0.0.1:{port}");
    // The reporter follows the state within a fraction of a second.
    let settle = || std::thread::sleep(Duration::from_millis(600));
    settle();
    for at in [probe.clone(), addr.clone()] {
        assert_eq!(check(at.clone(), ""), ServingStatus::Serving, "{at}");
        assert_eq!(check(at.clone(), "strata.v1.Worker"), ServingStatus::NotServing, "{at}");
    }
    let data = strata_graph::load("karate", None).unwrap();
    let split = strata_graph::Split::random_stratified(&data.labels, 0.2, 0.2, 0);
    let plan = strata_pipe::PipelinePlan::new(&data, &split, &strata_pipe::PipelineConfig::gcnii(2, 1));
    let creds = strata_pipe::security::Credentials::token(Some(TOKEN.into()));
    rt.block_on(async {
        let mut l =
            strata_pipe::launcher::Launcher::connect(std::slice::from_ref(&addr), &creds, Duration::from_secs(10))
                .await
                .unwrap();
        l.configure(&plan, None).await.unwrap();
    });
    settle();
    for at in [probe, addr.clone()] {
        assert_eq!(check(at.clone(), "strata.v1.Worker"), ServingStatus::Serving, "{at}");
    }
    // Server reflection on the main port (what `grpcurl list` asks): the worker's and the health
    // service are listed, without the token.
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let listed: Vec<String> = rt.block_on(async {
        let channel =
            tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let ask = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([ask]))
            .await
            .unwrap()
            .into_inner();
        match replies.message().await.unwrap().and_then(|r| r.message_response) {
            Some(MessageResponse::ListServicesResponse(l)) => l.service.into_iter().map(|s| s.name).collect(),
            other => panic!("reflection answered {other:?}"),
        }
    });
    for want in ["strata.v1.Worker", "grpc.health.v1.Health"] {
        assert!(listed.iter().any(|s| s == want), "reflection lists {listed:?}, not {want}");
    }
    let _ = w.kill();
    let _ = w.wait();
}

/// A default `strata launch` (workers it starts itself) authenticates every call with a fresh
/// token that travels in the environment, not on the command line: a local process without it
/// is refused. `kill -9` of the launcher takes its workers with it (parent-death signal): none
/// is alive 10 s later.
#[test]
fn a_default_launch_is_authenticated_and_its_workers_die_with_it() {
    let mut launcher = Command::new(strata_bin())
        .args(["launch", "--dataset", "karate", "--layers", "4", "--stages", "2", "--epochs", "1000000"])
        .env_remove("STRATA_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(launcher.stderr.take().unwrap()).lines();
    let (mut pids, mut addrs) = (Vec::new(), Vec::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(pid) = line.strip_prefix("strata launch: worker ").and_then(|r| r.split_once(" pid ")) {
            pids.push(pid.1.trim().parse::<i32>().unwrap());
        }
        if let Some((_, w)) = line.split_once(" · workers ") {
            addrs = w.split(", ").map(|a| a.trim().to_string()).collect();
            break;
        }
    }
    // Keep reading (and discarding) the launcher's stderr so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    assert_eq!((pids.len(), addrs.len()), (2, 2), "pids {pids:?}, workers {addrs:?}");
    for (pid, addr) in pids.iter().zip(&addrs) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let argv = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(!argv.contains("token"), "the token is on worker {pid}'s command line: {argv}");
        let err = health(addr, &strata_pipe::security::Credentials::token(None)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{addr}: {err}");
    }
    std::thread::sleep(Duration::from_secs(2)); // training
    let alive = |pid: i32| std::path::Path::new(&format!("/proc/{pid}")).exists() && !zombie(pid);
    assert!(pids.iter().all(|&p| alive(p)), "a worker died before the launcher");
    launcher.kill().unwrap(); // SIGKILL: no cleanup of its own runs
    launcher.wait().unwrap();
    let t = std::time::Instant::now();
    while pids.iter().any(|&p| alive(p)) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    for &p in &left {
        let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
    }
    assert!(left.is_empty(), "workers {left:?} outlived their launcher by 10 s");
    eprintln!("both workers gone {:?} after the launcher's SIGKILL", t.elapsed());
}

/// Whether process `pid` has exited but not been reaped (a zombie is not running).
fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}
