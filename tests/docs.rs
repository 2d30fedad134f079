//! The docs cannot drift from the binary. Without AWS or a cluster, this checks what the docs
//! show against the `lifeboat` binary itself:
//!
//! - every `config/*.yaml` passes `lifeboat config validate`;
//! - every YAML code block in `docs/*.md` and `README.md` that is a lifeboat config (a top-level
//!   `storage:` key), or that carries one under a top-level `config:` key (Helm values), passes
//!   `lifeboat config validate`, with errors pointing at the doc's own line numbers;
//! - every line of a code block that starts with `lifeboat ` or `$ lifeboat ` (continuation
//!   lines ending in `\` joined) names a real subcommand path (`lifeboat <path> --help` exits 0)
//!   and only flags that appear in that subcommand's `--help` (global flags appear in every
//!   help). Positional placeholders (`NAME`, `<file>`) are arguments and need nothing; shell
//!   syntax after the command (`|`, `&&`, `;`, `>`, `#`) ends it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `README.md` and `docs/*.md`, sorted.
fn doc_files() -> Vec<PathBuf> {
    let dir = root().join("docs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files.insert(0, root().join("README.md"));
    files
}

/// A path relative to the repository, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A fenced code block: its info string and its lines with their 1-based line numbers in the
/// document (the fence's indentation removed).
#[derive(Debug)]
struct Block {
    lang: String,
    lines: Vec<(usize, String)>,
}

fn code_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, usize, Block)> = None;
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let trimmed = raw.trim_start();
        let indent = raw.len() - trimmed.len();
        match &mut open {
            None => {
                let marker: String = trimmed
                    .chars()
                    .take_while(|c| *c == '`' || *c == '~')
                    .collect();
                let uniform = marker.chars().all(|c| c == '`') || marker.chars().all(|c| c == '~');
                if marker.len() >= 3 && uniform {
                    let lang = trimmed[marker.len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    open = Some((
                        marker,
                        indent,
                        Block {
                            lang,
                            lines: Vec::new(),
                        },
                    ));
                }
            }
            Some((marker, fence_indent, block)) => {
                let fence = trimmed.trim_end();
                let closes =
                    fence.len() >= marker.len() && fence.chars().all(|c| marker.starts_with(c));
                if closes {
                    if let Some((_, _, block)) = open.take() {
                        blocks.push(block);
                    }
                    continue;
                }
                let cut = raw
                    .char_indices()
                    .take_while(|(at, c)| *at < *fence_indent && *c == ' ')
                    .count();
                block.lines.push((number, raw[cut..].to_string()));
            }
        }
    }
    blocks
}

