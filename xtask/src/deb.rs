//! `cargo xtask deb`: the Debian package, built by cargo-deb from
//! `[package.metadata.deb]` in pop-userspace/Cargo.toml. Man pages and completions are
//! generated from the freshly built binary first, so they match its `--help`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// Builds the package from the release binary already in target/release; returns the
/// path of the .deb.
pub fn build(root: &Path) -> Result<PathBuf> {
    let pop = root.join("target/release/pop");
    let pkg = root.join("target/pkg");
    let _ = fs::remove_dir_all(&pkg);
    let man = pkg.join("man");
    run(Command::new(&pop).arg("manpages").arg(&man))?;
    for page in fs::read_dir(&man)?.flatten() {
        run(Command::new("gzip").args(["-9n"]).arg(page.path()))?;
    }
    let completions = pkg.join("completions");
    fs::create_dir_all(&completions)?;
    for (shell, file) in [("bash", "pop"), ("zsh", "_pop"), ("fish", "pop.fish")] {
        let out = Command::new(&pop).args(["completions", shell]).output()?;
        if !out.status.success() {
            bail!("pop completions {shell} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        fs::write(completions.join(file), out.stdout)?;
    }
    let out_dir = root.join("target/debian");
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["deb", "-p", "pop-userspace", "--no-build", "--output"])
        .arg(&out_dir)
        .output()
        .context("running cargo deb (cargo xtask setup installs it)")?;
    if !out.status.success() {
        bail!("cargo deb failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    // cargo-deb prints the package's path last.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = stdout.lines().rev().find(|l| l.trim_end().ends_with(".deb")).context("cargo deb printed no .deb path")?;
    Ok(PathBuf::from(deb.trim()))
}

fn run(cmd: &mut Command) -> Result<()> {
    let s = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !s.success() {
        bail!("{cmd:?} failed ({s})");
    }
    Ok(())
}
