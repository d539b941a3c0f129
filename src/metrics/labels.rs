//! The label of a labelled metric is an enum: a value that does not exist cannot be
//! counted, and each value's text is written once, here (or, for a domain type that is
//! also a label, beside that type).

use crate::auth::keys::DbErrorKind;

/// A label whose values are the variants of an enum.
pub trait Label: Copy + 'static {
    /// The label's name in the exposition, e.g. `outcome`.
    const NAME: &'static str;
    /// Every value, in rendering order: `ALL[v.index()] == v`.
    const ALL: &'static [Self];
    /// The value's text in the exposition.
    fn value(self) -> &'static str;
    /// The value's slot in a labelled counter.
    fn index(self) -> usize;
}

/// Declares a label enum: its variants in rendering order, each with its text.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $label:literal {
            $( $(#[$variant_meta:meta])* $variant:ident = $value:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )*
        }

        impl Label for $name {
            const NAME: &'static str = $label;
            const ALL: &'static [Self] = &[$($name::$variant),*];
            fn value(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)*
                }
            }
            fn index(self) -> usize {
                // Fieldless, no explicit discriminants: 0.. in declaration order, as `ALL`.
                self as usize
            }
        }
    };
}

label_enum! {
    /// Outcomes of `POST /auth/token`.
    pub enum AuthOutcome: "outcome" {
        Issued = "issued",
        InvalidJson = "invalid_json",
        MissingKey = "missing_key",
        InvalidKey = "invalid_key",
        /// A wrong key from an address beyond its failure limit (429).
        RateLimited = "rate_limited",
        /// Refused before any lookup: its address had its bound of lookups in flight (429).
        AddressBusy = "address_busy",
        DatabaseError = "database_error",
        StoreFull = "store_full",
    }
}

label_enum! {
    /// Outcomes of the token check on `GET /ws/ticker`.
    pub enum WsAuthOutcome: "outcome" {
        Accepted = "accepted",
        Missing = "missing",
        Invalid = "invalid",
        Expired = "expired",
    }
}

label_enum! {
    /// How a session is sent ticks: whole frames or changes only (`?delta=1`), each plain
    /// or compressed (permessage-deflate).
    pub enum SessionMode: "mode" {
        Plain = "plain",
        Deflate = "deflate",
        Delta = "delta",
        DeltaDeflate = "delta_deflate",
    }
}

label_enum! {
    /// Which session cap refused an upgrade (`--max-sessions-per-key`, `--max-sessions-per-ip`).
    pub enum SessionLimit: "limit" {
        PerKey = "per_key",
        PerIp = "per_ip",
    }
}

label_enum! {
    /// Kinds of Redis errors (cluster mode), as `cluster::link::LinkError::kind` sorts them.
    pub enum RedisErrorKind: "kind" {
        /// Could not connect, or the connection broke.
        Unreachable = "unreachable",
        /// Redis did not answer in time.
        Timeout = "timeout",
        /// A call skipped while the reconnect waits for its backoff.
        Backoff = "backoff",
        /// An error reply, a reply of an unexpected type, or an unreadable tick.
        Protocol = "protocol",
        /// Not a Redis URL.
        Url = "url",
    }
}

label_enum! {
    /// Kinds of upstream messages (`--source` other than sim).
    pub enum SourceMessageKind: "kind" {
        /// A price the book took.
        Price = "price",
        Heartbeat = "heartbeat",
        /// A known message with nothing for the ticker (acks, status, pongs).
        Control = "control",
        /// The exchange refused (part of) a subscription.
        Rejected = "rejected",
        /// A price older than one the book holds.
        OutOfOrder = "out_of_order",
        Malformed = "malformed",
        /// Well-formed but of a kind the parser does not know, or a symbol not asked for.
        Unknown = "unknown",
    }
}

/// The key store's error kinds are the database errors' label.
impl Label for DbErrorKind {
    const NAME: &'static str = "kind";
    const ALL: &'static [Self] = &[
        DbErrorKind::Missing,
        DbErrorKind::Busy,
        DbErrorKind::Corrupt,
        DbErrorKind::Io,
        DbErrorKind::NoRandomness,
        DbErrorKind::Unreachable,
        DbErrorKind::Other,
    ];
    fn value(self) -> &'static str {
        self.label()
    }
    fn index(self) -> usize {
        // Fieldless, declared in `ALL`'s order (a test holds them together).
        self as usize
    }
}
