//! The `options!` macro: the option table written once, turned into the [`Config`]
//! struct, the [`OPTIONS`] and [`ENV_ONLY`] tables and the defaults.
//!
//! Why a macro: an option's field, type, default and parser belong together, and
//! written by hand they would be listed three times (the struct, a literal to start
//! from, the table), with values in the literal that no option ever has. Here each
//! row is written once and `Config` is built from the rows' defaults, so every field
//! always holds a value its option can take.
//!
//! A row is one of:
//! - `field NAME: TYPE { flag, env, group, default, help, parse }`: an option that
//!   owns the field `NAME`; `parse` turns a value into a `TYPE` (or refuses it).
//! - `extra { flag, env, group, default, help, apply }`: an option that changes fields
//!   owned by other rows (`--symbols-file` replaces the symbols); its default applies
//!   after the fields are built.
//! - `secret NAME: TYPE { ... }`: like `field`, listed in [`ENV_ONLY`]: read from the
//!   environment only.
//!
//! The rows keep their order: it is the order of `--help` within a group and the
//! order in which the environment is read.
//!
//! [`Config`]: super::Config
//! [`OPTIONS`]: super::OPTIONS
//! [`ENV_ONLY`]: super::ENV_ONLY

/// See the module documentation. The expansion names `Config`, `OptionSpec`, `Group`
/// and `initial` as they are in scope where it is used.
macro_rules! options {
    (
        $(#[$meta:meta])*
        pub struct $config:ident;
        $($rows:tt)*
    ) => {
        options!(@row [$(#[$meta])* $config] [] [] [] [] [] $($rows)*);
    };
    (@row $head:tt [$($fields:tt)*] [$($inits:tt)*] [$($opts:tt)*] $secrets:tt $extras:tt
        $(#[$doc:meta])*
        field $name:ident: $ty:ty {
            flag: $flag:expr, env: $env:expr, group: $group:ident, default: $default:expr,
            help: $help:expr, parse: $parse:expr,
        }
        $($rest:tt)*
    ) => {
        options!(@row $head
            [$($fields)* $(#[$doc])* pub $name: $ty,]
            [$($inits)* $name: initial($flag, $default, $parse),]
            [$($opts)* OptionSpec {
                flag: $flag, env: $env, group: Group::$group, default: $default, help: $help,
                apply: |c, v| {
                    c.$name = ($parse)(v)?;
                    Ok(())
                },
            },]
            $secrets $extras $($rest)*);
    };
    (@row $head:tt $fields:tt $inits:tt [$($opts:tt)*] $secrets:tt [$($extras:tt)*]
        extra {
            flag: $flag:expr, env: $env:expr, group: $group:ident, default: $default:expr,
            help: $help:expr, apply: $apply:expr,
        }
        $($rest:tt)*
    ) => {
        options!(@row $head $fields $inits
            [$($opts)* OptionSpec {
                flag: $flag, env: $env, group: Group::$group, default: $default, help: $help,
                apply: $apply,
            },]
            $secrets [$($extras)* $flag,] $($rest)*);
    };
    (@row $head:tt [$($fields:tt)*] [$($inits:tt)*] $opts:tt [$($secrets:tt)*] $extras:tt
        $(#[$doc:meta])*
        secret $name:ident: $ty:ty {
            flag: $flag:expr, env: $env:expr, group: $group:ident, default: $default:expr,
            help: $help:expr, parse: $parse:expr,
        }
        $($rest:tt)*
    ) => {
        options!(@row $head
            [$($fields)* $(#[$doc])* pub $name: $ty,]
            [$($inits)* $name: initial($flag, $default, $parse),]
            $opts
            [$($secrets)* OptionSpec {
                flag: $flag, env: $env, group: Group::$group, default: $default, help: $help,
                apply: |c, v| {
                    c.$name = ($parse)(v)?;
                    Ok(())
                },
            },]
            $extras $($rest)*);
    };
    (@row [$(#[$meta:meta])* $config:ident] [$($fields:tt)*] [$($inits:tt)*] [$($opts:tt)*]
        [$($secrets:tt)*] [$($extras:tt)*]
    ) => {
        $(#[$meta])*
        pub struct $config {
            $($fields)*
        }

        /// The option table. The first eight rows' names are fixed (scripts rely on them).
        pub const OPTIONS: &[OptionSpec] = &[$($opts)*];

        /// Options read only from the environment: secrets, which a flag would show to
        /// every user of the machine through `ps`.
        pub const ENV_ONLY: &[OptionSpec] = &[$($secrets)*];

        impl Default for $config {
            /// Every option at its default: each field parsed from its row's default,
            /// then the `extra` rows' defaults applied in table order.
            fn default() -> Self {
                let mut config = $config { $($inits)* };
                for flag in [$($extras)*] {
                    let extra = OPTIONS.iter().find(|o| o.flag == flag);
                    if let Some(opt) = extra {
                        // The defaults are literals in the table, covered by a unit test.
                        (opt.apply)(&mut config, &opt.default_value())
                            .unwrap_or_else(|e| panic!("default of --{flag}: {e}"));
                    }
                }
                config
            }
        }
    };
}

pub(super) use options;
