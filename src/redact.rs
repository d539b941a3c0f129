//! Secrets kept out of messages: the password of a URL (`--redis`). Pure.
//!
//! Rules (each has a unit test below):
//! - `scheme://user:password@host...` becomes `scheme://user:***@host...`: the user name
//!   stays (it is not a secret, and it helps find the setting), the password goes.
//! - The user information ends at the last `@`, so a password with an unescaped `@`,
//!   `/`, `?` or `#` in it is hidden whole: hiding too much beats showing part of it.
//! - `pass=` and `password=` query parameters (`unix:///run/redis.sock?pass=...`, the
//!   redis crate's form for sockets) become `pass=***`.
//! - Text that does not parse as a URL goes through the same rules: a URL is redacted
//!   precisely when it is wrong, and then shown in an error.

/// `url` with its password replaced by `***` (see the module's rules).
pub fn redact_url(url: &str) -> String {
    let url = redact_query(url);
    let start = url.find("://").map_or(0, |i| i + 3);
    let (head, rest) = url.split_at(start);
    let Some(at) = rest.rfind('@') else { return url };
    let (userinfo, host) = rest.split_at(at);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{head}{user}:***{host}"),
        None => url,
    }
}

/// Hides the values of `pass=` and `password=` parameters after the first `?`.
fn redact_query(url: &str) -> String {
    let Some(q) = url.find('?') else { return url.to_owned() };
    let (path, query) = url.split_at(q + 1);
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _))
                if name.eq_ignore_ascii_case("pass") || name.eq_ignore_ascii_case("password") =>
            {
                format!("{name}=***")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("{path}{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_of_a_url_is_hidden_and_the_rest_kept() {
        let cases = [
            ("redis://:s3cret@10.0.0.5:6379/0", "redis://:***@10.0.0.5:6379/0"),
            ("redis://app:s3cret@cache/1", "redis://app:***@cache/1"),
            ("redis://app@cache/1", "redis://app@cache/1"),
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("redis://:p@ss/w?rd#x@cache:6379", "redis://:***@cache:6379"),
            ("http://:s3cret@cache", "http://:***@cache"),
            (":s3cret@cache", ":***@cache"),
            ("unix:///run/redis.sock?db=2&pass=s3cret", "unix:///run/redis.sock?db=2&pass=***"),
            ("unix:///run/r.sock?PASSWORD=s3cret&user=a", "unix:///run/r.sock?PASSWORD=***&user=a"),
            ("", ""),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn no_part_of_a_password_survives_in_any_of_the_forms() {
        for url in [
            "redis://user:hunter2@host:notaport/0",
            "redis://:hunter2@",
            "redis://:hun@ter2@host",
            "redis://:hun/ter2@host",
            "unix:///s.sock?pass=hunter2@x",
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains("hunter2") && !shown.contains("ter2"), "{url} → {shown}");
        }
    }
}
