use super::values::{parse_duration, parse_rate};
use super::*;

fn run(line: &str) -> Result<Args, ArgError> {
    match parse(line.split_whitespace().map(String::from), None)? {
        Command::Run(args) => Ok(*args),
        other => panic!("not a run: {other:?}"),
    }
}

#[test]
fn the_issue_example_parses() {
    let a = run(
        "--url http://127.0.0.1:8081 --api-key KEY --connections 2000 --ramp 500/s --duration 30s",
    )
    .unwrap();
    assert_eq!(
        a.targets,
        [Target { host: "127.0.0.1".into(), port: 8081, ws_path: "/ws/ticker".into(), tls: false }]
    );
    assert_eq!(a.auth, Auth::ApiKey("KEY".into()));
    assert_eq!(a.connections, 2000);
    assert_eq!(a.ramp_per_sec, 500.0);
    assert_eq!(a.duration, Duration::from_secs(30));
    assert_eq!(a.threads, 1);
    assert_eq!(a.targets[0].ws_url(), "ws://127.0.0.1:8081/ws/ticker");
}

#[test]
fn every_option_is_read_with_a_space_or_an_equals_sign() {
    let a = run("--url=ws://[::1]:9000/feed?x=1 --no-auth -c 5 --ramp=60/m --warmup 500ms -d 2m \
                 --connect-timeout 3s --threads 2 --bind 127.0.0.2,127.0.0.3 --server-pid 42 \
                 --json out.json --report r.html --quiet")
    .unwrap();
    assert_eq!(
        a.targets,
        [Target { host: "[::1]".into(), port: 9000, ws_path: "/feed?x=1".into(), tls: false }]
    );
    assert_eq!(a.auth, Auth::None);
    assert_eq!((a.connections, a.ramp_per_sec, a.threads), (5, 1.0, 2));
    assert_eq!(a.warmup, Duration::from_millis(500));
    assert_eq!(a.duration, Duration::from_secs(120));
    assert_eq!(a.connect_timeout, Duration::from_secs(3));
    assert_eq!(a.bind.len(), 2);
    assert_eq!(a.server_pid, Some(42));
    assert_eq!(a.json, Some(PathBuf::from("out.json")));
    assert_eq!(a.report, [PathBuf::from("r.html")]);
    assert!(a.quiet);
}

#[test]
fn deflate_and_delta_are_off_unless_asked_and_delta_stays_out_of_the_url() {
    let a = run("--no-auth --url ws://h:1/ws").unwrap();
    assert!(!a.deflate && !a.delta);
    let a = run("--no-auth --url ws://h:1/ws?x=1 --deflate --delta").unwrap();
    assert!(a.deflate && a.delta);
    assert_eq!(a.targets[0].ws_path, "/ws?x=1", "delta=1 is added per request, not here");
    for line in
        ["--no-auth --url ws://h:1/ws?delta=1", "--no-auth --url ws://h:1/ws?delta=0 --delta"]
    {
        assert!(matches!(run(line), Err(ArgError::Conflict(_))), "{line}");
    }
}

#[test]
fn a_repeated_url_gives_every_target_in_the_order_given() {
    let a = run("--no-auth --url ws://b:2/x --url=ws://a:1/y --url ws://c:3/z").unwrap();
    let urls: Vec<String> = a.targets.iter().map(Target::ws_url).collect();
    assert_eq!(urls, ["ws://b:2/x", "ws://a:1/y", "ws://c:3/z"]);
}

#[test]
fn path_applies_to_every_http_url_and_the_default_is_one_local_url() {
    let a = run("--token t --url http://n1:8081 --path /feed --url http://n2:8081").unwrap();
    let urls: Vec<String> = a.targets.iter().map(Target::ws_url).collect();
    assert_eq!(urls, ["ws://n1:8081/feed", "ws://n2:8081/feed"]);
    let a = run("--no-auth").unwrap();
    let urls: Vec<String> = a.targets.iter().map(Target::ws_url).collect();
    assert_eq!(urls, ["ws://127.0.0.1:8081/ws/ticker"]);
}

