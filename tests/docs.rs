//! The manual against the code: every relative link in `README.md` and `docs/*.md` leads
//! to a file (and every `#anchor` into a Markdown page to one of its headings), every
//! metric a running server renders on `/metrics` is in the metrics reference, the
//! reference and the metric table (`src/metrics/table.rs`) agree row for row, and every
//! option `crypto-ticker --help` lists is in the option reference. Each check has a test
//! of its own that feeds it a broken page, so a check that passes vacuously fails.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crypto_ticker::metrics::{MetricDef, TABLE};

use crate::util::{TestServer, repo_path};

/// The page that holds the metrics and option references.
const OPERATIONS: &str = "docs/operations.md";

/// The manual's pages: `README.md` and every Markdown file in `docs/`.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo_path("README.md")];
    for entry in std::fs::read_dir(repo_path("docs")).expect("docs/") {
        let path = entry.expect("a docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages.sort();
    pages
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of a Markdown text outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        match fence {
            Some(marker) if trimmed.starts_with(marker) => fence = None,
            Some(_) => {}
            None if trimmed.starts_with("```") => fence = Some("```"),
            None if trimmed.starts_with("~~~") => fence = Some("~~~"),
            None => lines.push(line),
        }
    }
    lines
}

/// A line without its inline code spans (`` `...` ``, ``` ``...`` ```).
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].len() - rest[start..].trim_start_matches('`').len();
        let after = &rest[start + ticks..];
        let closing = "`".repeat(ticks);
        match after.find(&closing) {
            Some(end) => rest = &after[end + ticks..],
            // An unclosed run of backticks is literal text.
            None => {
                out.push_str(&rest[start..start + ticks]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The link targets of a Markdown text: inline links and images `[text](target "title")`
/// and reference definitions `[name]: target`, outside code.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        let line = without_code_spans(line);
        let trimmed = line.trim_start();
        // A reference definition: `[name]: target`.
        let definition = trimmed
            .strip_prefix('[')
            .and_then(|t| t.split_once("]:"))
            .filter(|(label, _)| !label.contains(']'));
        if let Some((_, target)) = definition {
            if let Some(target) = target.split_whitespace().next() {
                targets.push(target.trim_matches(['<', '>']).to_owned());
            }
            continue;
        }
        let mut rest = line.as_str();
        while let Some(open) = rest.find("](") {
            let after = &rest[open + 2..];
            // The target ends at the `)` that balances the opening one.
            let mut depth = 0usize;
            let end = after
                .char_indices()
                .find(|&(_, c)| match c {
                    '(' => {
                        depth += 1;
                        false
                    }
                    ')' if depth == 0 => true,
                    ')' => {
                        depth -= 1;
                        false
                    }
                    _ => false,
                })
                .map_or(after.len(), |(i, _)| i);
            if let Some(target) = after[..end].split_whitespace().next() {
                targets.push(target.trim_matches(['<', '>']).to_owned());
            }
            rest = &after[end..];
        }
    }
    targets
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown page's headings (a repeated one gets `-1`, `-2`, ...).
fn anchors(text: &str) -> HashSet<String> {
    let mut anchors = HashSet::new();
    for line in prose_lines(text) {
        let level = line.len() - line.trim_start_matches('#').len();
        let Some(heading) = line[level..].strip_prefix(' ') else { continue };
        if !(1..=6).contains(&level) {
            continue;
        }
        let base = slug(heading.trim_end().trim_end_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while !anchors.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
    }
    anchors
}

/// What is wrong with the relative links of `page` (whose text is `text`), each as
/// "page: target (why)". Links with a scheme (`https:`, `mailto:`) are not followed.
fn broken_links(page: &Path, text: &str) -> Vec<String> {
    let dir = page.parent().expect("a page is in a folder");
    let mut broken = Vec::new();
    for target in link_targets(text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (file, anchor) = match target.split_once('#') {
            Some((file, anchor)) => (file, Some(anchor)),
            None => (target.as_str(), None),
        };
        let resolved = dir.join(file);
        let problem = if file.is_empty() {
            // An anchor into this page.
            anchor.filter(|a| !anchors(text).contains(*a)).map(|_| "no such heading")
        } else if !resolved.exists() {
            Some("no such file")
        } else {
            match anchor {
                // Anchors into other files (`src/x.rs#L10`) are GitHub's, not headings.
                Some(anchor) if resolved.extension().is_some_and(|e| e == "md") => {
                    (!anchors(&read(&resolved)).contains(anchor)).then_some("no such heading")
                }
                _ => None,
            }
        };
        if let Some(why) = problem {
            broken.push(format!("{}: {target} ({why})", page.display()));
        }
    }
    broken
}

/// The section of a Markdown text under the heading `heading` (e.g. `## Metrics`), up
/// to the next heading of the same or a higher level.
fn section<'t>(text: &'t str, heading: &str) -> &'t str {
    let level = heading.len() - heading.trim_start_matches('#').len();
    let start =
        text.find(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("no heading {heading:?}"))
            + 1;
    let body = &text[start + heading.len()..];
    let end = body
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| {
            let line = &body[i..];
            let hashes = line.len() - line.trim_start_matches('#').len();
            (1..=level).contains(&hashes) && line[hashes..].starts_with(' ')
        })
        .unwrap_or(body.len());
    &body[..end]
}