/// Runs `lifeboat config validate` on `path`; the error output when it fails.
fn validate(path: &Path) -> Result<(), String> {
    let out = Command::new(BIN)
        .args(["config", "validate"])
        .arg(path)
        .env_remove("LIFEBOAT_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("running {BIN}: {e}"));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

fn is_top_level_key(line: &str, key: &str) -> bool {
    line.strip_prefix(key)
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// The lifeboat configs in a YAML block: `(first line in the doc, text)`. The whole block when
/// it has a top-level `storage:` key; else the mapping under a top-level `config:` key (Helm
/// values), dedented, when that has one. The text is padded with empty lines so that the line
/// numbers of validation errors are the document's.
fn lifeboat_configs(block: &Block) -> Vec<(usize, String)> {
    let pad = |first: usize| "\n".repeat(first.saturating_sub(1));
    let Some(&(first, _)) = block.lines.first() else {
        return Vec::new();
    };
    if block
        .lines
        .iter()
        .any(|(_, l)| is_top_level_key(l, "storage"))
    {
        let mut text = pad(first);
        for (_, l) in &block.lines {
            text.push_str(l);
            text.push('\n');
        }
        return vec![(first, text)];
    }
    let Some(start) = block
        .lines
        .iter()
        .position(|(_, l)| is_top_level_key(l.split('#').next().unwrap_or(""), "config"))
    else {
        return Vec::new();
    };
    let body: Vec<&(usize, String)> = block.lines[start + 1..]
        .iter()
        .take_while(|(_, l)| {
            l.trim().is_empty() || l.starts_with([' ', '\t']) || l.trim_start().starts_with('#')
        })
        .collect();
    let indent = body
        .iter()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(_, l)| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let dedented: Vec<String> = body
        .iter()
        .map(|(_, l)| l.get(indent..).unwrap_or("").to_string())
        .collect();
    if !dedented.iter().any(|l| is_top_level_key(l, "storage")) {
        return Vec::new();
    }
    let first = body.first().map_or(first, |(n, _)| *n);
    let mut text = pad(first);
    for l in dedented {
        text.push_str(&l);
        text.push('\n');
    }
    vec![(first, text)]
}

/// Whether an option of a help text takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    Nothing,
    Value,
    OptionalValue,
}

/// What `lifeboat <path> --help` says.
#[derive(Debug)]
struct Help {
    text: String,
    commands: Vec<String>,
    options: HashMap<String, Takes>,
}

impl Help {
    fn parse(text: String) -> Help {
        let mut commands = Vec::new();
        let mut options = HashMap::new();
        let mut section = "";
        for line in text.lines() {
            if !line.starts_with(' ') {
                section = line.trim_end();
                continue;
            }
            let trimmed = line.trim_start();
            match section {
                "Commands:" if line.starts_with("  ") && !line.starts_with("   ") => {
                    if let Some(name) = trimmed.split_whitespace().next() {
                        commands.push(name.to_string());
                    }
                }
                "Options:" if trimmed.starts_with('-') => {
                    let mut words = trimmed.split_whitespace().peekable();
                    let mut names = Vec::new();
                    while let Some(w) = words.next_if(|w| w.starts_with('-')) {
                        names.push(w.trim_end_matches(',').to_string());
                    }
                    let takes = match words.next() {
                        Some(w) if w.starts_with("[<") => Takes::OptionalValue,
                        Some(w) if w.starts_with('<') => Takes::Value,
                        _ => Takes::Nothing,
                    };
                    for n in names {
                        options.insert(n, takes);
                    }
                }
                _ => {}
            }
        }
        Help {
            text,
            commands,
            options,
        }
    }

    /// Whether the help lists `flag` (`--name`) as an option.
    fn has_flag(&self, flag: &str) -> bool {
        self.options.contains_key(flag)
            || self.text.match_indices(flag).any(|(at, _)| {
                let before = self.text[..at].chars().next_back();
                let after = self.text[at + flag.len()..].chars().next();
                !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    }
}

/// `--help` of each subcommand path, run once each.
#[derive(Debug, Default)]
struct Helps {
    cache: HashMap<Vec<String>, Result<Help, String>>,
}

impl Helps {
    fn get(&mut self, path: &[String]) -> Result<&Help, String> {
        self.cache
            .entry(path.to_vec())
            .or_insert_with(|| {
                let out = Command::new(BIN)
                    .args(path)
                    .arg("--help")
                    .env_remove("LIFEBOAT_CONFIG")
                    .output()
                    .unwrap_or_else(|e| panic!("running {BIN}: {e}"));
                if out.status.success() {
                    Ok(Help::parse(
                        String::from_utf8_lossy(&out.stdout).into_owned(),
                    ))
                } else {
                    Err(format!(
                        "`lifeboat {} --help` exits {}: {}",
                        path.join(" "),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Shell words of a command line, up to the first shell operator or comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '|' | '&' | ';' | '<' | '>' => {
                // A redirection such as `2>` ends the command too; drop its number.
                if in_word && !word.chars().all(|d| d.is_ascii_digit()) {
                    words.push(word);
                }
                return words;
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// A word that stands for a value the reader fills in.
fn is_placeholder(word: &str) -> bool {
    word.starts_with('<')
        || word.starts_with('[')
        || word.contains("...")
        || word.contains('…')
        || (word.chars().any(|c| c.is_ascii_uppercase())
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || "_-:".contains(c)))
}

/// The `lifeboat` command lines of a block, continuation lines joined:
/// `(line number, command without any "$ " prompt)`.
fn command_lines(block: &Block) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lines = block.lines.iter();
    while let Some((number, line)) = lines.next() {
        let trimmed = line.trim_start();
        let command = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
        if !command.starts_with("lifeboat ") {
            continue;
        }
        let mut joined = command.trim_end().to_string();
        while joined.ends_with('\\') {
            joined.pop();
            match lines.next() {
                Some((_, next)) => {
                    joined.push(' ');
                    joined.push_str(next.trim());
                }
                None => break,
            }
        }
        out.push((*number, joined));
    }
    out
}

/// `lifeboat backup create` for the path `[backup, create]`.
fn command_name(path: &[String]) -> String {
    std::iter::once("lifeboat")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks one command line against the binary's help; the problems found.
fn check_command(helps: &mut Helps, command: &str) -> Vec<String> {
    let words = shell_words(command);
    let mut path: Vec<String> = Vec::new();
    let mut flags: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    let mut i = 1;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        let help = match helps.get(&path) {
            Ok(help) => help,
            Err(e) => return vec![e],
        };
        if let Some(long) = word.strip_prefix("--") {
            if long.is_empty() {
                break; // `--`: only arguments follow.
            }
            let (name, inline_value) = match word.split_once('=') {
                Some((name, _)) => (name, true),
                None => (word.as_str(), false),
            };
            flags.push(name.to_string());
            if !inline_value && help.options.get(name) == Some(&Takes::Value) {
                i += 1;
            }
        } else if word.starts_with('-') && word.len() > 1 {
            let short: String = word.chars().take(2).collect();
            if word.len() == 2 && help.options.get(&short) == Some(&Takes::Value) {
                i += 1;
            }
        } else if help.commands.iter().any(|c| c == word) {
            path.push(word.clone());
        } else if !help.commands.is_empty() {
            if is_placeholder(word) {
                // `lifeboat COMMAND ...`: nothing more can be checked.
                return problems;
            }
            return vec![format!(
                "`{word}` is not a subcommand of `{}` (it has: {})",
                command_name(&path),
                help.commands.join(", ")
            )];
        }
        // Anything else is a positional argument of the subcommand.
    }
    let help = match helps.get(&path) {
        Ok(help) => help,
        Err(e) => return vec![e],
    };
    let asks_help = flags.iter().any(|f| f == "--help" || f == "--version");
    if !help.commands.is_empty() && !asks_help {
        problems.push(format!(
            "`{}` needs a subcommand (one of: {})",
            command_name(&path),
            help.commands.join(", ")
        ));
    }
    for flag in flags {
        if !help.has_flag(&flag) {
            problems.push(format!(
                "flag `{flag}` is not in `{} --help`",
                command_name(&path)
            ));
        }
    }
    problems
}

/// Every problem of one markdown text's commands, as `file:line: problem (in: command)`.
fn command_problems(helps: &mut Helps, file: &str, text: &str) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut problems = Vec::new();
    for block in code_blocks(text) {
        for (number, command) in command_lines(&block) {
            checked += 1;
            for p in check_command(helps, &command) {
                problems.push(format!("{file}:{number}: {p}\n    in: {command}"));
            }
        }
    }
    (checked, problems)
}

#[test]
fn every_example_config_validates() {
    let dir = root().join("config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "config/ should hold the documented examples, found {files:?}"
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| {
            validate(f)
                .err()
                .map(|e| format!("{}: `lifeboat config validate` fails:\n{e}", shown(f)))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_config_in_the_docs_validates() {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let mut checked = 0;
    let mut failures = Vec::new();
    for doc in doc_files() {
        let text = std::fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{doc:?}: {e}"));
        let name = shown(&doc);
        for block in code_blocks(&text) {
            if !matches!(block.lang.as_str(), "yaml" | "yml") {
                continue;
            }
            for (first, config) in lifeboat_configs(&block) {
                checked += 1;
                // Named after the doc, so that errors read `docs/x.md:LINE:COL: key: problem`.
                let file = scratch.path().join(&name);
                std::fs::create_dir_all(file.parent().expect("a parent"))
                    .expect("a scratch directory");
                std::fs::write(&file, &config).expect("a scratch file");
                if let Err(e) = validate(&file) {
                    let e = e.replace(&format!("{}/", scratch.path().display()), "");
                    failures.push(format!(
                        "{name}:{first}: the lifeboat config in this YAML block fails `lifeboat config validate`:\n{e}"
                    ));
                }
            }
        }
    }
    assert!(
        checked >= 2,
        "expected lifeboat configs in README.md and docs/, found {checked}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_command_in_the_docs_is_real() {
    let mut helps = Helps::default();
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for doc in doc_files() {
        let text = std::fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{doc:?}: {e}"));
        let (checked, problems) = command_problems(&mut helps, &shown(&doc), &text);
        counts.push((shown(&doc), checked));
        failures.extend(problems);
    }
    for (doc, at_least) in [("README.md", 5), ("docs/operations.md", 20)] {
        let checked = counts.iter().find(|(d, _)| d == doc).map_or(0, |(_, n)| *n);
        assert!(
            checked >= at_least,
            "{doc}: only {checked} `lifeboat` command lines found in code blocks (expected at least {at_least}); is the parser still finding them? {counts:?}"
        );
    }
    let mut message = String::new();
    for f in &failures {
        let _ = writeln!(message, "{f}");
    }
    assert!(
        failures.is_empty(),
        "commands in the docs that the binary refuses:\n{message}"
    );
}

/// The checker itself: it must catch what drifts, and accept what is right.
#[test]
fn the_checker_catches_drift() {
    let doc = "\
Text.

```sh
$ lifeboat --config lifeboat.yaml backup create NAME --ttl 30d --snapshot-volumes=false
lifeboat --output json restore create --from-backup nightly \\
    --namespace-mapping shop:shop-drill --zone-mapping eu-west-1a:eu-west-1b   # a comment --bogus
lifeboat backup list --output json | jq -r '.[].name' --not-ours
lifeboat backup download NAME -o backup.tar.zst
lifeboat backup inspect NAME
lifeboat backup create NAME --encrypt
lifeboat drill --from-backup x \\
    --target-kubeconfig staging.kubeconfig --target-cluster staging
lifeboat backup
```
";
    let mut helps = Helps::default();
    let (checked, problems) = command_problems(&mut helps, "doc.md", doc);
    assert_eq!(checked, 8, "{problems:#?}");
    let all = problems.join("\n");
    assert_eq!(problems.len(), 4, "{all}");
    assert!(
        all.contains("doc.md:9: `inspect` is not a subcommand of `lifeboat backup`"),
        "{all}"
    );
    assert!(
        all.contains("doc.md:10: flag `--encrypt` is not in `lifeboat backup create --help`"),
        "{all}"
    );
    assert!(
        all.contains("doc.md:11: flag `--target-cluster` is not in `lifeboat drill --help`"),
        "{all}"
    );
    assert!(
        all.contains("doc.md:13: `lifeboat backup` needs a subcommand"),
        "{all}"
    );

    let values = "\
```yaml
replicaCount: 2
config:
  # The lifeboat config.
  storage:
    url: s3://acme-backups/prod
  bogusKey: 1
rbac:
  restore: false
```
";
    let blocks = code_blocks(values);
    let configs = lifeboat_configs(&blocks[0]);
    assert_eq!(configs.len(), 1);
    let (first, text) = &configs[0];
    assert_eq!(*first, 4);
    assert!(
        text.starts_with("\n\n\n# The lifeboat config.\nstorage:\n"),
        "{text:?}"
    );
    assert!(
        text.contains("\nbogusKey: 1\n") && !text.contains("rbac"),
        "{text:?}"
    );
}
