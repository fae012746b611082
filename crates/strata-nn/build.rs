include!("../../build-support/torch_link.rs");
fn main() {
    link_libtorch();
    compile_memory_shim();
}

/// `csrc/memory.cpp` (allocator statistics for `strata_nn::memory`) and `csrc/spmm.cpp` (the
/// sparse product with a cached transpose, `strata_nn::ops::spmm`) and `csrc/gcnii.cpp` (the fused
/// GCNII layer, `strata_nn::ops::gcn2_layer`) and `csrc/mask.cpp` (dropout's masked scale,
/// `strata_nn::ops::masked_scale`), against the same libtorch
/// headers tch builds with.
fn compile_memory_shim() {
    println!("cargo:rerun-if-changed=csrc/memory.cpp");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports DEP_TCH_LIBTORCH_LIB");
    let include = std::path::Path::new(&lib).parent().expect("libtorch lib dir has a parent").join("include");
    println!("cargo:rerun-if-changed=csrc/spmm.cpp");
    println!("cargo:rerun-if-changed=csrc/gcnii.cpp");
    println!("cargo:rerun-if-changed=csrc/mask.cpp");
    cc::Build::new()
        .cpp(true)
        .file("csrc/memory.cpp")
        .file("csrc/spmm.cpp")
        .file("csrc/gcnii.cpp")
        .file("csrc/mask.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .warnings(false)
        .compile("strata_memory");
}