#[test]
fn https_and_wss_urls_are_tls_targets_on_port_443_by_default() {
    let a = run("--api-key k --url https://ticker.example --path /feed").unwrap();
    assert_eq!(
        a.targets,
        [Target { host: "ticker.example".into(), port: 443, ws_path: "/feed".into(), tls: true }]
    );
    assert_eq!(a.targets[0].ws_url(), "wss://ticker.example:443/feed");
    assert_eq!(a.targets[0].host_header(), "ticker.example:443");
    assert_eq!(a.ca, None, "without --ca: the web PKI roots");

    let a = run("--no-auth --url wss://[::1]:8443/ws/ticker?x=1 --url=wss://h").unwrap();
    let urls: Vec<String> = a.targets.iter().map(Target::ws_url).collect();
    assert_eq!(urls, ["wss://[::1]:8443/ws/ticker?x=1", "wss://h:443/"]);
    assert!(a.targets.iter().all(|t| t.tls));

    let a = run("--token t --url https://127.0.0.1:8443/").unwrap();
    assert_eq!((a.targets[0].port, a.targets[0].ws_path.as_str()), (8443, "/ws/ticker"));
    assert!(matches!(run("--no-auth --url wss://h/x --path /y"), Err(ArgError::Conflict(_))));
}

#[test]
fn ca_names_a_pem_file_and_needs_a_tls_url() {
    let a = run("--api-key k --url https://h:8443 --ca ca.pem").unwrap();
    assert_eq!(a.ca, Some(PathBuf::from("ca.pem")));
    let a = run("--api-key k --ca=/etc/ca.pem --url wss://h/ws").unwrap();
    assert_eq!(a.ca, Some(PathBuf::from("/etc/ca.pem")));
    assert_eq!(
        run("--api-key k --url http://h:8081 --ca ca.pem"),
        Err(ArgError::Conflict("--ca is for https:// and wss:// URLs"))
    );
    assert_eq!(run("--no-auth --url wss://h --ca"), Err(ArgError::MissingValue("--ca")));
}

#[test]
fn plain_and_tls_urls_may_be_mixed_each_with_its_own_scheme() {
    let a = run("--api-key k --url http://a:8081 --url https://b --url wss://c:9/s --ca ca.pem")
        .unwrap();
    let schemes: Vec<(bool, u16)> = a.targets.iter().map(|t| (t.tls, t.port)).collect();
    assert_eq!(schemes, [(false, 8081), (true, 443), (true, 9)]);
    let a = run("--no-auth --url ws://a --url wss://b").unwrap();
    let ports: Vec<u16> = a.targets.iter().map(|t| t.port).collect();
    assert_eq!(ports, [80, 443]);
}

#[test]
fn one_bad_url_among_several_is_an_error() {
    assert!(matches!(
        run("--no-auth --url ws://a:1/ --url ftp://b/"),
        Err(ArgError::Invalid { flag: "--url", .. })
    ));
    assert!(matches!(
        run("--no-auth --url http://a:1 --url ws://b:2/ --path /p"),
        Err(ArgError::Conflict(_))
    ));
}

