// Links libNerveModel.so from the Swift build of this checkout (or NERVE_LIBRARY_DIR), and
// records its folder as the executable's run path so it runs without LD_LIBRARY_PATH.
use std::env;
use std::path::PathBuf;

fn main() {
    let dir = match env::var("NERVE_LIBRARY_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../.build/release"),
    };
    let dir = dir.canonicalize().unwrap_or_else(|_| {
        panic!("{} not found: run `swift build -c release` in the Nerve checkout first", dir.display())
    });
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib=NerveModel");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:rerun-if-env-changed=NERVE_LIBRARY_DIR");
}