/// The metric families a `/metrics` text declares (`# TYPE NAME KIND`): a histogram
/// counts once, under its own name.
fn declared_metrics(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The names that do not appear in `reference` as a whole word (a name that is only
/// part of a longer one, `--source` of `--source-url`, does not count).
fn missing_from(reference: &str, names: &[String]) -> Vec<String> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    names
        .iter()
        .filter(|name| {
            !reference.match_indices(name.as_str()).any(|(i, _)| {
                let before = reference[..i].chars().next_back();
                let after = reference[i + name.len()..].chars().next();
                !before.is_some_and(is_word) && !after.is_some_and(is_word)
            })
        })
        .cloned()
        .collect()
}

fn metrics_reference() -> String {
    section(&read(&repo_path(OPERATIONS)), "## Metrics").to_owned()
}

fn rendered_metrics(server: &TestServer) -> Vec<String> {
    let r = server.get("/metrics");
    assert_eq!(r.status, 200);
    declared_metrics(&r.text())
}

#[test]
fn every_relative_link_in_the_manual_leads_to_a_file_and_its_heading() {
    let pages = pages();
    assert!(pages.len() > 5, "README.md and docs/*.md: {pages:?}");
    let mut followed = 0;
    let mut broken = Vec::new();
    for page in &pages {
        let text = read(page);
        followed += link_targets(&text).len();
        broken.extend(broken_links(page, &text));
    }
    assert!(followed > 50, "only {followed} links found: is the parser blind?");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_catches_a_missing_file_a_missing_heading_and_skips_code() {
    let page = repo_path("docs/imaginary.md");
    let text = "# Title\n\n## Its `second` part\n\n\
                [ok](protocol.md) [ok](protocol.md#close-codes) ![ok](page.png) [ok](#its-second-part)\n\
                [bad](no-such-page.md) [bad](protocol.md#no-such-heading) [bad](#nowhere)\n\
                [bad]: ../no/such/file.rs\n\
                `[not a link](nowhere.md)` [web](https://example.com/x.md)\n\
                ```\n[inside a fence](nowhere.md)\n```\n";
    let broken = broken_links(&page, text);
    assert_eq!(broken.len(), 4, "{broken:#?}");
    for target in
        ["no-such-page.md", "protocol.md#no-such-heading", "#nowhere", "../no/such/file.rs"]
    {
        assert!(broken.iter().any(|b| b.contains(&format!(": {target} ("))), "{target}");
    }
    assert_eq!(slug("`source-check` and TLS 1.3 (SIGHUP)!"), "source-check-and-tls-13-sighup");
}

#[test]
fn every_metric_the_server_renders_is_in_the_metrics_reference() {
    let reference = metrics_reference();
    let server = TestServer::start();
    let mut names = rendered_metrics(&server);
    assert!(names.len() > 30, "{names:?}");
    assert!(names.contains(&"ticker_fanout_duration_seconds".to_owned()), "{names:?}");
    // With a real price source the server renders the source's gauges too; the
    // exchange need not answer (nothing listens on port 1).
    #[cfg(feature = "exchanges")]
    {
        let opts = crate::util::Opts::default()
            .arg("--source", "coinbase")
            .arg("--source-url", "ws://127.0.0.1:1/")
            .arg("--source-timeout", "1s");
        let live = TestServer::start_with(opts);
        let with_source = rendered_metrics(&live);
        assert!(with_source.contains(&"ticker_source_up".to_owned()), "{with_source:?}");
        names.extend(with_source);
    }
    names.sort();
    names.dedup();
    let missing = missing_from(&reference, &names);
    assert!(
        missing.is_empty(),
        "/metrics renders these, but the reference ({OPERATIONS}, \"## Metrics\") lacks them: {missing:?}"
    );
}

#[test]
fn the_metrics_check_catches_a_metric_left_out() {
    let text = "# HELP ticker_a_total A.\n# TYPE ticker_a_total counter\nticker_a_total 1\n\
                # TYPE ticker_b_seconds histogram\nticker_b_seconds_bucket{le=\"+Inf\"} 0\n\
                ticker_b_seconds_sum 0\nticker_b_seconds_count 0\n# TYPE ticker_c gauge\nticker_c 0\n";
    let names = declared_metrics(text);
    assert_eq!(names, ["ticker_a_total", "ticker_b_seconds", "ticker_c"]);
    let reference =
        "| `ticker_a_total` | a |\n| `ticker_b_seconds` | b |\n| `ticker_c_total` | c |\n";
    assert_eq!(missing_from(reference, &names), ["ticker_c"]);
    // The real reference without one of its rows is caught too.
    let full = metrics_reference();
    let cut = full.replace("`ticker_symbol_sets`", "`ticker_symbol_set_count`");
    assert_eq!(missing_from(&cut, &["ticker_symbol_sets".to_owned()]), ["ticker_symbol_sets"]);
}

/// A row of the metrics reference: `| `NAME{LABEL}` | TYPE | MEANING |`.
#[derive(Debug)]
struct ReferenceRow<'r> {
    name: &'r str,
    label: Option<&'r str>,
    kind: &'r str,
    meaning: String,
}

fn reference_rows(reference: &str) -> Vec<ReferenceRow<'_>> {
    reference
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.strip_prefix('|')?.split('|').map(str::trim).collect();
            let metric = cells.first()?.strip_prefix('`')?.strip_suffix('`')?;
            let (name, label) = match metric.split_once('{') {
                Some((name, label)) => (name, Some(label.strip_suffix('}')?)),
                None => (metric, None),
            };
            // The meaning may hold a `|` of its own; the last cell is the empty one after
            // the closing `|`.
            let meaning = cells.get(2..cells.len().saturating_sub(1))?.join("|");
            Some(ReferenceRow { name, label, kind: cells.get(1)?, meaning })
        })
        .collect()
}

