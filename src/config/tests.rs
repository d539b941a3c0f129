//! The option table, the parse and the checks across options, through [`parse_args`].

use std::path::PathBuf;
use std::time::Duration;

use super::*;
#[cfg(feature = "exchanges")]
use crate::source::{Exchange, SourceKind};
use crate::symbols::spec::SymbolSpec;

fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> =
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    match parse_args(&args, |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))? {
        Command::Serve(c) => Ok(*c),
        other => panic!("{other:?}"),
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = parse(&[], &[]).unwrap();
    assert_eq!(c.addr.to_string(), "0.0.0.0:8081");
    assert_eq!(c.db_path, PathBuf::from("./data/auth.db"));
    assert_eq!(c.public_dir, PathBuf::from("./public"));
    assert_eq!(c.tick_interval, Duration::from_millis(10));
    assert_eq!(c.symbols.len(), 3);
    assert_eq!(c.symbols[0], SymbolSpec { name: "BTC-USD".into(), start_price: 42000.0 });
    assert_eq!(c.token_ttl, Duration::from_secs(3600));
    assert_eq!(c.workers, available_cores());
    assert_eq!(c.http_limits().max_head, 16384);
    assert_eq!(c.max_message, 32768);
    assert_eq!(c.slow_consumer_timeout, Duration::from_secs(10));
    assert_eq!(c.backlog, system_somaxconn());
    assert_eq!((c.token_capacity, c.per_key_bound()), (100_000, 10_000));
    assert_eq!((c.login_failures_per_minute, c.login_concurrency), (10, 1024));
    assert!(c.trusted_proxies.is_empty());
    assert_eq!(c.tls_threads, available_cores().div_ceil(2));
}

#[test]
fn the_backlog_and_the_per_key_token_bound_are_options() {
    let c = parse(&["--backlog", "512"], &[("TICKER_TOKENS_PER_KEY", "100")]).unwrap();
    assert_eq!((c.backlog, c.per_key_bound()), (512, 100));
    let c = parse(&[], &[("TICKER_BACKLOG", "64")]).unwrap();
    assert_eq!(c.backlog, 64);
    assert!(parse(&["--backlog", "0"], &[]).unwrap_err().0.starts_with("--backlog"));
    assert!(parse(&["--backlog", "4294967296"], &[]).is_err(), "listen(2) takes an int");
    assert!(parse(&["--tokens-per-key", "0"], &[]).is_err());
    assert!((1..=i32::MAX as usize).contains(&system_somaxconn()));
}

#[test]
fn the_per_key_token_bound_defaults_to_a_tenth_of_the_table_at_most_10000() {
    for (capacity, per_key) in [(2, 1), (19, 1), (500, 50), (100_000, 10_000), (10_000_000, 10_000)]
    {
        let c = parse(&["--token-capacity", &capacity.to_string()], &[]).unwrap();
        assert_eq!(c.per_key_bound(), per_key, "capacity {capacity}");
    }
    let c = parse(&["--tokens-per-key", "auto"], &[("TICKER_TOKEN_CAPACITY", "500")]).unwrap();
    assert_eq!(c.per_key_bound(), 50);
    assert!(parse(&["--token-capacity", "1"], &[]).is_err(), "one key would fill it");
}

#[test]
fn a_per_key_bound_above_half_the_table_is_refused_with_what_to_give() {
    let c = parse(&["--token-capacity", "500", "--tokens-per-key", "250"], &[]).unwrap();
    assert_eq!(c.per_key_bound(), 250);
    let err = parse(&["--token-capacity", "500", "--tokens-per-key", "600"], &[]).unwrap_err();
    assert!(err.0.starts_with("--tokens-per-key 600 is more than half of --token-capacity 500"));
    assert!(err.0.contains("at most 250"), "{err}");
    let env = [("TICKER_TOKENS_PER_KEY", "60000")];
    assert!(parse(&[], &env).unwrap_err().0.contains("--token-capacity 100000"));
}

#[test]
#[cfg(feature = "cluster")]
fn a_cluster_has_no_token_table_to_protect_but_the_same_per_key_default() {
    let redis = ["--redis", "redis://127.0.0.1:6379/0"];
    assert_eq!(parse(&redis, &[]).unwrap().per_key_bound(), 10_000);
    let c = parse(&[&redis[..], &["--tokens-per-key", "200000"]].concat(), &[]).unwrap();
    assert_eq!(c.per_key_bound(), 200_000);
}

