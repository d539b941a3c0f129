//! HTTP/1.1: pure request parsing, response building, routing with CORS, static files,
//! and the client's address behind trusted proxies.

pub mod cors;
pub mod forwarded;
pub mod request;
pub mod response;
pub mod routes;
pub mod static_files;
