//! TLS to a Gateway behind a private CA: refused without the CA bundle, accepted with it, and the token travels
//! only as the `session` header.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use secrecy::SecretString;
use tanium_operator::gateway::{
    GatewayClient, GatewayConfig, GatewayError, RetryPolicy, TlsVerification,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

const TOKEN: &str = "token-tls-test-0000";
const ANSWER: &str = r#"{"data":{"endpoints":{"totalRecords":7,"pageInfo":{"hasNextPage":false,"endCursor":null},"collectionInfo":null,"edges":[]}}}"#;

/// A one-purpose HTTPS server: answers every request with ANSWER and reports each request's head and body.
async fn https_server(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then as much body as Content-Length says.
                loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= head_end + 4 + len {
                            let _ = tx.send(text);
                            break;
                        }
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{ANSWER}",
                    ANSWER.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, rx)
}

fn client(url: &str, ca: Option<Vec<u8>>) -> GatewayClient {
    client_with(url, ca, TlsVerification::Verify).unwrap()
}

fn client_with(
    url: &str,
    ca: Option<Vec<u8>>,
    tls: TlsVerification,
) -> Result<GatewayClient, GatewayError> {
    let mut config = GatewayConfig::new(url, SecretString::from(TOKEN.to_owned()));
    config.ca_bundle_pem = ca;
    config.tls = tls;
    config.retry = RetryPolicy {
        max_attempts: 1,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(1),
    };
    GatewayClient::new(config)
}

/// A server whose certificate a private CA signed, and that CA's PEM.
async fn private_ca_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let (url, requests) = https_server(
        server_cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
    )
    .await;
    (url, requests, ca_cert.pem())
}

#[tokio::test]
async fn private_ca_is_trusted_only_when_configured() {
    let (url, mut requests, ca_pem) = private_ca_server().await;

    let untrusted = client(&url, None).count_endpoints(None).await.unwrap_err();
    assert!(
        matches!(untrusted, GatewayError::Unreachable { .. }),
        "{untrusted:?}"
    );

    let trusted = client(&url, Some(ca_pem.into_bytes()));
    assert_eq!(trusted.count_endpoints(None).await.unwrap(), 7);
    let request = requests.recv().await.unwrap();
    let lower = request.to_ascii_lowercase();
    assert!(
        lower.starts_with("post /plugin/products/gateway/graphql "),
        "{request}"
    );
    assert!(
        lower.contains(&format!("session: {TOKEN}")),
        "token in the session header"
    );
    assert!(
        request.contains("\"operationName\":\"endpoints\""),
        "{request}"
    );
    // Only in the header: the body carries the query and its variables, never the token.
    let body = &request[request.find("\r\n\r\n").unwrap()..];
    assert!(!body.contains(TOKEN));
}

/// Verification is on unless turned off by name; off, any certificate is accepted, and a CA bundle beside it
/// is refused as a contradiction rather than silently ignored.
#[tokio::test]
async fn verification_is_off_only_when_asked_and_never_beside_a_ca_bundle() {
    let (url, _requests, ca_pem) = private_ca_server().await;
    assert_eq!(
        GatewayConfig::new(&url, SecretString::from(TOKEN.to_owned())).tls,
        TlsVerification::Verify
    );
    let insecure = client_with(&url, None, TlsVerification::Insecure).unwrap();
    assert_eq!(insecure.tls(), TlsVerification::Insecure);
    assert_eq!(insecure.count_endpoints(None).await.unwrap(), 7);
    let both = client_with(&url, Some(ca_pem.into_bytes()), TlsVerification::Insecure).unwrap_err();
    assert!(
        matches!(&both, GatewayError::Config(m) if m.contains("contradict")),
        "{both:?}"
    );
}
