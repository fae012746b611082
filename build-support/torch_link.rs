// Shared by the build scripts of every crate whose binaries or tests link libtorch
// (`include!`d, because link arguments printed by one crate's build.rs reach only that crate).
//
// - rpath to the torch lib dir, so binaries run without LD_LIBRARY_PATH;
// - force-link libtorch_cuda / libc10_cuda when present: nothing references them by symbol,
//   so `--as-needed` would drop them and CUDA would silently be unavailable.
fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-lc10_cuda,--as-needed");
    }
}
