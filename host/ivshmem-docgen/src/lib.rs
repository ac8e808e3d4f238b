//! Man pages and shell completions of the project's commands, rendered
//! from the same clap definitions the binaries parse with, so that they
//! cannot drift: `ivshmem(1)`, `ivshmem-server(8)`, `ivshmem-client(1)`,
//! `ivshmem-vmrun(1)`; completions for bash and zsh. `ivshmem(4)` is
//! written by hand (`docs/man/ivshmem.4`) and checked against the UAPI
//! header by this crate's tests.

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A man page of one command.
#[derive(Debug, Clone)]
pub struct Page {
    /// The command's name, the page's title.
    pub name: &'static str,
    /// The manual section: "1" or "8".
    pub section: &'static str,
    /// The manual's name in the page's header.
    pub manual: &'static str,
    /// The command, as its binary defines it.
    pub command: clap::Command,
    /// Other pages, as `name(section)`.
    pub see_also: &'static [&'static str],
}

/// Every generated page.
pub fn pages() -> Vec<Page> {
    vec![
        Page {
            name: "ivshmem",
            section: "1",
            manual: "User Commands",
            command: ivshmem_cli::Cli::command(),
            see_also: &[
                "ivshmem(4)",
                "ivshmem-client(1)",
                "ivshmem-server(8)",
                "hexdump(1)",
            ],
        },
        Page {
            name: "ivshmem-server",
            section: "8",
            manual: "System Administration",
            command: ivshmem_server::cli::Args::command(),
            see_also: &[
                "ivshmem-client(1)",
                "ivshmem(1)",
                "ivshmem(4)",
                "qemu-system-x86_64(1)",
            ],
        },
        Page {
            name: "ivshmem-client",
            section: "1",
            manual: "User Commands",
            command: ivshmem_client::cli::Cli::command(),
            see_also: &["ivshmem-server(8)", "ivshmem(1)", "ivshmem(4)"],
        },
        Page {
            name: "ivshmem-vmrun",
            section: "1",
            manual: "User Commands",
            command: ivshmem_vmrun::cli::Cli::command(),
            see_also: &["ivshmem(1)", "ivshmem-server(8)", "qemu-system-x86_64(1)"],
        },
    ]
}

/// A rendered section without its `.SH` line (and without the string
/// definitions every rendering starts with, which the title already
/// made), to nest it under another heading.
fn body(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    render(&mut v)?;
    let text = String::from_utf8_lossy(&v);
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(".SH ") && !l.starts_with(".ie ") && !l.starts_with(".el "))
        .collect();
    Ok(format!("{}\n", kept.join("\n")).into_bytes())
}

fn has_arguments(cmd: &clap::Command) -> bool {
    cmd.get_arguments().any(|a| !a.is_hide_set())
}

/// The command, built as the binary sees it, without the `help`
/// subcommand (every command documents `--help` instead).
pub fn built(cmd: &clap::Command) -> clap::Command {
    let mut cmd = cmd.clone().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Renders a page: NAME, SYNOPSIS, DESCRIPTION, OPTIONS, then one
/// subsection per subcommand with its synopsis, description and options,
/// NOTES (the after-help text), VERSION and SEE ALSO.
pub fn render(page: &Page) -> io::Result<Vec<u8>> {
    let cmd = built(&page.command);
    let man = Man::new(cmd.clone())
        .section(page.section)
        .source(format!("ivshmem-rs {}", env!("CARGO_PKG_VERSION")))
        .manual(page.manual);
    let mut w = Vec::new();
    man.render_title(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    man.render_description_section(&mut w)?;
    if has_arguments(&cmd) {
        man.render_options_section(&mut w)?;
    }
    let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    if !subs.is_empty() {
        writeln!(w, ".SH COMMANDS")?;
        for sub in subs {
            writeln!(w, ".SS \"{} {}\"", page.name, sub.get_name())?;
            let m = Man::new(sub.clone());
            w.extend(body(|v| m.render_synopsis_section(v))?);
            writeln!(w, ".PP")?;
            w.extend(body(|v| m.render_description_section(v))?);
            if has_arguments(sub) {
                writeln!(w, ".PP\nOptions and arguments:")?;
                w.extend(body(|v| m.render_options_section(v))?);
            }
        }
    }
    if cmd.get_after_long_help().is_some() || cmd.get_after_help().is_some() {
        writeln!(w, ".SH NOTES")?;
        w.extend(body(|v| man.render_extra_section(v))?);
    }
    man.render_version_section(&mut w)?;
    writeln!(w, ".SH \"SEE ALSO\"")?;
    let refs: Vec<String> = page
        .see_also
        .iter()
        .map(|r| {
            let (name, sec) = r.split_once('(').unwrap_or((r, ")"));
            format!(".BR {} ({}", name.replace('-', "\\-"), sec)
        })
        .collect();
    writeln!(w, "{}", refs.join(" ,\n"))?;
    Ok(w)
}

/// The completion script of `shell` for a command.
pub fn completion(page: &Page, shell: Shell) -> Vec<u8> {
    let mut cmd = built(&page.command);
    let mut v = Vec::new();
    clap_complete::generate(shell, &mut cmd, page.name, &mut v);
    v
}

/// Where a file goes under the output directory, as installed under
/// `/usr/share`: `man/manS/NAME.S`, `completions/bash/NAME`,
/// `completions/zsh/_NAME`.
pub fn man_path(page: &Page) -> PathBuf {
    PathBuf::from(format!(
        "man/man{s}/{n}.{s}",
        s = page.section,
        n = page.name
    ))
}

/// See [`man_path`].
pub fn completion_path(page: &Page, shell: Shell) -> PathBuf {
    match shell {
        Shell::Zsh => PathBuf::from(format!("completions/zsh/_{}", page.name)),
        other => PathBuf::from(format!("completions/{other}/{}", page.name)),
    }
}

/// Writes every page and completion under `out`; returns what it wrote.
pub fn generate(out: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut put = |rel: PathBuf, bytes: Vec<u8>| -> io::Result<()> {
        let p = out.join(rel);
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&p, bytes)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
        written.push(p);
        Ok(())
    };
    for page in pages() {
        put(man_path(&page), render(&page)?)?;
        for shell in [Shell::Bash, Shell::Zsh] {
            put(completion_path(&page, shell), completion(&page, shell))?;
        }
    }
    Ok(written)
}
