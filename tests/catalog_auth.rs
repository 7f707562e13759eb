//! The REST catalog over HTTPS with credentials: the real catalog behind the harness's
//! TLS-terminating proxy (a test CA made at run time) and its HTTP proxy, which stands for the
//! catalog's OAuth2 server and checks bearer tokens (the catalog itself runs without auth here).

mod common;

use std::path::Path;
use std::time::Duration;

use common::proxy::Proxy;
use common::tls::TlsProxy;
use common::*;

/// A config whose catalog is `uri`, with `extra` keys in `[catalog]`.
fn config_for(servers: &Servers, uri: &str, extra: &str) -> std::path::PathBuf {
    let config = servers.config(&["secure"], &format!("commit_interval = \"1s\"\n{extra}"));
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("uri = \"{}\"", servers.get("FRAZIL_CATALOG")), &format!("uri = \"{uri}\""));
    write_config(&config, &text);
    config
}

fn secret_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    write_config(&path, text);
    path.display().to_string()
}

fn token_requests(log: &[common::proxy::Exchange]) -> usize {
    log.iter().filter(|e| e.path.ends_with("/v1/oauth/tokens")).count()
}

#[test]
fn https_catalog_with_oauth2_tokens_refreshed_before_they_expire() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let proxy = Proxy::start(servers.get("FRAZIL_CATALOG"));
    proxy.require_tokens("gw-7", "s3cret", Duration::from_secs(3), None);
    let tls = TlsProxy::start(proxy.url.trim_start_matches("http://").parse().unwrap(), servers.dir.path());
    block_on(create_topic(&kafka, "secure", 2));
    let mut expected = block_on(produce(&kafka, "secure", 2, 0..300));
    let dir = servers.dir.path();
    let ca = tls.ca_file.display().to_string();

    // A wrong secret: one token request, refused, and a config error naming the key.
    let wrong = secret_file(dir, "wrong-credential", "gw-7:guess\n");
    let config = config_for(&servers, &tls.url(), &format!("ca_file = \"{ca}\"\ncredential_file = \"{wrong}\""));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("catalog.credential") && log.contains("refused the client credentials"), "{log}");
    assert_eq!(token_requests(&proxy.take()), 1, "no retry storm against the token endpoint");

    // The right secret, but a CA that did not sign the catalog's certificate.
    let right = secret_file(dir, "credential", "gw-7:s3cret\n");
    let other = tls.other_ca_file.display().to_string();
    let config = config_for(&servers, &tls.url(), &format!("ca_file = \"{other}\"\ncredential_file = \"{right}\""));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("catalog.ca_file") && log.contains("not trusted"), "{log}");
    assert!(proxy.take().is_empty(), "nothing passed the TLS handshake");

    // Both right: `run` commits every second while tokens live 3 s; it must get new ones before
    // the old ones expire, so the catalog never answers 401.
    let config = config_for(&servers, &tls.url(), &format!("ca_file = \"{ca}\"\ncredential_file = \"{right}\""));
    let log_path = dir.join("run.log");
    let mut run = start_frazil("run", &config, &log_path, &[("FRAZIL_LOG", "debug")]);
    assert!(
        wait_until(Duration::from_secs(60), || servers.rows_now("secure") == 300),
        "{}",
        std::fs::read_to_string(&log_path).unwrap()
    );
    std::thread::sleep(Duration::from_secs(4));
    expected.extend(block_on(produce(&kafka, "secure", 2, 300..600)));
    assert!(
        wait_until(Duration::from_secs(60), || servers.rows_now("secure") == 600),
        "{}",
        std::fs::read_to_string(&log_path).unwrap()
    );
    std::process::Command::new("kill").args(["-TERM", &run.child().id().to_string()]).status().unwrap();
    assert!(run.wait().success());
    let exchanges = proxy.take();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(token_requests(&exchanges) >= 2, "tokens were renewed: {exchanges:?}\n{log}");
    let refused: Vec<_> = exchanges.iter().filter(|e| e.answered == Some(401)).collect();
    assert!(refused.is_empty(), "no request went out with an expired token: {refused:?}\n{log}");
    assert!(exchanges.iter().any(|e| e.commit && e.answered == Some(200)), "{exchanges:?}");
    assert_table_exactly(&servers, "secure", &expected);
}

#[test]
fn a_fixed_bearer_token_and_a_refused_one() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let proxy = Proxy::start(servers.get("FRAZIL_CATALOG"));
    proxy.require_tokens("unused", "unused", Duration::from_secs(60), Some("fixed-token-1"));
    block_on(create_topic(&kafka, "secure", 1));
    let expected = block_on(produce(&kafka, "secure", 1, 0..100));
    let dir = servers.dir.path();

    let bad = secret_file(dir, "bad-token", "fixed-token-0\n");
    let config = config_for(&servers, &proxy.url, &format!("token_file = \"{bad}\""));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("catalog.token") && log.contains("HTTP 401"), "{log}");
    let seen = proxy.take();
    assert_eq!(seen.len(), 1, "one refused request, no retries: {seen:?}\n{log}");

    let good = secret_file(dir, "token", "fixed-token-1\n");
    let config = config_for(&servers, &proxy.url, &format!("token_file = \"{good}\""));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert_table_exactly(&servers, "secure", &expected);
}
