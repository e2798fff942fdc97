//! TLS on the links to PostgreSQL (issue 22, item 3; docs/security.md): a private cluster that
//! accepts TCP connections only over TLS (`hostssl` lines alone), its certificate signed by a
//! CA of the test's, and the whole stack — provisioning, migrations, dispatch and the query
//! service — given URLs with `sslmode=verify-full&sslrootcert=…`. Shown: a whistle goes through
//! and is read back over gRPC; every connection of the stack's roles is encrypted; a plaintext
//! connection is refused by the server; a client trusting another CA refuses the server.

use std::path::Path;

use sqlx::Connection as _;
use whistle_testkit::{find_pg_bindir, give_to_cluster_user, PgCluster};

use crate::harness::*;

/// A CA and a server certificate for 127.0.0.1 it signs, as PEM: (CA certificate, server
/// certificate, server key).
fn certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Whistle test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), server.pem(), key.serialize_pem())
}

/// Writes `text` to `dir/name`, readable by its owner only (PostgreSQL refuses a key others can
/// read), and returns the path as `postgresql.conf` quotes it.
fn write_private(dir: &Path, name: &str, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!("'{}'", path.display())
}

#[tokio::test]
async fn the_stack_reaches_a_tls_only_postgresql_with_verified_certificates() {
    let bindir = find_pg_bindir().expect("PostgreSQL's initdb and pg_ctl in /usr/lib/postgresql");
    let work = TempDir::new("pg-tls").unwrap();
    let (ca, cert, key) = certificates();
    let server_files = work.path().join("server");
    std::fs::create_dir_all(&server_files).unwrap();
    let cert_file = write_private(&server_files, "server.crt", &cert);
    let key_file = write_private(&server_files, "server.key", &key);
    // The superuser of the test may sign in without a password; every other role with SCRAM.
    // No `host` line: a connection without TLS matches nothing and is refused.
    let hba_file = write_private(
        &server_files,
        "pg_hba.conf",
        "local all all trust\n\
         hostssl all postgres 127.0.0.1/32 trust\n\
         hostssl all all 127.0.0.1/32 scram-sha-256\n",
    );
    give_to_cluster_user(&server_files).unwrap();
    let cluster = PgCluster::start_with(
        &bindir,
        &work.path().join("primary"),
        &[
            ("ssl", "on"),
            ("ssl_cert_file", &cert_file),
            ("ssl_key_file", &key_file),
            ("hba_file", &hba_file),
        ],
    )
    .await
    .unwrap();
    let ca_file = work.path().join("ca.crt");
    std::fs::write(&ca_file, &ca).unwrap();
    let verified = |url: String| {
        format!(
            "{url}?sslmode=verify-full&sslrootcert={}",
            ca_file.display()
        )
    };

    let stack = Stack::builder()
        .on_database_server(verified(cluster.url("postgres")))
        .with_query()
        .at(ten_o_clock_in_ordos())
        .start()
        .await;
    assert!(
        stack.db().dispatch_url.contains("sslmode=verify-full"),
        "the services' URLs carry the TLS settings: {}",
        stack.db().dispatch_url
    );
    let (_, [grid, ..], _, _) = places();
    let incident = stack.whistled("pg-tls-1", &grid).await;
    let read = stack
        .client()
        .get_incident(whistle_proto::v1::GetIncidentRequest {
            incident_id: incident.to_string(),
        })
        .await
        .expect("the query service reads the incident over TLS")
        .into_inner();
    assert_eq!(
        read.incident.expect("the incident").incident_id,
        incident.to_string()
    );

    // Every connection of the stack's own roles (owner, dispatch, query) is encrypted.
    let mut admin = sqlx::PgConnection::connect(&verified(cluster.url("postgres")))
        .await
        .unwrap();
    let (plain, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE NOT s.ssl), count(*) FILTER (WHERE s.ssl)
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.usename LIKE $1 || '%'",
    )
    .bind(&stack.db().name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(plain, 0, "no plaintext connection of the stack's roles");
    assert!(
        encrypted >= 2,
        "dispatch and query hold connections: {encrypted}"
    );

    // Without TLS the server refuses; trusting another CA, the client refuses the server.
    let refused =
        sqlx::PgConnection::connect(&format!("{}?sslmode=disable", cluster.url("postgres")))
            .await
            .expect_err("a plaintext connection");
    assert!(
        refused.to_string().contains("no encryption"),
        "the server names why: {refused}"
    );
    let (other_ca, _, _) = certificates();
    let other_ca_file = work.path().join("other-ca.crt");
    std::fs::write(&other_ca_file, other_ca).unwrap();
    let untrusted = sqlx::PgConnection::connect(&format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.url("postgres"),
        other_ca_file.display()
    ))
    .await
    .expect_err("a server whose certificate another CA signed");
    assert!(
        untrusted.to_string().to_lowercase().contains("certificate"),
        "the client names the certificate: {untrusted}"
    );
}
