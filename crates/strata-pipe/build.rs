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
    // A piece's payload is `bytes::Bytes`: the sender slices the tensor's own memory into pieces
    // and the receiver's decoder hands out slices of its buffer, neither copying the payload.
    // The encoded descriptors, for gRPC server reflection (`grpcurl` lists and calls the worker).
    let descriptors = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("strata_v1.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(descriptors)
        .bytes(".strata.v1.TensorPiece.data")
        .compile_protos(&[file], &[root])
        .expect("compiling worker.proto");
}
