//! Man pages and shell completions, generated from the clap definition of the CLI so
//! they say exactly what `--help` says.

use std::{fs, io::Write, path::Path};

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<()> {
    clap_complete::generate(shell, &mut Cli::command(), "pop", out);
    Ok(())
}

/// Writes `pop.1` and one `pop-SUBCOMMAND.1` per visible subcommand into `dir` (created
/// if missing); returns how many pages it wrote.
pub fn man_pages(dir: &Path) -> Result<usize> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command();
    let mut written = 0;
    let mut page = |cmd: clap::Command, name: &str| -> Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).title(name.to_uppercase()).render(&mut buf)?;
        fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        written += 1;
        Ok(())
    };
    page(cmd.clone(), "pop")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("pop-{}", sub.get_name());
        // The subcommand's page names itself as `pop-NAME` with pop's version.
        let sub = sub.clone().name(name.clone()).version(cmd.get_version().unwrap_or_default().to_string());
        page(sub, &name)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_gets_a_man_page_and_completions_name_them() {
        let dir = std::env::temp_dir().join(format!("pop-man-{}", std::process::id()));
        let n = man_pages(&dir).unwrap();
        let cmd = Cli::command();
        let visible: Vec<_> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| s.get_name().to_string()).collect();
        assert_eq!(n, visible.len() + 1);
        let run = fs::read_to_string(dir.join("pop-run.1")).unwrap();
        assert!(run.contains(".TH POP-RUN 1") && run.contains("controller"), "{run}");
        let top = fs::read_to_string(dir.join("pop.1")).unwrap();
        assert!(top.contains("pop\\-reload") || top.contains("reload"), "{top}");
        assert!(!dir.join("pop-manpages.1").exists(), "hidden commands get no page");
        fs::remove_dir_all(&dir).unwrap();
        let mut bash = Vec::new();
        completions(clap_complete::Shell::Bash, &mut bash).unwrap();
        let bash = String::from_utf8(bash).unwrap();
        for sub in &visible {
            assert!(bash.contains(sub.as_str()), "bash completion lacks {sub}");
        }
    }
}
