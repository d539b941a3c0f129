//! A connection's life as the meters count it: why it was opened and how it ended.
//! Plain data, shared by the connection (`conn.rs`) and the meters (`meter.rs`)
//! without either importing the other.

use crate::stats::Reason;

/// Why a connection was opened: to ramp up, or to replace a churned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Ramp,
    Churn,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Never opened.
    Failed(Reason),
    /// Opened, then ended before the tool closed it.
    Dropped(Reason),
    /// The close handshake the tool started at the end of the run completed (or the
    /// server then closed TCP).
    Closed,
    /// The same, for a close the tool started to churn the connection.
    Churned,
}