#[test]
fn trusted_proxies_are_a_list_of_networks_and_none_by_default() {
    let c = parse(&["--trusted-proxies", "10.0.0.0/8, ::1"], &[]).unwrap();
    assert_eq!(c.trusted_proxies.to_string(), "10.0.0.0/8,::1/128");
    let c = parse(&[], &[("TICKER_TRUSTED_PROXIES", "192.168.0.0/16")]).unwrap();
    assert!(c.trusted_proxies.contains("192.168.3.4".parse().unwrap()));
    let err = parse(&["--trusted-proxies", "10.0.0.1/8"], &[]).unwrap_err();
    assert!(err.0.starts_with("--trusted-proxies") && err.0.contains("10.0.0.0/8"), "{err}");
    assert!(parse(&["--trusted-proxies", "proxy.local"], &[]).is_err());
}

#[test]
fn a_refused_redis_url_never_shows_its_password() {
    for url in [
        "http://:hunter2@cache:6379/0",
        "rediss://app:hunter2@cache",
        "cache:6379",
        "redis://app:hunter2@cache:notaport/0",
        "redis://:hunter2@cache:6379/zero",
    ] {
        // (A build without the cluster refuses every --redis, in words of its own.)
        let err = parse(&["--redis", url], &[]).unwrap_err();
        assert!(!err.0.contains("hunter2"), "{err}");
        assert!(err.0.starts_with("--redis"), "{err}");
        let from_env = parse(&[], &[("TICKER_REDIS", url)]).unwrap_err();
        assert!(!from_env.0.contains("hunter2"), "{from_env}");
    }
    let err = parse(&["--redis", "http://:hunter2@cache"], &[]).unwrap_err();
    assert!(err.0.contains(r#""http://:***@cache""#), "{err}");
}

#[test]
#[cfg(feature = "cluster")]
fn sentinels_name_the_cluster_with_a_master_name_and_exclude_a_url() {
    let c = parse(&["--redis-sentinels", "10.0.0.1:26379, [::1]:26380"], &[]).unwrap();
    assert!(c.clustered());
    let sentinels = vec!["10.0.0.1:26379".to_owned(), "[::1]:26380".to_owned()];
    let master = DEFAULT_MASTER.to_owned();
    let want = RedisTarget::Sentinels { sentinels: sentinels.clone(), master };
    assert_eq!(c.redis_target(), Some(want));
    let env = [("TICKER_REDIS_SENTINELS", "10.0.0.1:26379,[::1]:26380")];
    let c = parse(&["--redis-master", "prices"], &env).unwrap();
    let want = RedisTarget::Sentinels { sentinels, master: "prices".into() };
    assert_eq!(c.redis_target(), Some(want));

    let both = ["--redis", "redis://127.0.0.1/", "--redis-sentinels", "127.0.0.1:26379"];
    let err = parse(&both, &[]).unwrap_err();
    assert!(err.0.contains("--redis and --redis-sentinels"), "{err}");
    for bad in ["127.0.0.1", "127.0.0.1:0", ":26379", "a:1,", "redis://h:1"] {
        let err = parse(&["--redis-sentinels", bad], &[]).unwrap_err();
        assert!(err.0.starts_with("--redis-sentinels"), "{bad}: {err}");
    }
    assert!(parse(&["--redis-master", ""], &env).is_err());
    assert_eq!(parse(&[], &[]).unwrap().redis_target(), None);
}

#[test]
#[cfg(not(feature = "cluster"))]
fn a_build_without_the_cluster_refuses_sentinels() {
    let err = parse(&["--redis-sentinels", "127.0.0.1:26379"], &[]).unwrap_err();
    assert!(err.0.starts_with("--redis-sentinels"), "{err}");
}

#[test]
#[cfg(feature = "tls")]
fn tls_takes_a_certificate_and_a_key_together() {
    let c = parse(&[], &[]).unwrap();
    assert_eq!((c.tls_cert, c.tls_key), (None, None));
    let c = parse(&["--tls-cert", "c.pem"], &[("TICKER_TLS_KEY", "k.pem")]).unwrap();
    assert_eq!(c.tls_cert, Some(PathBuf::from("c.pem")));
    assert_eq!(c.tls_key, Some(PathBuf::from("k.pem")));
    let alone = parse(&["--tls-cert", "c.pem"], &[]).unwrap_err();
    assert!(alone.0.contains("--tls-key"), "{alone}");
    assert!(parse(&[], &[("TICKER_TLS_KEY", "k.pem")]).is_err());
}

#[test]
#[cfg(feature = "exchanges")]
fn the_price_source_is_sim_unless_an_exchange_is_named() {
    let c = parse(&[], &[]).unwrap();
    assert_eq!((c.source, c.stale_after), (SourceKind::Sim, Duration::from_secs(10)));
    let c = parse(
        &["--source", "coinbase", "--source-url", "ws://127.0.0.1:9/x"],
        &[("TICKER_STALE_AFTER", "2s"), ("TICKER_SOURCE_CA", "ca.pem")],
    )
    .unwrap();
    assert_eq!(c.source, SourceKind::Exchange(Exchange::Coinbase));
    let up = c.upstream_config(Exchange::Coinbase);
    assert_eq!(up.url, "ws://127.0.0.1:9/x");
    assert_eq!((up.silence, up.stale_after), (Duration::from_secs(5), Duration::from_secs(2)));
    assert_eq!(up.ca, Some(PathBuf::from("ca.pem")));
    let c = parse(&[], &[("TICKER_SOURCE", "kraken")]).unwrap();
    assert_eq!(c.upstream_config(Exchange::Kraken).url, "wss://ws.kraken.com/v2");
    assert!(parse(&["--source", "ftx"], &[]).is_err());
    assert!(parse(&["--source", "binance", "--source-url", "http://x"], &[]).is_err());
    assert!(parse(&["--source-url", "wss://x/"], &[]).unwrap_err().0.contains("--source"));
}

#[test]
fn flags_override_environment_which_overrides_defaults() {
    let c = parse(&["--tick", "20ms"], &[("TICKER_TICK", "5s"), ("TICKER_ADDR", "127.0.0.1:0")])
        .unwrap();
    assert_eq!(c.tick_interval, Duration::from_millis(20));
    assert_eq!(c.addr.to_string(), "127.0.0.1:0");
    let c = parse(&["--token-ttl=2m"], &[]).unwrap();
    assert_eq!(c.token_ttl, Duration::from_secs(120));
}

#[test]
fn bad_values_name_the_option() {
    let err = parse(&["--tick", "10"], &[]).unwrap_err();
    assert!(err.0.starts_with("--tick"), "{err}");
    let err = parse(&[], &[("TICKER_SYMBOLS", "BTC:abc")]).unwrap_err();
    assert!(err.0.starts_with("TICKER_SYMBOLS"), "{err}");
    assert!(parse(&["--nope", "1"], &[]).is_err());
    assert!(parse(&["--addr"], &[]).is_err());
    assert!(parse(&["--symbols", "A:1,A:2"], &[]).is_err());
}

#[test]
fn every_refused_value_names_its_option_and_repeats_what_was_given() {
    let mut refused = 0;
    for opt in OPTIONS {
        for given in ["bogus!", "0", "0ms", "99999999999999999999999"] {
            let mut c = Config::default();
            let Err(e) = (opt.apply)(&mut c, given) else { continue };
            refused += 1;
            let msg = e.about(&format!("--{}", opt.flag));
            assert!(msg.starts_with(&format!("--{}", opt.flag)), "{msg}");
            assert!(msg.contains(given), "what was given: {msg}");
            assert!(!msg.contains("..="), "Rust's range syntax: {msg}");
        }
    }
    assert!(refused > 80, "{refused} refusals checked");
}

#[test]
fn the_messages_of_the_issue_read_as_sentences_about_the_option() {
    let err = |args: &[&str]| parse(args, &[]).unwrap_err().0;
    assert_eq!(err(&["--tick", "0ms"]), "--tick must be between 1ms and 1h, got 0ms");
    assert!(err(&["--addr", "localhost:8085"]).starts_with("--addr expects IP:PORT"));
    assert!(err(&["--addr", ":8085"]).contains("0.0.0.0:8085 (every interface)"));
    assert_eq!(
        parse(&[], &[("TICKER_TOKEN_TTL", "31d")]).unwrap_err().0,
        "TICKER_TOKEN_TTL expects a duration between 1s and 720h with a unit: ms, s, m or \
         h (got \"31d\")"
    );
    assert_eq!(
        err(&["--ping-after", "2m"]),
        "--dead-after (1m) must be longer than --ping-after (2m)"
    );
}

#[test]
fn the_token_key_comes_from_the_environment_only() {
    assert!(parse(&[], &[]).unwrap().token_key.is_none());
    let c = parse(&[], &[("TICKER_TOKEN_KEY", "0123456789abcdef")]).unwrap();
    assert!(c.token_key.is_some());
    let short = parse(&[], &[("TICKER_TOKEN_KEY", "s3cret")]).unwrap_err().0;
    assert!(short.contains("16") && short.contains("got 6 bytes"), "{short}");
    assert!(!short.contains("s3cret"), "a secret is never repeated: {short}");
    let err = parse(&["--token-key", "0123456789abcdef"], &[]).unwrap_err();
    assert!(err.0.contains("TICKER_TOKEN_KEY"), "{err}");
}

#[test]
fn a_subset_reads_its_rows_and_leaves_the_rest() {
    let args: Vec<String> =
        ["list", "--db", "/tmp/x.db", "--user", "u"].iter().map(|s| s.to_string()).collect();
    let (c, rest) = parse_subset(&args, |_| None, &["db"]).unwrap();
    assert_eq!(c.db_path, PathBuf::from("/tmp/x.db"));
    assert_eq!(rest, ["list", "--user", "u"]);
    let env = |k: &str| (k == "TICKER_DB").then(|| "/tmp/env.db".to_string());
    let (c, _) = parse_subset(&[], env, &["db"]).unwrap();
    assert_eq!(c.db_path, PathBuf::from("/tmp/env.db"));
}

#[test]
fn help_lists_every_option_and_its_variable() {
    let help = help_text();
    for opt in OPTIONS {
        assert!(help.contains(&format!("--{}", opt.flag)));
        assert!(help.contains(opt.env));
    }
    for opt in ENV_ONLY {
        assert!(help.contains(opt.env));
    }
}

#[test]
fn every_field_starts_at_the_value_its_row_gives_its_default() {
    let start = Config::default();
    let mut again = start.clone();
    for opt in OPTIONS.iter().chain(ENV_ONLY) {
        (opt.apply)(&mut again, &opt.default_value()).expect("a default is accepted");
    }
    assert_eq!(format!("{again:?}"), format!("{start:?}"));
    assert_eq!(start.backlog, system_somaxconn(), "no placeholder survives");
    assert_eq!(start.control_rate, 10);
    assert_eq!(start.http_limits().max_headers, 100);
}

#[test]
fn a_subset_reads_values_the_way_the_server_does_and_keeps_what_is_not_its_own() {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let err = parse_subset(&args(&["list", "--db"]), |_| None, &["db"]).unwrap_err();
    assert_eq!(err.0, "--db needs a value");
    assert_eq!(err, parse(&["--db"], &[]).unwrap_err());
    let err = parse_subset(&args(&["--db="]), |_| None, &["db"]).unwrap_err();
    assert!(err.0.starts_with("--db"), "{err}");
    let env = |k: &str| (k == "TICKER_DB").then(String::new);
    assert!(parse_subset(&[], env, &["db"]).unwrap_err().0.starts_with("TICKER_DB"));
    let theirs = args(&["--help", "-h", "--token-key", "k", "--", "--tick=5s", "x"]);
    let (c, rest) = parse_subset(&theirs, |_| None, &["db"]).unwrap();
    assert_eq!(rest, theirs);
    assert_eq!(c.tick_interval, Duration::from_millis(10), "not a row of this subset");
}

#[test]
fn the_server_refuses_what_is_not_an_option_in_the_words_it_always_used() {
    let err = |args: &[&str]| parse(args, &[]).unwrap_err().0;
    assert_eq!(err(&["serve"]), r#"unexpected argument "serve" (see --help)"#);
    assert_eq!(err(&["--nope=1"]), "unknown option --nope (see --help)");
    assert_eq!(err(&["--"]), "unknown option -- (see --help)");
    assert_eq!(
        err(&["--token-key=0123456789abcdef"]),
        "--token-key is not accepted on the command line; set TICKER_TOKEN_KEY instead"
    );
    assert!(matches!(
        parse_args(&["--tick".into(), "5s".into(), "-V".into()], |_| None),
        Ok(Command::Version)
    ));
    assert!(err(&["--tick", "5", "--help"]).starts_with("--tick"), "in the order given");
}

#[test]
fn a_missing_part_is_refused_in_one_sentence_naming_the_option_and_the_feature() {
    let sentence = "this build has no `cluster` (built with --no-default-features); \
                    `cargo build --release` builds every part";
    assert_eq!(Part::Cluster.missing(), sentence);
    assert_eq!(not_built_in("cluster"), sentence);
    assert_eq!(refusal("--redis", Part::Cluster), format!("--redis: {sentence}"));
    let sentinels = RedisTarget::Sentinels { sentinels: vec!["h:1".into()], master: "m".into() };
    assert_eq!(features::no_cluster(&sentinels), format!("--redis-sentinels: {sentence}"));
    let features: Vec<&str> = Part::ALL.iter().map(|p| p.feature()).collect();
    assert_eq!(features, ["tls", "cluster", "exchanges"]);
    let built: Vec<&str> =
        Part::ALL.iter().filter(|p| p.is_built_in()).map(|p| p.feature()).collect();
    let listed = if built.is_empty() { "no optional parts".to_owned() } else { built.join(", ") };
    assert_eq!(built_in_parts(), listed);
    assert_eq!(check_built_in(&Config::default()), Ok(()));
}

#[test]
#[cfg(not(feature = "tls"))]
fn a_build_without_tls_refuses_a_certificate() {
    let err = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"], &[]).unwrap_err();
    assert_eq!(err.0, refusal("--tls-cert/--tls-key", Part::Tls));
}
