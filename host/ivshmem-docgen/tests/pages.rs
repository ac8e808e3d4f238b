//! The man pages and completions cover every command, subcommand and
//! option as the binaries define them; `ivshmem(4)` covers the UAPI
//! header; every page formats without warnings (with groff: without it
//! that test is reported as ignored, with the reason; see `needs`).

use clap_complete::Shell;
use ivshmem_docgen::{Page, built, completion, completion_path, generate, man_path, pages, render};
use std::path::{Path, PathBuf};

fn main() {
    let args = needs::Arguments::from_args();
    let trials = vec![
        needs::test(
            "every_page_shows_every_subcommand_and_argument",
            every_page_shows_every_subcommand_and_argument,
        ),
        needs::test(
            "ivshmem_1_documents_the_interface",
            ivshmem_1_documents_the_interface,
        ),
        needs::test(
            "completions_offer_every_subcommand_and_long_option",
            completions_offer_every_subcommand_and_long_option,
        ),
        needs::test(
            "generate_writes_the_installed_layout",
            generate_writes_the_installed_layout,
        ),
        needs::needs(
            &args,
            "pages_format_without_warnings",
            needs::program("groff").map_err(|e| format!("{e} to format the pages with")),
            pages_format_without_warnings,
        ),
        needs::test(
            "ivshmem_4_matches_the_uapi_header",
            ivshmem_4_matches_the_uapi_header,
        ),
    ];
    needs::run(&args, trials);
}

fn top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// roff's escapes of a hyphen and an apostrophe, as clap_mangen writes
/// them.
fn esc(s: &str) -> String {
    s.replace('-', "\\-").replace('\'', "\\*(Aq")
}

/// The part of a page from `.SS "NAME SUB"` to the next heading, or the
/// top of the page up to COMMANDS for the command itself.
fn section_of<'a>(text: &'a str, page: &Page, sub: Option<&str>) -> &'a str {
    let (start, from) = match sub {
        Some(s) => {
            let head = format!(".SS \"{} {s}\"", page.name);
            let i = text
                .find(&head)
                .unwrap_or_else(|| panic!("{}: no subsection {head}", page.name));
            (i, i + head.len())
        }
        None => (0, 0),
    };
    let end = [".SS ", ".SH COMMANDS", ".SH NOTES"]
        .iter()
        .filter_map(|h| text[from..].find(h).map(|i| from + i))
        .min()
        .unwrap_or(text.len());
    &text[start..end]
}

/// What an argument must show in its page: each flag in bold, a
/// positional's value name in italics, every documented possible value.
fn marks(arg: &clap::Arg) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(l) = arg.get_long() {
        v.push(format!("\\fB\\-\\-{}\\fR", esc(l)));
    }
    if let Some(s) = arg.get_short() {
        v.push(format!("\\fB\\-{s}\\fR"));
    }
    if arg.is_positional() {
        for n in arg.get_value_names().unwrap_or_default() {
            v.push(format!("\\fI{}\\fR", esc(n)));
        }
    }
    for p in arg.get_possible_values() {
        if !p.is_hide_set() {
            v.push(esc(p.get_name()));
        }
    }
    v
}

fn every_page_shows_every_subcommand_and_argument() {
    for page in pages() {
        let text = String::from_utf8(render(&page).unwrap()).unwrap();
        let cmd = built(&page.command);
        assert!(
            text.starts_with(".ie") || text.starts_with(".TH"),
            "{}: no title",
            page.name
        );
        assert!(
            text.contains(&format!(".TH {} {}", page.name, page.section)),
            "{}: title",
            page.name
        );
        let mut checked = 0;
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            let top = section_of(&text, &page, None);
            for m in marks(arg) {
                assert!(
                    top.contains(&m),
                    "{}: {m} ({:?}) missing",
                    page.name,
                    arg.get_id()
                );
                checked += 1;
            }
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let part = section_of(&text, &page, Some(sub.get_name()));
            if let Some(about) = sub.get_about() {
                let first = about.to_string();
                assert!(
                    part.contains(&esc(first.lines().next().unwrap_or(""))),
                    "{} {}: its description is missing",
                    page.name,
                    sub.get_name()
                );
            }
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                for m in marks(arg) {
                    assert!(
                        part.contains(&m),
                        "{} {}: {m} ({:?}) missing",
                        page.name,
                        sub.get_name(),
                        arg.get_id()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 5, "{}: only {checked} marks checked", page.name);
        if let Some(after) = cmd.get_after_help() {
            let first = after.to_string();
            let first = first.lines().next().unwrap_or("");
            assert!(
                text.contains(&esc(first)),
                "{}: the after-help text is missing",
                page.name
            );
        }
    }
}

/// The subcommands and options of `ivshmem` that the guest tests and the
/// docs rely on, by name: renaming one must be a deliberate change here.
fn ivshmem_1_documents_the_interface() {
    let page = pages().into_iter().find(|p| p.name == "ivshmem").unwrap();
    let text = String::from_utf8(render(&page).unwrap()).unwrap();
    for sub in ["list", "info", "dump", "write", "ring", "wait"] {
        assert!(text.contains(&format!(".SS \"ivshmem {sub}\"")), "{sub}");
    }
    for m in [
        "\\-\\-json",
        "\\-\\-vector",
        "\\-\\-timeout",
        "\\-\\-raw",
        "\\-\\-cache",
        "\\-\\-no\\-squeeze",
        "124",
    ] {
        assert!(text.contains(m), "{m}");
    }
}

fn completions_offer_every_subcommand_and_long_option() {
    for page in pages() {
        let cmd = built(&page.command);
        for shell in [Shell::Bash, Shell::Zsh] {
            let text = String::from_utf8(completion(&page, shell)).unwrap();
            assert!(!text.is_empty(), "{} {shell}", page.name);
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                assert!(
                    text.contains(sub.get_name()),
                    "{} {shell}: subcommand {}",
                    page.name,
                    sub.get_name()
                );
            }
            let args = cmd
                .get_arguments()
                .chain(cmd.get_subcommands().flat_map(|s| s.get_arguments()));
            for arg in args.filter(|a| !a.is_hide_set()) {
                if let Some(l) = arg.get_long() {
                    assert!(
                        text.contains(&format!("--{l}")),
                        "{} {shell}: --{l}",
                        page.name
                    );
                }
            }
        }
    }
}

