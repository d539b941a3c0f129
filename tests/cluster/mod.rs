//! Cluster mode against a real `redis-server` (its own, on a free port, no persistence):
//! the building blocks ([`parts`]) and whole nodes, three real server processes on
//! ephemeral ports with tungstenite clients ([`nodes`]).

mod nodes;
mod parts;
