//! Kafka over TLS with client certificates and a SASL/SCRAM login: the real broker (tansu) is
//! reached through the harness's TLS proxy (a test CA made at run time, client certificates
//! required), whose address it advertises. The SCRAM user
//! is created with confluent-kafka's admin client (a Kafka client independent of frazil's) while
//! the broker is open, then the broker restarts requiring a SASL login (tansu offers SCRAM and
//! OAUTHBEARER, not PLAIN, and a user cannot be created once logins are required).

mod common;

use std::path::Path;
use std::process::Command;

use common::tls::{TestCerts, TlsProxy};
use common::*;

fn create_scram_user(kafka: &str, certs: &TestCerts, user: &str, password: &str) {
    let out = Command::new(venv_python())
        .arg(repo().join("tests/check/scram_user.py"))
        .args(["--bootstrap", kafka, "--ca", path_str(&certs.ca_file), "--user", user, "--password", password])
        .args(["--cert", path_str(&certs.client_cert_file), "--key", path_str(&certs.client_key_file)])
        .args(["--mechanism", "SCRAM-SHA-256"])
        .output()
        .expect("run scram_user.py");
    assert!(out.status.success(), "scram_user.py: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn tls_client_certs_and_scram_login_with_clear_errors_for_each_refusal() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::new(certs_dir.path(), "kafka");
    // The broker also asks for a client certificate the test CA signed.
    let tls = TlsProxy::listen_requiring_client_certs(&certs);
    let kafka = format!("127.0.0.1:{}", tls.port);
    let advertised = [("FRAZIL_KAFKA_ADVERTISED", kafka.as_str())];
    let servers = Servers::start_with(&advertised);
    tls.set_upstream(servers.get("FRAZIL_KAFKA").parse().unwrap());
    secure_broker(&kafka, certs.client_config(true), None);
    create_scram_user(&kafka, &certs, "frazil", "s3cret-pw");
    block_on(create_topic(&kafka, "guarded", 2));
    let expected = block_on(produce(&kafka, "guarded", 2, 0..500));
    servers.ctl("stop", "kafka", false);
    servers.ctl_with("start", "kafka", false, &[advertised[0], ("FRAZIL_KAFKA_AUTH", "1")]);

    let dir = servers.dir.path();
    let config = servers.config(&["guarded"], "");
    let base = std::fs::read_to_string(&config).unwrap().replace(servers.get("FRAZIL_KAFKA"), &kafka);
    let with = |ca: &Path, password: &str, client_cert: bool| {
        let password_file = dir.join("kafka-password");
        write_config(&password_file, &format!("{password}\n"));
        let mut kafka_keys = format!(
            "[kafka]\nrequest_timeout = \"5s\"\nca_file = \"{}\"\nsasl_mechanism = \"SCRAM-SHA-256\"\nusername = \"frazil\"\npassword_file = \"{}\"\n",
            ca.display(),
            password_file.display()
        );
        if client_cert {
            kafka_keys += &format!(
                "cert_file = \"{}\"\nkey_file = \"{}\"\n",
                certs.client_cert_file.display(),
                certs.client_key_file.display()
            );
        }
        write_config(&config, &base.replace("[kafka]\n", &kafka_keys));
    };

    // No client certificate: the broker's TLS refuses the connection.
    with(&certs.ca_file, "s3cret-pw", false);
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("kafka.cert_file") && log.contains("refused the client certificate"), "{log}");

    with(&certs.ca_file, "not-the-password", true);
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("kafka.password") && log.contains("refused the SASL login"), "{log}");

    with(&certs.other_ca_file, "s3cret-pw", true);
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("kafka.ca_file") && log.contains("not trusted"), "{log}");
    assert_eq!(servers.rows_now("guarded"), 0);

    with(&certs.ca_file, "s3cret-pw", true);
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert_table_exactly(&servers, "guarded", &expected);

    // A consumer group's own connection (coordinator, join, heartbeats) logs in the same way:
    // a flush in a group, into a table of its own (the group's offsets start at the beginning).
    let secured = std::fs::read_to_string(&config).unwrap();
    let grouped = secured.replace("[kafka]\n", "[kafka]\ngroup = \"secure\"\n")
        + "\n[catalog.tables]\n\"guarded\" = \"guarded_group\"\n";
    write_config(&config, &grouped);
    let (code, log) = servers.frazil(&["flush", "--max-duration", "90s", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("generation") && log.contains("assigns this agent 2 partition(s)"), "{log}");
    assert_table_exactly(&servers, "guarded_group", &expected);
}
