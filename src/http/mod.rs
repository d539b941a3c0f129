//! HTTP/1.1: pure request parsing, response building, routing with CORS, static files.

pub mod cors;
pub mod request;
pub mod response;
pub mod routes;
pub mod static_files;
