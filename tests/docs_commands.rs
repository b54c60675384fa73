//! The docs show only commands that work: every `quorate ...` and `cargo run ... -- ...`
//! command line in README.md, docs/ and the examples of `--help` names a real subcommand and
//! real flags (parsed by the very clap definitions the binary uses), and every relative link
//! between the pages leads to a file, and to a heading when it names one.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::CommandFactory;
use quorate::cli::Cli;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page under docs/.
fn doc_pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// Where a command was shown, and whether in a code block (a whole command line) or inline
/// in prose (which may name a command without its required arguments).
struct Shown {
    place: String,
    text: String,
    whole: bool,
}

/// Lines of shell code blocks (continuations joined) and inline code spans of `page`.
fn commands_in(page: &Path) -> Vec<Shown> {
    let text = std::fs::read_to_string(page).expect("page");
    let name = page
        .strip_prefix(root())
        .unwrap_or(page)
        .display()
        .to_string();
    let mut out = Vec::new();
    let mut fence: Option<bool> = None; // Some(is shell) inside a fence
    let mut pending = String::new();
    for (i, line) in text.lines().enumerate() {
        let place = format!("{name}:{}", i + 1);
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(matches!(
                    lang.trim(),
                    "" | "sh" | "bash" | "shell" | "console"
                )),
            };
            continue;
        }
        match fence {
            Some(true) => {
                let line = line.trim().trim_start_matches("$ ");
                if let Some(head) = line.strip_suffix('\\') {
                    pending.push_str(head);
                    pending.push(' ');
                    continue;
                }
                let whole = std::mem::take(&mut pending) + line;
                out.push(Shown {
                    place,
                    text: whole,
                    whole: true,
                });
            }
            Some(false) => {}
            None => {
                for (j, span) in line.split('`').enumerate() {
                    if j % 2 == 1 {
                        out.push(Shown {
                            place: place.clone(),
                            text: span.to_string(),
                            whole: false,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The examples in every command's `--help` (the lines under "Examples:", each cut where two
/// spaces start its description).
fn help_examples() -> Vec<Shown> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<Shown>) {
        let path = format!("{path} {}", cmd.get_name()).trim().to_string();
        if let Some(help) = cmd.get_after_help() {
            let help = help.to_string();
            let examples = help.split("Examples:").nth(1).unwrap_or("");
            for line in examples
                .lines()
                .take_while(|l| !l.trim().is_empty() || l.is_empty())
            {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let command = line.split("  ").next().unwrap_or(line);
                out.push(Shown {
                    place: format!("`{path} --help`"),
                    text: command.to_string(),
                    whole: true,
                });
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), "", &mut out);
    out
}

/// The arguments `quorate` gets from a shown command line, or None when it does not run
/// quorate. Leading `VAR=value`, `sudo`, `env` and `nice -n N` are skipped; `cargo run
/// [OPTIONS] -- ARGS` gives ARGS; the line ends at a pipe, redirection or `&&`.
fn quorate_args(text: &str) -> Option<Vec<String>> {
    // Usage notation: `[--days 365]` is an optional `--days 365`.
    let words: Vec<String> = shlex::split(text)?
        .into_iter()
        .map(|w| w.trim_start_matches('[').trim_end_matches(']').to_string())
        .filter(|w| !w.is_empty())
        .collect();
    let mut words = words.into_iter().peekable();
    loop {
        match words.peek().map(String::as_str) {
            Some("sudo" | "env" | "time") => {
                words.next();
            }
            Some("nice") => {
                words.next();
                if words.peek().is_some_and(|w| w == "-n") {
                    words.next();
                    words.next();
                }
            }
            Some(w)
                if w.contains('=') && w.chars().next().is_some_and(|c| c.is_ascii_uppercase()) =>
            {
                words.next();
            }
            _ => break,
        }
    }
    let rest: Vec<String> = match words.next()?.as_str() {
        "quorate" => words.collect(),
        "cargo" => {
            if words.next()? != "run" {
                return None;
            }
            let words: Vec<String> = words.collect();
            let dashdash = words.iter().position(|w| w == "--")?;
            if let Some(bin) = words.iter().position(|w| w == "--bin") {
                if words.get(bin + 1).map(String::as_str) != Some("quorate") {
                    return None;
                }
            }
            words[dashdash + 1..].to_vec()
        }
        _ => return None,
    };
    let end = rest
        .iter()
        .position(|w| {
            matches!(w.as_str(), "|" | "||" | "&&" | ";" | "&")
                || w.starts_with('>')
                || w.starts_with('<')
                || w.starts_with("2>")
        })
        .unwrap_or(rest.len());
    Some(rest[..end].to_vec())
}

/// Arguments whose value the shell environment may give (QUORATE_API, QUORATE_TOKEN_FILE):
/// a shown command may leave them out.
fn from_env(missing: &str) -> bool {
    missing.starts_with("--api") || missing.starts_with("--token-file")
}

/// A word in capitals that stands for a value: S, ID, DIR, COMMAND.
fn placeholder(word: &str) -> bool {
    !word.is_empty() && word.chars().all(|c| c.is_ascii_uppercase() || c == '_')
}

/// Why `args` do not parse as a quorate command line, if they do not.
fn refusal(args: &[String], whole: bool) -> Option<String> {
    let argv = std::iter::once("quorate".to_string()).chain(args.iter().cloned());
    let err = match Cli::command().try_get_matches_from(argv) {
        Ok(_) => return None,
        Err(e) => e,
    };
    let values = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(s)) => s.clone(),
        _ => Vec::new(),
    };
    let fine = match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => true,
        // A placeholder such as `--seed S` or `--node ID` stands for a value; prose may name
        // a flag without one (`quorate run --data`).
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => values(ContextKind::InvalidValue)
            .iter()
            .all(|v| placeholder(v) || (v.is_empty() && !whole)),
        // Prose may stand for any command: `quorate help COMMAND`.
        ErrorKind::InvalidSubcommand => {
            !whole
                && values(ContextKind::InvalidSubcommand)
                    .iter()
                    .all(|v| placeholder(v))
        }
        ErrorKind::MissingRequiredArgument => {
            !whole || values(ContextKind::InvalidArg).iter().all(|a| from_env(a))
        }
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            !whole
        }
        _ => false,
    };
    (!fine).then(|| err.render().to_string())
}

#[test]
fn every_command_shown_in_the_docs_and_in_help_parses() {
    let mut shown: Vec<Shown> = doc_pages().iter().flat_map(|p| commands_in(p)).collect();
    shown.extend(help_examples());
    let mut checked = 0;
    let mut failures = Vec::new();
    for s in &shown {
        let Some(args) = quorate_args(&s.text) else {
            continue;
        };
        checked += 1;
        if let Some(why) = refusal(&args, s.whole) {
            failures.push(format!("{}: `{}`\n{why}", s.place, s.text));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The pages show dozens of commands; far fewer means the extraction broke.
    assert!(checked >= 60, "only {checked} commands found in the docs");
}

#[test]
fn the_checker_refuses_what_the_binary_would() {
    let refused = |line: &str, whole: bool| {
        let args = quorate_args(line).unwrap_or_else(|| panic!("{line} runs quorate"));
        refusal(&args, whole)
    };
    assert!(refused("quorate stauts --api 127.0.0.1:1", true).is_some());
    assert!(refused("quorate status --api 127.0.0.1:1 --colour", true).is_some());
    assert!(refused("quorate status --api 127.0.0.1:1 --output yaml", true).is_some());
    assert!(refused("cargo run --release -- sim --seeds many", true).is_some());
    assert!(refused("quorate failover a --api 127.0.0.1:1 --token-file t", true).is_some());
    assert!(refused("quorate failover a --reason x", true).is_none());
    assert!(refused("quorate run", false).is_none());
    assert!(refused("quorate run", true).is_some());
    assert!(refused("quorate help COMMAND", false).is_none());
    assert!(refused("quorate verdicts [--site a] [--limit N]", true).is_none());
    assert!(refused("quorate verdicts [--colour a]", true).is_some());
    assert!(refused("sudo QUORATE_API=127.0.0.1:1 quorate verdicts | head", true).is_none());
    assert!(refused("quorate sim --seed S --scenario failover", true).is_none());
    assert!(refused(
        "cargo run --release -- demo --blackout a --at 5 --exit-after-verdict",
        true
    )
    .is_none());
    assert_eq!(quorate_args("cargo bench --bench blackout"), None);
    assert_eq!(quorate_args("testbed/testbed up"), None);
    assert_eq!(
        quorate_args("quorate maintenance a --for 1h   # or --until T, --end"),
        Some(vec![
            "maintenance".into(),
            "a".into(),
            "--for".into(),
            "1h".into()
        ])
    );
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of the headings of a Markdown file (not of `#` lines in code blocks).
fn anchors(page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(page).unwrap_or_default();
    let mut in_fence = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_relative_link_between_the_pages_resolves() {
    let mut pages = doc_pages();
    for extra in [
        "benches/README.md",
        "tests/README.md",
        "src/README.md",
        "fuzz/README.md",
        "contrib/README.md",
    ] {
        pages.push(root().join(extra));
    }
    let mut broken = Vec::new();
    let mut links = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("page");
        let dir = page.parent().expect("a page is in a directory");
        for (i, line) in text.lines().enumerate() {
            for part in line.split("](").skip(1) {
                let Some(target) = part.split(')').next() else {
                    continue;
                };
                if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                    continue;
                }
                links += 1;
                let (file, anchor) = match target.split_once('#') {
                    Some((f, a)) => (f, Some(a)),
                    None => (target, None),
                };
                let path = if file.is_empty() {
                    page.clone()
                } else {
                    dir.join(file)
                };
                let place = format!(
                    "{}:{}",
                    page.strip_prefix(root()).unwrap_or(page).display(),
                    i + 1
                );
                if !path.exists() {
                    broken.push(format!("{place}: {target}: no such file"));
                } else if let Some(a) = anchor {
                    if !anchors(&path).iter().any(|h| h == a) {
                        broken.push(format!("{place}: {target}: no heading #{a}"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(links >= 20, "only {links} links found");
}
