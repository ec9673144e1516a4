//! Does a webhook answer at a URL the way the API server calls it: over TLS that verifies
//! against the configuration's bundle, for the URL's host? Any HTTP answer counts, and so does
//! a refusal for want of a client certificate (`--client-ca`): the server's certificate was
//! verified before it asked for one, and only the API server holds one. The request
//! is a GET, which the webhook answers 405 without counting it as a review: a POST that is no
//! review would count as unreadable and trip the alert on those.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::webhook_configs::Endpoint;

/// Host, port and path of an `https://` URL. IPv6 hosts come in brackets.
pub fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url}: not an https URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => {
            (h, p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?)
        }
        _ => (authority, 443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

/// How the webhook answered a caller without a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP status: it serves anyone who reaches it.
    Http(u16),
    /// The handshake was refused for want of a client certificate.
    ClientCertificateRequired,
}

/// How the webhook answered, or why there was no answer.
pub async fn answers(endpoint: &Endpoint, timeout: Duration) -> Result<Answer, String> {
    tokio::time::timeout(timeout, ask(endpoint))
        .await
        .map_err(|_| format!("no answer from {} within {timeout:?}", endpoint.url))?
}

/// Whether an I/O error is the server's TLS alert asking for a client certificate.
fn wants_client_certificate(e: &std::io::Error) -> bool {
    use rustls::AlertDescription::{BadCertificate, CertificateRequired};
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::AlertReceived(
            CertificateRequired | BadCertificate
        ))
    )
}

async fn ask(endpoint: &Endpoint) -> Result<Answer, String> {
    let (host, port, path) = split_url(&endpoint.url)?;
    let bundle = endpoint
        .ca_bundle
        .as_deref()
        .ok_or("the configuration has no caBundle yet")?;
    let roots = crate::server::tls::root_store(bundle).map_err(|e| format!("caBundle: {e}"))?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("{}: {e}", endpoint.url))?;
    let connected = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    let mut tls = match connected {
        Ok(tls) => tls,
        Err(e) if wants_client_certificate(&e) => return Ok(Answer::ClientCertificateRequired),
        Err(e) => return Err(format!("{}: TLS: {e}", endpoint.url)),
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    match tls.write_all(request.as_bytes()).await {
        Err(e) if wants_client_certificate(&e) => return Ok(Answer::ClientCertificateRequired),
        Err(e) => return Err(format!("{}: {e}", endpoint.url)),
        Ok(()) => {}
    }
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < head.len() {
        match tls.read(&mut head[read..]).await {
            Ok(0) => break,
            Ok(n) => read += n,
            // TLS 1.3: the server asks for a certificate after the client's handshake is done.
            Err(e) if wants_client_certificate(&e) => {
                return Ok(Answer::ClientCertificateRequired);
            }
            Err(e) => return Err(format!("{}: {e}", endpoint.url)),
        }
    }
    let line = String::from_utf8_lossy(&head[..read]);
    line.strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|code| code.parse().ok())
        .map(Answer::Http)
        .ok_or_else(|| format!("{}: not an HTTP answer: {line:?}", endpoint.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        for (url, want) in [
            (
                "https://wfe.ns.svc:443/validate",
                ("wfe.ns.svc", 443, "/validate"),
            ),
            (
                "https://127.0.0.1:8443/mutate",
                ("127.0.0.1", 8443, "/mutate"),
            ),
            ("https://[::1]:9443/v", ("::1", 9443, "/v")),
            ("https://[::1]/v", ("::1", 443, "/v")),
            ("https://example.org", ("example.org", 443, "/")),
        ] {
            let (h, p, path) = split_url(url).expect(url);
            assert_eq!((h.as_str(), p, path.as_str()), want, "{url}");
        }
        for bad in ["http://x/", "https://:443/", "https://x:port/"] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }
}