/// Where the reference and the metric table disagree: a metric of the table without a
/// row, or whose row has another type or label or lacks one of the label's values; a
/// row for a metric the table does not have; a metric with two rows.
fn table_mismatches(reference: &str, table: &[MetricDef]) -> Vec<String> {
    let rows = reference_rows(reference);
    let mut mismatches = Vec::new();
    for def in table {
        let mut documented = rows.iter().filter(|r| r.name == def.name);
        let Some(row) = documented.next() else {
            mismatches.push(format!("{}: no row", def.name));
            continue;
        };
        if documented.next().is_some() {
            mismatches.push(format!("{}: two rows", def.name));
        }
        if row.kind != def.kind.as_str() {
            mismatches.push(format!(
                "{}: type {} in the table, {}",
                def.name,
                def.kind.as_str(),
                row.kind
            ));
        }
        if row.label != def.label.map(|l| l.name) {
            let label = def.label.map(|l| l.name);
            mismatches.push(format!("{}: label {label:?} in the table, {:?}", def.name, row.label));
        }
        if let Some(values) = def.label.and_then(|l| l.values) {
            let values: Vec<String> = values().into_iter().map(str::to_owned).collect();
            for value in missing_from(&row.meaning, &values) {
                mismatches.push(format!("{}: label value {value} not named", def.name));
            }
        }
    }
    for row in &rows {
        if !table.iter().any(|def| def.name == row.name) {
            mismatches.push(format!("{}: documented, not in the table", row.name));
        }
    }
    mismatches
}

