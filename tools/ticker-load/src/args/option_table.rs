//! How an option table is read and shown: [`read`] reads a command line by it (each
//! flag applied as given, then the defaults of those not given) and [`render_help`]
//! writes the `--help` text from it. The tables themselves are in [`super::options`].

use super::values::Given;
use super::{ArgError, Command};

/// One flag.
pub(super) struct Opt<T: 'static> {
    /// The name in the help and in every message about the flag.
    long: &'static str,
    short: Short,
    takes: Takes<T>,
    /// One line per line of the help's right-hand column.
    help: &'static [&'static str],
}

/// A one-letter name.
#[derive(Clone, Copy)]
pub(super) enum Short {
    None,
    /// Listed before the long name (`-h, --help`).
    Listed(&'static str),
    /// Accepted, not listed (the help keeps the long names only).
    Unlisted(&'static str),
}

enum Takes<T: 'static> {
    /// No value: sets what it sets.
    Switch(fn(&mut T)),
    /// A value, named `name` in the help (`--connections N`), applied when given;
    /// when not, `default` is applied as if given.
    Value {
        name: &'static str,
        default: WhenAbsent,
        apply: fn(&mut T, Given) -> Result<(), ArgError>,
    },
    /// No value: ends the reading with this command (`--help`, `--version`).
    Command(fn() -> Command),
}

/// A value flag's default.
#[derive(Clone, Copy)]
pub(super) enum WhenAbsent {
    Nothing,
    /// Applied, as if given, when the flag is not.
    Apply(&'static str),
    /// Only shown: the code that reads the flag does it (a random seed, the URL path).
    Shown(&'static str),
}

/// A section of the help: a heading, a paragraph before its flags and one after.
pub(super) struct Group<T: 'static> {
    pub(super) heading: &'static str,
    pub(super) before: &'static str,
    pub(super) options: &'static [Opt<T>],
    pub(super) after: &'static str,
}

pub(super) const fn switch<T>(
    long: &'static str,
    short: Short,
    set: fn(&mut T),
    help: &'static [&'static str],
) -> Opt<T> {
    Opt { long, short, takes: Takes::Switch(set), help }
}

pub(super) const fn value<T>(
    long: &'static str,
    short: Short,
    name: &'static str,
    default: WhenAbsent,
    apply: fn(&mut T, Given) -> Result<(), ArgError>,
    help: &'static [&'static str],
) -> Opt<T> {
    Opt { long, short, takes: Takes::Value { name, default, apply }, help }
}

pub(super) const fn command<T>(
    long: &'static str,
    short: Short,
    command: fn() -> Command,
    help: &'static [&'static str],
) -> Opt<T> {
    Opt { long, short, takes: Takes::Command(command), help }
}

/// Reads `args` into `into` by `groups`' flags, then applies the defaults of flags not
/// given. `--flag value` and `--flag=value` both work (`=` after a `--` name only); an
/// argument that is no flag goes to `positional`. `Some` when a flag ends the reading
/// with a command (`--help`).
pub(super) fn read<T>(
    groups: &'static [Group<T>],
    args: impl IntoIterator<Item = String>,
    into: &mut T,
    mut positional: impl FnMut(&mut T, String) -> Result<(), ArgError>,
) -> Result<Option<Command>, ArgError> {
    let options: Vec<&Opt<T>> = groups.iter().flat_map(|g| g.options).collect();
    let mut given = vec![false; options.len()];
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg.as_str(), None),
        };
        let found = options.iter().position(|o| o.long == flag || o.short.name() == Some(flag));
        let Some(i) = found else {
            if flag.starts_with('-') {
                return Err(ArgError::Unknown(arg));
            }
            positional(into, arg)?;
            continue;
        };
        let opt = options[i];
        given[i] = true;
        match &opt.takes {
            Takes::Switch(set) => set(into),
            Takes::Command(command) => return Ok(Some(command())),
            Takes::Value { apply, .. } => {
                let text = match inline {
                    Some(v) => v.to_string(),
                    None => it.next().ok_or(ArgError::MissingValue(opt.long))?,
                };
                apply(into, Given { flag: opt.long, text })?;
            }
        }
    }
    for (opt, _) in options.iter().zip(given).filter(|(_, given)| !given) {
        if let Takes::Value { default: WhenAbsent::Apply(text), apply, .. } = opt.takes {
            apply(into, Given { flag: opt.long, text: text.to_string() })?;
        }
    }
    Ok(None)
}

impl Short {
    fn name(self) -> Option<&'static str> {
        match self {
            Short::None => None,
            Short::Listed(name) | Short::Unlisted(name) => Some(name),
        }
    }
}

/// The column the help of each flag starts at, and the one its default is aligned to.
const HELP_COLUMN: usize = 26;
const DEFAULT_COLUMN: usize = 71;
/// A default that would end past this goes on a line of its own, from
/// [`OWN_LINE_COLUMN`].
const LINE_MAX: usize = 92;
const OWN_LINE_COLUMN: usize = 62;

impl<T> Opt<T> {
    /// `    --connections N       subscribers to open        [default: 100]`, and the
    /// help's further lines.
    fn help_text(&self) -> String {
        let mut names = match self.short {
            Short::Listed(short) => format!("{short}, {}", self.long),
            Short::None | Short::Unlisted(_) => self.long.to_string(),
        };
        let mut default = None;
        if let Takes::Value { name, default: d, .. } = &self.takes {
            names = format!("{names} {name}");
            default = match d {
                WhenAbsent::Nothing => None,
                WhenAbsent::Apply(text) | WhenAbsent::Shown(text) => {
                    Some(format!("[default: {text}]"))
                }
            };
        }
        let indent = " ".repeat(HELP_COLUMN);
        let mut lines: Vec<String> = Vec::new();
        let first = format!("    {names}");
        let mut help = self.help.iter();
        if first.len() + 2 <= HELP_COLUMN {
            let text = help.next().copied().unwrap_or_default();
            lines.push(format!("{first:<HELP_COLUMN$}{text}"));
        } else {
            lines.push(first);
        }
        lines.extend(help.map(|text| format!("{indent}{text}")));
        if let Some(default) = default {
            let last = lines
                .last_mut()
                .filter(|l| l.len().max(DEFAULT_COLUMN - 1) + 1 + default.len() <= LINE_MAX);
            match last {
                Some(line) => {
                    *line = format!("{line:<width$} {default}", width = DEFAULT_COLUMN - 1)
                }
                None => lines.push(format!("{:OWN_LINE_COLUMN$}{default}", "")),
            }
        }
        lines.iter().map(|l| format!("{}\n", l.trim_end())).collect()
    }
}

/// The `--help` text: `usage`, each group's heading, paragraphs and flags, `notes`.
pub(super) fn render_help<T>(usage: &str, groups: &[Group<T>], notes: &str) -> String {
    let mut out = String::from(usage);
    for group in groups {
        out.push('\n');
        if !group.heading.is_empty() {
            out.push_str(group.heading);
            out.push('\n');
        }
        if !group.before.is_empty() {
            out.push_str(group.before);
            out.push('\n');
        }
        for opt in group.options {
            out.push_str(&opt.help_text());
        }
        if !group.after.is_empty() {
            out.push('\n');
            out.push_str(group.after);
        }
    }
    out.push('\n');
    out.push_str(notes);
    out
}