fn generate_writes_the_installed_layout() {
    let out = std::env::temp_dir().join(format!("ivshmem-docgen-test.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let written = generate(&out).unwrap();
    for want in [
        "man/man1/ivshmem.1",
        "man/man8/ivshmem-server.8",
        "man/man1/ivshmem-client.1",
        "man/man1/ivshmem-vmrun.1",
        "completions/bash/ivshmem",
        "completions/zsh/_ivshmem",
        "completions/bash/ivshmem-server",
        "completions/zsh/_ivshmem-client",
        "completions/zsh/_ivshmem-vmrun",
    ] {
        let p = out.join(want);
        assert!(written.contains(&p), "{want} not reported");
        assert!(
            std::fs::metadata(&p).is_ok_and(|m| m.len() > 0),
            "{want} missing or empty"
        );
    }
    assert_eq!(written.len(), pages().len() * 3);
    for page in pages() {
        assert!(written.contains(&out.join(man_path(&page))));
        assert!(written.contains(&out.join(completion_path(&page, Shell::Zsh))));
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// `groff -man -ww` finds nothing to warn about, in the generated pages and
/// in ivshmem(4).
fn pages_format_without_warnings(groff: PathBuf) {
    let dir = std::env::temp_dir().join(format!("ivshmem-docgen-groff.{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = vec![top().join("docs/man/ivshmem.4")];
    for page in pages() {
        let p = dir.join(format!("{}.{}", page.name, page.section));
        std::fs::write(&p, render(&page).unwrap()).unwrap();
        files.push(p);
    }
    for f in &files {
        let out = std::process::Command::new(&groff)
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(f)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", groff.display()));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.is_empty(),
            "{}: {err}",
            f.display()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The C declarations of a header's structures: name, and each member line
/// without comments and with single spaces.
fn structs(header: &str) -> Vec<(String, Vec<String>)> {
    let mut text = String::new();
    let mut rest = header;
    while let Some(i) = rest.find("/*") {
        text.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    text.push_str(rest);
    let mut v = Vec::new();
    let mut cur: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        let l = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(name) = l.strip_prefix("struct ").and_then(|r| r.strip_suffix(" {")) {
            cur = Some((name.to_string(), Vec::new()));
        } else if l == "};" {
            v.extend(cur.take());
        } else if let Some((_, fields)) = &mut cur {
            if !l.is_empty() {
                fields.push(l);
            }
        }
    }
    v
}

fn ivshmem_4_matches_the_uapi_header() {
    let header = std::fs::read_to_string(top().join("uapi/linux/ivshmem.h")).unwrap();
    let page = std::fs::read_to_string(top().join("docs/man/ivshmem.4")).unwrap();
    let defines: Vec<&str> = header
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("IVSHMEM_"))
        .collect();
    assert!(defines.len() >= 14, "{defines:?}");
    for d in defines {
        assert!(page.contains(d), "ivshmem(4) does not name {d}");
    }
    let header_structs = structs(&header);
    assert_eq!(header_structs.len(), 6, "{header_structs:?}");
    let page_structs = structs(&page);
    for (name, fields) in &header_structs {
        let documented = page_structs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("ivshmem(4) does not declare struct {name}"));
        assert_eq!(
            &documented.1, fields,
            "ivshmem(4) declares struct {name} unlike the header"
        );
    }
}