#[test]
fn durations_accept_ms_s_and_m_only() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("0"), Some(Duration::ZERO));
    for bad in ["", "5", "5h", "s", "-1s", "1.2.3s"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn ramps_are_per_second_or_per_minute() {
    let parse_ramp = |v| parse_rate("--ramp", v);
    assert_eq!(parse_ramp("500/s"), Ok(500.0));
    assert_eq!(parse_ramp("120/m"), Ok(2.0));
    assert_eq!(parse_ramp("7"), Ok(7.0));
    assert!(parse_ramp("0/s").is_err());
    assert!(parse_ramp("5/h").is_err());
}

#[test]
fn token_per_connection_needs_an_api_key() {
    assert!(!run("--api-key K").unwrap().token_per_connection);
    assert!(run("--api-key K --token-per-connection").unwrap().token_per_connection);
    for other in ["--no-auth", "--token T"] {
        assert_eq!(
            run(&format!("{other} --token-per-connection")),
            Err(ArgError::Conflict("--token-per-connection needs --api-key"))
        );
    }
}

#[test]
fn churn_is_a_rate_and_off_by_default() {
    assert_eq!(run("--no-auth").unwrap().churn_per_sec, None);
    assert_eq!(run("--no-auth --churn 50/s").unwrap().churn_per_sec, Some(50.0));
    assert_eq!(run("--no-auth --churn=600/m").unwrap().churn_per_sec, Some(10.0));
    assert!(matches!(run("--no-auth --churn 0"), Err(ArgError::Invalid { flag: "--churn", .. })));
}

#[test]
fn subscribe_repeats_one_set_per_flag_in_the_order_given() {
    assert_eq!(run("--no-auth").unwrap().subscription, Subscription::All);
    let a = run("--no-auth --subscribe BTC-USD,ETH-USD --subscribe=SOL-USD --subscribe A,,B,A")
        .unwrap();
    let Subscription::Sets(sets) = &a.subscription else { panic!("{:?}", a.subscription) };
    let texts: Vec<String> = sets.iter().map(SymbolSet::text).collect();
    assert_eq!(texts, ["BTC-USD,ETH-USD", "SOL-USD", "A,B"]);
    assert!(matches!(
        run("--no-auth --subscribe ,"),
        Err(ArgError::Invalid { flag: "--subscribe", .. })
    ));
    assert_eq!(run("--no-auth --subscribe"), Err(ArgError::MissingValue("--subscribe")));
    // Also on a ws:// URL with a query of its own, but not over a symbols= it has.
    let a = run("--no-auth --url ws://h/feed?x=1 --subscribe A").unwrap();
    assert!(matches!(a.subscription, Subscription::Sets(_)));
    assert!(matches!(
        run("--no-auth --url ws://h/feed?symbols=B --subscribe A"),
        Err(ArgError::Conflict(_))
    ));
}

#[test]
fn subscribe_random_takes_k_above_zero_and_a_seed_or_draws_one() {
    let a = run("--no-auth --subscribe-random 5 --seed 42").unwrap();
    assert_eq!(a.subscription, Subscription::Random { k: 5, seed: 42 });
    let a = run("--no-auth --subscribe-random=3").unwrap();
    assert!(matches!(a.subscription, Subscription::Random { k: 3, .. }));
    for bad in ["0", "-1", "x", ""] {
        assert!(
            matches!(
                run(&format!("--no-auth --subscribe-random={bad}")),
                Err(ArgError::Invalid { flag: "--subscribe-random", .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        run("--no-auth --subscribe-random 2 --seed x"),
        Err(ArgError::Invalid { flag: "--seed", .. })
    ));
}

#[test]
fn subscribe_and_subscribe_random_exclude_each_other_and_seed_needs_random() {
    assert_eq!(
        run("--no-auth --subscribe A --subscribe-random 2"),
        Err(ArgError::Conflict("use only one of --subscribe and --subscribe-random"))
    );
    assert_eq!(
        run("--no-auth --subscribe A --seed 1"),
        Err(ArgError::Conflict("--seed is for --subscribe-random"))
    );
    assert_eq!(
        run("--no-auth --seed 1"),
        Err(ArgError::Conflict("--seed is for --subscribe-random"))
    );
}

#[test]
fn merge_takes_files_reports_and_a_json_output() {
    let p = |s: &str| parse(s.split_whitespace().map(String::from), None);
    assert_eq!(
        p("merge a.json b.json --report m.html --report=m.svg --json m.json"),
        Ok(Command::Merge(Merge {
            files: vec!["a.json".into(), "b.json".into()],
            report: vec!["m.html".into(), "m.svg".into()],
            json: Some("m.json".into()),
        }))
    );
    assert_eq!(p("merge"), Err(ArgError::MissingValue("merge")));
    assert_eq!(p("merge --json"), Err(ArgError::MissingValue("--json")));
    assert!(matches!(p("merge a.json --report x.pdf"), Err(ArgError::Invalid { .. })));
    assert_eq!(p("merge a.json --bogus"), Err(ArgError::Unknown("--bogus".into())));
}

#[test]
fn auth_must_be_chosen_exactly_once() {
    assert_eq!(run("--connections 1"), Err(ArgError::NoAuth));
    assert!(matches!(run("--api-key a --token b"), Err(ArgError::Conflict(_))));
    assert!(matches!(run("--no-auth --token-in-query"), Err(ArgError::Conflict(_))));
    let from_env = parse(Vec::<String>::new(), Some("ENVKEY".into())).unwrap();
    assert!(matches!(from_env, Command::Run(a) if a.auth == Auth::ApiKey("ENVKEY".into())));
}

#[test]
fn bad_values_say_which_flag() {
    assert!(matches!(
        run("--no-auth --connections 0"),
        Err(ArgError::Invalid { flag: "--connections", .. })
    ));
    assert!(matches!(run("--no-auth --bind 1.2.3"), Err(ArgError::Invalid { flag: "--bind", .. })));
    assert!(matches!(
        run("--no-auth --report r.pdf"),
        Err(ArgError::Invalid { flag: "--report", .. })
    ));
    assert!(matches!(
        run("--no-auth --url ftp://x/"),
        Err(ArgError::Invalid { flag: "--url", .. })
    ));
    assert!(matches!(
        run("--no-auth --url https://x:1/ws"),
        Err(ArgError::Invalid { flag: "--url", .. })
    ));
    assert!(matches!(
        run("--no-auth --url wss://x:0/"),
        Err(ArgError::Invalid { flag: "--url", .. })
    ));
    assert!(matches!(
        run("--no-auth --url http://x:1/ws"),
        Err(ArgError::Invalid { flag: "--url", .. })
    ));
    assert_eq!(run("--no-auth --threads"), Err(ArgError::MissingValue("--threads")));
    assert_eq!(run("--bogus"), Err(ArgError::Unknown("--bogus".into())));
}

#[test]
fn a_refused_value_is_named_by_its_flag_and_repeated_after_what_is_accepted() {
    let err = |line: &str| run(line).unwrap_err().to_string();
    assert_eq!(
        err("--no-auth --connections 0"),
        "--connections must be a whole number of at least 1 (got \"0\")"
    );
    assert_eq!(
        err("--no-auth --duration 30"),
        "--duration expects a duration with a unit: ms, s or m (500ms, 30s, 2m) (got \"30\")"
    );
    assert_eq!(
        err("--no-auth --bind localhost"),
        "--bind expects IP addresses separated by commas (no names) (got \"localhost\")"
    );
    assert_eq!(
        err("--no-auth --url http://h:0"),
        "--url expects a port between 1 and 65535 (got \"http://h:0\")"
    );
    assert_eq!(
        err("--no-auth --ramp 0/s"),
        "--ramp expects a rate above zero: N/s, N/m or N (per second) (got \"0/s\")"
    );
}

#[test]
fn threads_never_exceed_connections_and_ws_urls_default_to_root() {
    let a = run("--no-auth --url ws://h --connections 2 --threads 8").unwrap();
    assert_eq!(a.threads, 2);
    assert_eq!(a.targets, [Target { host: "h".into(), port: 80, ws_path: "/".into(), tls: false }]);
}

#[test]
fn help_version_and_compare_are_commands() {
    let p = |s: &str| parse(s.split_whitespace().map(String::from), None);
    assert_eq!(p("--api-key k --help"), Ok(Command::Help));
    assert_eq!(p("-V"), Ok(Command::Version));
    assert_eq!(
        p("compare a.json b.json"),
        Ok(Command::Compare(vec!["a.json".into(), "b.json".into()]))
    );
    assert!(p("compare").is_err());
}

#[test]
fn without_flags_every_default_of_the_help_applies() {
    let a = run("--no-auth").unwrap();
    assert_eq!(a.targets[0].ws_url(), "ws://127.0.0.1:8081/ws/ticker");
    assert_eq!((a.connections, a.ramp_per_sec, a.threads), (100, 500.0, 1));
    assert_eq!(a.warmup, Duration::from_secs(1));
    assert_eq!(a.duration, Duration::from_secs(30));
    assert_eq!(a.connect_timeout, Duration::from_secs(10));
    assert_eq!((a.churn_per_sec, a.server_pid, a.json.as_ref()), (None, None, None));
    assert!(a.bind.is_empty() && a.report.is_empty() && !a.quiet && !a.token_per_connection);
    let text = help();
    for (flag, default) in [
        ("--url URL", "[default: http://127.0.0.1:8081]"),
        ("--path PATH", "[default: /ws/ticker]"),
        ("--connections N", "[default: 100]"),
        ("--ramp RATE", "[default: 500/s]"),
        ("--warmup DURATION", "[default: 1s]"),
        ("--duration DURATION", "[default: 30s]"),
        ("--connect-timeout D", "[default: 10s]"),
        ("--threads N", "[default: 1]"),
        ("--seed N", "[default: random, printed]"),
    ] {
        let at = text.find(&format!("    {flag} ")).unwrap_or_else(|| panic!("{flag}"));
        let next_flag = text[at + 6..].find("\n    -").map_or(text.len(), |i| at + 6 + i);
        assert!(text[at..next_flag].contains(default), "{flag}: {default}");
    }
}

#[test]
fn the_help_lists_every_flag_once_under_its_heading() {
    let text = help();
    for heading in ["USAGE:", "TARGET AND AUTH:", "LOAD:", "SUBSCRIPTIONS (", "MEASURE AND REPORT:"]
    {
        assert_eq!(text.matches(&format!("\n{heading}")).count(), 1, "{heading}");
    }
    for flag in [
        "--url",
        "--path",
        "--ca",
        "--api-key",
        "--token",
        "--token-in-query",
        "--no-auth",
        "--connections",
        "--ramp",
        "--warmup",
        "--duration",
        "--connect-timeout",
        "--threads",
        "--bind",
        "--churn",
        "--token-per-connection",
        "--subscribe",
        "--subscribe-random",
        "--seed",
        "--server-pid",
        "--json",
        "--report",
        "--quiet",
        "-h, --help",
        "-V, --version",
    ] {
        // A flag's own line: the flag, then its help from column 26 (or on the next line).
        let listed = text.lines().filter(|l| {
            let own = format!("    {flag}");
            l.starts_with(&format!("{own} "))
                && (l.len() == own.len() || l.get(24..26) == Some("  "))
                || *l == own
        });
        assert_eq!(listed.count(), 1, "{flag}");
    }
    assert!(text.lines().all(|l| l == l.trim_end()), "no trailing spaces");
}

#[test]
fn unlisted_short_names_and_merge_flags_read_like_the_long_ones() {
    let a = run("--no-auth -c 7 -d 1m -t 3 -q").unwrap();
    assert_eq!(
        (a.connections, a.duration, a.threads, a.quiet),
        (7, Duration::from_secs(60), 3, true)
    );
    assert_eq!(run("--no-auth -c"), Err(ArgError::MissingValue("--connections")));
    let p = |s: &str| parse(s.split_whitespace().map(String::from), None);
    assert_eq!(p("merge a.json --help"), Err(ArgError::Unknown("--help".into())));
    assert_eq!(p("merge a.json --json=x.json --quiet"), Err(ArgError::Unknown("--quiet".into())));
}
