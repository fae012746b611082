// Generates the gRPC code from proto/strata/v1/*.proto (protoc is not installed on the build
// machines, so the vendored binary is used), and links libtorch for this crate's tests.
include!("../../build-support/torch_link.rs");

fn main() {
    link_libtorch();
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc");
    std::env::set_var("PROTOC", protoc);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = root.join("strata/v1/worker.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    tonic_prost_build::configure().compile_protos(&[file], &[root]).expect("compiling worker.proto");
}
