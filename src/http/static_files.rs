//! Static files from the public folder, with SPA fallback (seed: http.static, `spa: true`,
//! `index: index.html`).
//!
//! Two walls keep every request inside the folder: [`sanitize`] (pure, on the event loop)
//! refuses `..`, `.`, dot-files, backslashes and NUL after percent-decoding; [`serve`]
//! (blocking, on a worker) canonicalizes the result and refuses anything whose real path,
//! after symlinks, is not below the canonical root. No directory is ever listed.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::HttpError;
use crate::http::request::percent_decode;
use crate::http::response::Response;

/// A static-file request whose path is already proven not to escape the public folder
/// lexically (symlinks are checked when the file is opened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRequest {
    /// Relative path below the public folder; empty means the index.
    pub relative: PathBuf,
    pub head_only: bool,
    pub if_modified_since: Option<SystemTime>,
}

/// Largest file served; the public folder holds a page, not downloads.
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// Turns a URL path into a relative path with only normal components, or `None` when it
/// tries to leave the folder or name something hidden.
pub fn sanitize(url_path: &str) -> Option<PathBuf> {
    let decoded = String::from_utf8(percent_decode(url_path)?).ok()?;
    if decoded.contains(['\0', '\\']) {
        return None;
    }
    let mut relative = PathBuf::new();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment.starts_with('.') {
            return None;
        }
        relative.push(segment);
    }
    // Belt and braces: every component must be a plain name.
    relative.components().all(|c| matches!(c, Component::Normal(_))).then_some(relative)
}

/// Serves a sanitized request from `root` (which must be canonical). Blocking.
pub fn serve(root: &Path, req: &StaticRequest) -> Response {
    let target = if req.relative.as_os_str().is_empty() {
        root.join("index.html")
    } else {
        root.join(&req.relative)
    };
    match fs::canonicalize(&target) {
        Ok(real) if !real.starts_with(root) => Response::error(&HttpError::NotFound),
        Ok(real) if real.is_file() => read_file(&real, req),
        // Unknown paths and directories fall back to the single-page app's index.
        _ => {
            let index = root.join("index.html");
            match fs::canonicalize(&index) {
                Ok(real) if real.starts_with(root) && real.is_file() => read_file(&real, req),
                _ => Response::error(&HttpError::NotFound),
            }
        }
    }
}

fn read_file(path: &Path, req: &StaticRequest) -> Response {
    let Ok(mut file) = fs::File::open(path) else { return Response::error(&HttpError::NotFound) };
    let Ok(meta) = file.metadata() else { return Response::error(&HttpError::Internal) };
    if meta.len() > MAX_FILE {
        return Response::error(&HttpError::NotFound);
    }
    let modified = meta.modified().ok().map(whole_seconds);
    let mut r = Response::new(200)
        .header("Content-Type", content_type(path))
        // Revalidate every time: the page is small and must not go stale after an upgrade.
        .header("Cache-Control", "no-cache");
    if let Some(modified) = modified {
        r = r.header("Last-Modified", httpdate::fmt_http_date(modified));
        if req.if_modified_since.is_some_and(|since| modified <= since) {
            r.status = 304;
            return r;
        }
    }
    let mut body = Vec::with_capacity(meta.len() as usize);
    if file.read_to_end(&mut body).is_err() {
        return Response::error(&HttpError::Internal);
    }
    r.body = body;
    r.head_only = req.head_only;
    r
}

/// HTTP dates have whole seconds; compare at that precision.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

/// The `Content-Type` for a file name, by extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_in_every_spelling_is_refused() {
        for bad in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/%2E%2E%2Fx",
            "/..%2f..%2fetc",
            "/.git/config",
            "/a\\..\\b",
            "/%00",
            "/%zz",
        ] {
            assert_eq!(sanitize(bad), None, "{bad}");
        }
        assert_eq!(sanitize("/"), Some(PathBuf::new()));
        assert_eq!(sanitize("//app.js"), Some(PathBuf::from("app.js")));
        assert_eq!(sanitize("/img/a%20b.png"), Some(PathBuf::from("img/a b.png")));
    }

    #[test]
    fn files_directories_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("public");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("index.html"), "<h1>index</h1>").unwrap();
        fs::write(root.join("app.js"), "x()").unwrap();
        fs::write(dir.path().join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("leak.txt")).unwrap();
        let root = fs::canonicalize(&root).unwrap();
        let get = |p: &str| {
            serve(
                &root,
                &StaticRequest {
                    relative: sanitize(p).unwrap(),
                    head_only: false,
                    if_modified_since: None,
                },
            )
        };

        let js = get("/app.js");
        assert_eq!((js.status, js.body.as_slice()), (200, &b"x()"[..]));
        assert!(js.headers.contains(&("Content-Type", "text/javascript; charset=utf-8".into())));
        assert_eq!(get("/").body, b"<h1>index</h1>");
        assert_eq!(get("/sub").body, b"<h1>index</h1>", "directories are never listed");
        assert_eq!(get("/no/such/page").body, b"<h1>index</h1>", "SPA fallback");
        assert_eq!(get("/leak.txt").status, 404, "symlink out of the folder");

        let last_modified =
            js.headers.iter().find(|(n, _)| *n == "Last-Modified").unwrap().1.clone();
        let since = httpdate::parse_http_date(&last_modified).unwrap();
        let again = serve(
            &root,
            &StaticRequest {
                relative: "app.js".into(),
                head_only: false,
                if_modified_since: Some(since),
            },
        );
        assert_eq!(again.status, 304);
    }
}
