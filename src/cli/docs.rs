//! `rbuild completion SHELL` and `rbuild man`: generated from the clap definitions
//! (clap_complete, clap_mangen), so they never drift from the flags. docs/rbuild.1 is this
//! output, kept current by tests/cli_docs.rs.

use super::args::Cli;
use anyhow::{Context as _, Result};
use clap::CommandFactory;

pub(super) fn completion(shell: clap_complete::Shell) -> Result<i32> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "rbuild", &mut std::io::stdout().lock());
    Ok(0)
}

/// The man page: the top-level page, then one section per subcommand.
pub(super) fn man() -> Result<i32> {
    let mut out = std::io::stdout().lock();
    write_man(&mut out).context("writing the man page")?;
    Ok(0)
}

pub(super) fn write_man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let cmd = Cli::command();
    clap_mangen::Man::new(cmd.clone()).render(out)?;
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() {
            continue;
        }
        let name = format!("rbuild-{}", sub.get_name());
        let sub = sub.clone().display_name(name.clone()).bin_name(name);
        let man = clap_mangen::Man::new(sub);
        man.render_title(out)?;
        man.render_name_section(out)?;
        man.render_synopsis_section(out)?;
        man.render_description_section(out)?;
        man.render_options_section(out)?;
    }
    Ok(())
}
