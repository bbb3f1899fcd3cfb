//! Builds the XDP object from `pop-ebpf` so the `pop` binary can embed it.
//!
//! Why not aya-build: it expects the eBPF crate to be a member of the host workspace,
//! which makes `cargo build --workspace` try to compile a `no_std` BPF crate for x86.
//! Keeping `pop-ebpf` in its own workspace and driving it here with nightly is a few
//! lines and keeps `cargo build` / `cargo test` on stable working once `cargo xtask
//! setup` has installed rust-src and bpf-linker.

use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap();
    let ebpf_dir = root.join("pop-ebpf");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    for path in ["pop-ebpf/src", "pop-ebpf/Cargo.toml", "pop-ebpf/Cargo.lock", "pop-common/src"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    let target_dir = out_dir.join("ebpf-target");
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--release", "--locked"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--manifest-path")
        .arg(ebpf_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // BTF lets the kernel and bpftool describe maps; debuginfo is needed for it.
        // bpf-linker's default --bpf-expand-memcpy-in-order leaves every memset (each
        // zeroed buffer or struct) as a call to a byte-at-a-time loop subprogram; LLVM's
        // generic expansion writes them inline, word-sized where aligned.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=2\x1f-Clink-arg=--btf\x1f-Clink-arg=--disable-expand-memcpy-in-order");
    // Whatever the host build set up (stable rustc, wrappers, flags) must not leak in.
    for key in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER", "RUSTC_WRAPPER", "RUSTFLAGS", "CARGO_TARGET_DIR", "RUSTUP_TOOLCHAIN", "CARGO"] {
        cmd.env_remove(key);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("failed to run rustup to build pop-ebpf ({e}); run `cargo xtask setup` first"));
    if !status.success() {
        panic!(
            "building pop-ebpf failed ({status}). If nightly's rust-src or bpf-linker is \
             missing, `cargo xtask setup` installs them."
        );
    }
    for (bin, object) in [("pop", "pop.bpf.o"), ("pop-decap", "pop-decap.bpf.o")] {
        let built = target_dir.join("bpfel-unknown-none/release").join(bin);
        std::fs::copy(&built, out_dir.join(object)).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
    }
    // Which data path this binary attaches, for `pop --version` and `pop status`.
    let object = std::fs::read(out_dir.join("pop.bpf.o")).expect("reading pop.bpf.o");
    let digest: String =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&object)).iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=POP_XDP_SHA256={digest}");
    println!("cargo:rustc-env=POP_XDP_SHORT={}", &digest[..12]);
}
