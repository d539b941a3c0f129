//! `--help`, generated from the option table: one section per [`Group`], in
//! [`Group::ALL`]'s order, each option under the group its row names.
//!
//! Rules:
//! - Grouping is data: every row of [`super::OPTIONS`] and [`super::ENV_ONLY`] carries
//!   its group, so an option cannot be left out of the help or listed twice.
//! - Every line fits [`WIDTH`] columns: help text is wrapped, and a default too long for
//!   the option's first line goes on a line of its own. The subcommands' help
//!   (`keys --help`, `source-check --help`) renders its shared options with
//!   [`options_text`], so it follows the same rules.

use super::{ENV_ONLY, OPTIONS, OptionSpec};

/// The widest line of any help text, in columns.
pub const WIDTH: usize = 100;

/// The indent of an option's help text under its first line.
const TEXT_INDENT: usize = 8;

/// What an option is about; `--help` has one section per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Where it listens, what it serves, its threads.
    Server,
    /// The key database, tokens and the token exchange.
    Auth,
    /// The symbols and where their prices come from.
    Prices,
    /// What one session may ask for.
    Subscriptions,
    /// Bounds on connections, requests and messages; timeouts.
    Limits,
    Tls,
    Cluster,
    Logging,
}

impl Group {
    /// Every group, in the order of `--help`.
    pub const ALL: [Group; 8] = [
        Group::Server,
        Group::Auth,
        Group::Prices,
        Group::Subscriptions,
        Group::Limits,
        Group::Tls,
        Group::Cluster,
        Group::Logging,
    ];

    /// The section's heading.
    pub fn title(self) -> &'static str {
        match self {
            Group::Server => "SERVER",
            Group::Auth => "API KEYS AND TOKENS",
            Group::Prices => "PRICES AND SYMBOLS",
            Group::Subscriptions => "SUBSCRIPTIONS",
            Group::Limits => "LIMITS AND TIMEOUTS",
            Group::Tls => "TLS",
            Group::Cluster => "CLUSTER",
            Group::Logging => "LOGGING",
        }
    }
}

/// The `--help` text.
pub fn help_text() -> String {
    let mut out = String::from(
        "crypto-ticker: authenticated WebSocket price ticker

USAGE:
    crypto-ticker [OPTIONS]                    serve (every option has a default)
    crypto-ticker keys <COMMAND>               manage API keys (crypto-ticker keys --help)
    crypto-ticker source-check --source NAME   try a price source (source-check --help)
    crypto-ticker -h, --help | -V, --version   this text | the version and its parts

Every option is a flag (--tick 20ms or --tick=20ms) or an environment variable
(TICKER_TICK=20ms); a flag wins. Durations take a unit: ms, s, m or h.
",
    );
    for group in Group::ALL {
        out.push('\n');
        out.push_str(group.title());
        out.push_str(":\n");
        for opt in OPTIONS.iter().chain(ENV_ONLY).filter(|o| o.group == group) {
            out.push_str(&entry(opt));
        }
    }
    out
}

/// The rows of [`OPTIONS`] named in `flags`, in the table's order, rendered as `--help`
/// renders them (for the subcommands that share them).
pub fn options_text(flags: &[&str]) -> String {
    OPTIONS.iter().filter(|o| flags.contains(&o.flag)).map(entry).collect()
}

/// One option: flag, variable and default on the first line (the default on a line of
/// its own when it does not fit), then its help text, wrapped.
fn entry(opt: &OptionSpec) -> String {
    let is_env_only = ENV_ONLY.iter().any(|o| o.env == opt.env);
    let flag = if is_env_only {
        "(environment only)".to_owned()
    } else {
        format!("--{} <value>", opt.flag)
    };
    let first = format!("    {flag:<32} {:<28}", opt.env);
    let default = match opt.default_value() {
        // An option that is off unless given (`--symbols-file`).
        none if none.is_empty() => "[default: none]".to_owned(),
        value => format!("[default: {value}]"),
    };
    let mut out = if first.len() + 1 + default.len() <= WIDTH {
        format!("{first} {default}\n")
    } else {
        format!("{}\n{}{default}\n", first.trim_end(), " ".repeat(TEXT_INDENT))
    };
    out.push_str(&wrap(opt.help, TEXT_INDENT));
    out
}

/// `text` in lines of at most [`WIDTH`] columns, each indented by `indent`, broken at
/// spaces. A single word wider than the line stays whole on a line of its own.
fn wrap(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > WIDTH {
            out.push_str(&format!("{pad}{line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{pad}{line}\n"));
    }
    out
}

/// The lines of `text` wider than [`WIDTH`] columns (for the tests of every help text).
#[cfg(test)]
pub(crate) fn too_wide(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.chars().count() > WIDTH).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_help_fits_100_columns() {
        let help = help_text();
        assert_eq!(too_wide(&help), Vec::<&str>::new());
    }

    #[test]
    fn every_option_appears_once_under_the_heading_of_its_group() {
        let help = help_text();
        let mut group = None;
        let mut seen: Vec<(&str, Group)> = Vec::new();
        for line in help.lines() {
            if let Some(g) = Group::ALL.iter().find(|g| line == format!("{}:", g.title())) {
                group = Some(*g);
            }
            let first = line.trim_start();
            for opt in OPTIONS.iter().chain(ENV_ONLY) {
                let starts = if ENV_ONLY.iter().any(|o| o.env == opt.env) {
                    first.starts_with("(environment only)") && first.contains(opt.env)
                } else {
                    first.starts_with(&format!("--{} ", opt.flag))
                };
                if starts {
                    seen.push((opt.env, group.expect("an option before any heading")));
                }
            }
        }
        for opt in OPTIONS.iter().chain(ENV_ONLY) {
            let under: Vec<Group> =
                seen.iter().filter(|(env, _)| *env == opt.env).map(|(_, g)| *g).collect();
            assert_eq!(under, [opt.group], "{} appears once, under {:?}", opt.env, opt.group);
        }
    }

    #[test]
    fn every_group_is_a_heading_once_and_has_options() {
        let help = help_text();
        for (i, group) in Group::ALL.iter().enumerate() {
            assert!(!Group::ALL[..i].contains(group), "{group:?} listed twice");
            let heading = format!("\n{}:\n", group.title());
            assert_eq!(help.matches(&heading).count(), 1, "{heading:?}");
            assert!(OPTIONS.iter().chain(ENV_ONLY).any(|o| o.group == *group), "{group:?} empty");
        }
    }

    #[test]
    fn a_default_too_long_for_the_first_line_goes_on_its_own() {
        let help = help_text();
        assert!(help.contains("\n        [default: BTC-USD:42000,ETH-USD:2500,SOL-USD:95]\n"));
        let addr = help.lines().find(|l| l.starts_with("    --addr <value> ")).expect("--addr");
        assert!(addr.ends_with(" TICKER_ADDR                  [default: 0.0.0.0:8081]"), "{addr}");
    }

    #[test]
    fn wrapping_breaks_at_spaces_and_keeps_a_long_word_whole() {
        let text = "word ".repeat(40);
        let wrapped = wrap(&text, 8);
        assert!(wrapped.lines().all(|l| l.len() <= WIDTH && l.starts_with("        word")));
        assert_eq!(wrapped.split_whitespace().count(), 40);
        let long = "x".repeat(120);
        assert_eq!(wrap(&long, 8), format!("        {long}\n"));
    }
}