#[test]
fn the_metrics_reference_and_the_metric_table_agree_both_ways() {
    let reference = metrics_reference();
    assert!(reference_rows(&reference).len() > 30, "is the row parser blind?");
    let mismatches = table_mismatches(&reference, TABLE);
    assert!(
        mismatches.is_empty(),
        "{OPERATIONS} (\"## Metrics\") and src/metrics/table.rs disagree:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn the_table_check_catches_a_missing_row_a_wrong_type_a_value_left_out_and_a_stray_row() {
    let full = metrics_reference();
    assert_eq!(table_mismatches(&full, TABLE), Vec::<String>::new());
    let mut lines: Vec<String> = full
        .lines()
        .filter(|l| !l.starts_with("| `ticker_symbol_sets`"))
        .map(|l| match l {
            l if l.starts_with("| `ticker_ticks_total`") => l.replace("| counter |", "| gauge |"),
            l if l.starts_with("| `ticker_sessions_refused_total{limit}`") => {
                l.replace("`per_ip`", "`per_address`")
            }
            l if l.starts_with("| `ticker_ws_auth_total{outcome}`") => {
                l.replace("{outcome}", "{result}")
            }
            l => l.to_owned(),
        })
        .collect();
    lines.push("| `ticker_imaginary_total` | counter | nothing |".to_owned());
    let mismatches = table_mismatches(&lines.join("\n"), TABLE);
    let expected = [
        "ticker_ticks_total: type counter in the table, gauge",
        "ticker_sessions_refused_total: label value per_ip not named",
        "ticker_ws_auth_total: label Some(\"outcome\") in the table, Some(\"result\")",
        "ticker_symbol_sets: no row",
        "ticker_imaginary_total: documented, not in the table",
    ];
    assert_eq!(mismatches, expected);
}

#[test]
fn every_option_help_lists_is_in_the_option_reference() {
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-ticker")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    // Option lines: `    --flag <value>   TICKER_VAR   [default: ...]`, and the
    // environment-only ones: `    (environment only)   TICKER_VAR   [default: ...]`.
    let mut names = Vec::new();
    for line in help.lines() {
        let mut words = line.split_whitespace();
        if line.starts_with("    --") {
            names.extend(words.next().map(str::to_owned));
        } else if !line.starts_with("    (environment only)") {
            continue;
        }
        names.extend(words.find(|w| w.starts_with("TICKER_")).map(str::to_owned));
    }
    assert!(names.len() > 60, "{names:?}");
    let operations = read(&repo_path(OPERATIONS));
    let reference = section(&operations, "### Every option");
    let missing = missing_from(reference, &names);
    assert!(
        missing.is_empty(),
        "`crypto-ticker --help` lists these, but {OPERATIONS} (\"### Every option\") lacks them: {missing:?}"
    );
}
