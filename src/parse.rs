//! The outcome every parser in this crate shares, after httparse's `Status`.
//!
//! Incomplete input is not invalid: a parser that needs more bytes returns
//! [`Status::Partial`] and consumes nothing, so the caller can read more and call again
//! with the longer buffer. Invalid input is a typed error from [`crate::error`].

/// The result of a successful parse step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status<T> {
    /// A whole item was parsed from the first `consumed` bytes of the input.
    Complete { value: T, consumed: usize },
    /// The input is a valid prefix; nothing was consumed.
    Partial,
}

impl<T> Status<T> {
    /// Maps the parsed value, keeping `consumed`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Status<U> {
        match self {
            Status::Complete { value, consumed } => Status::Complete { value: f(value), consumed },
            Status::Partial => Status::Partial,
        }
    }

    pub fn is_partial(&self) -> bool {
        matches!(self, Status::Partial)
    }
}
