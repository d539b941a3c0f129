//! TLS for `https://` and `wss://` targets: the one client configuration of a run (the
//! CAs of `--ca`, or the web PKI's roots), each target's server name, and TLS failures
//! as the coarse, countable [`TlsFailure`] a connection ends with. No I/O but reading
//! the `--ca` file; the engine drives the sessions ([`crate::conn`]), and the blocking
//! token exchange wraps one in a `rustls::StreamOwned` ([`crate::auth`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, ClientConnection, RootCertStore};

/// Why TLS cannot be set up for the run; reported before any connection starts.
#[derive(Debug)]
pub(crate) enum TlsError {
    /// `--ca`: the file cannot be read, or is not PEM.
    CaFile(PathBuf, pem::Error),
    /// `--ca`: the file holds no `CERTIFICATE` block.
    NoCaCertificates(PathBuf),
    /// `--ca`: a certificate rustls cannot take as a trust anchor.
    BadCa(PathBuf, rustls::Error),
    /// A host that cannot be a TLS server name.
    ServerName(String),
    /// The protocol versions or the provider were refused (not expected with `ring`).
    Config(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::CaFile(path, e) => write!(f, "--ca {}: {e}", path.display()),
            TlsError::NoCaCertificates(path) => {
                write!(f, "--ca {}: no PEM CERTIFICATE in the file", path.display())
            }
            TlsError::BadCa(path, e) => write!(f, "--ca {}: {e}", path.display()),
            TlsError::ServerName(host) => write!(f, "{host} is not a valid TLS server name"),
            TlsError::Config(e) => write!(f, "TLS configuration: {e}"),
        }
    }
}

/// The client configuration every TLS connection of the run shares: trusting the
/// certificates in `ca` (a PEM file) if given, else the web PKI's roots.
///
/// Session resumption is off: every connection makes a full handshake (certificate
/// verification and the server's signature included), as a crowd of distinct clients
/// does, so the handshake figures show the costly case rather than resumed sessions.
pub(crate) fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match ca {
        Some(path) => private_roots(path)?,
        None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    // crypto-ticker offers `http/1.1`; a server that offers no ALPN still accepts this.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate of the PEM file at `path`, as trust anchors.
fn private_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::CaFile(path.to_path_buf(), e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCaCertificates(path.to_path_buf()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| TlsError::BadCa(path.to_path_buf(), e))?;
    }
    Ok(roots)
}

/// A TLS target: the shared configuration and the name its certificate must carry.
#[derive(Debug, Clone)]
pub(crate) struct TlsTarget {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsTarget {
    /// `host` as written in the URL: a DNS name, an IPv4 address, or `[IPv6]`.
    pub(crate) fn new(config: Arc<ClientConfig>, host: &str) -> Result<TlsTarget, TlsError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string())
            .map_err(|_| TlsError::ServerName(host.to_string()))?;
        Ok(TlsTarget { config, name })
    }

    #[cfg(test)]
    pub(crate) fn name(&self) -> &ServerName<'static> {
        &self.name
    }

    /// A new client session, its ClientHello queued (the key share is made here).
    pub(crate) fn session(&self) -> Result<ClientConnection, rustls::Error> {
        ClientConnection::new(Arc::clone(&self.config), self.name.clone())
    }
}

/// Why a TLS session failed, coarse enough to count connections by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TlsFailure {
    /// The chain leads to no trusted root: a private CA without `--ca`, or the wrong one.
    UnknownIssuer,
    /// The certificate does not name the host of the URL.
    WrongName,
    /// Expired, or not valid yet.
    Expired,
    /// Any other certificate problem (bad encoding, signature, usage...).
    BadCertificate,
    /// The server ended the handshake with this alert.
    Alert(u8),
    /// No protocol version, cipher suite or key exchange in common.
    Incompatible,
    /// Anything else: malformed or unexpected records, decryption failures.
    Protocol,
}

impl TlsFailure {
    pub(crate) fn of(err: &rustls::Error) -> TlsFailure {
        match err {
            rustls::Error::InvalidCertificate(e) => match e {
                CertificateError::UnknownIssuer => TlsFailure::UnknownIssuer,
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => TlsFailure::WrongName,
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
                _ => TlsFailure::BadCertificate,
            },
            rustls::Error::AlertReceived(alert) => TlsFailure::Alert(u8::from(*alert)),
            rustls::Error::PeerIncompatible(_) => TlsFailure::Incompatible,
            _ => TlsFailure::Protocol,
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::UnknownIssuer => f.write_str(
                "TLS: certificate from an unknown issuer (private CA? give it with --ca)",
            ),
            TlsFailure::WrongName => f.write_str("TLS: certificate not valid for the host name"),
            TlsFailure::Expired => f.write_str("TLS: certificate expired or not yet valid"),
            TlsFailure::BadCertificate => f.write_str("TLS: invalid certificate"),
            TlsFailure::Alert(code) => {
                write!(f, "TLS: alert from the server: {:?}", AlertDescription::from(*code))
            }
            TlsFailure::Incompatible => {
                f.write_str("TLS: no protocol version or cipher suite in common")
            }
            TlsFailure::Protocol => f.write_str("TLS: protocol error"),
        }
    }
}

/// The rustls error inside an I/O error, as rustls' streams and [`crate::conn`] wrap it.
pub(crate) fn inner_error(err: &std::io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

/// A rustls error as the I/O error rustls' own streams make of it.
pub(crate) fn io_error(err: rustls::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA (`openssl req -x509 -newkey ec ... -addext basicConstraints=critical,CA:TRUE`).
    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBkzCCATmgAwIBAgIUWgKjW0xCNz6bwn8N8iegfEM8cYkwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTdGlja2VyLWxvYWQgdGVzdCBDQTAgFw0yNjExMjUxNzI1MDda
GA8yMTI2MTEwMTE3MjUwN1owHjEcMBoGA1UEAwwTdGlja2VyLWxvYWQgdGVzdCBD
QTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABJUv/U0exbpnJ1LyJeyV2iQLsq5X
g/37FDOScGZM5KzhQmLLKxl6BY5PkAlH4jiJv1fpvu6BON8FJkb7Rlq49ymjUzBR
MB0GA1UdDgQWBBSK7XZsncrwJVMYbk+nMt1Xi2uopDAfBgNVHSMEGDAWgBSK7XZs
ncrwJVMYbk+nMt1Xi2uopDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gA
MEUCIQDVgtfMymBZhGaWHlqRn8nbLCLkIGNk9nk7z1NI6kHHWQIgUxCxxZdNrFzO
2Sf2gjPvBKhbbS9PBD3y7h/3IXoqtIw=
-----END CERTIFICATE-----
";

    fn write_temp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ticker-load-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_ca_file_gives_the_trust_anchors_and_no_ca_gives_the_web_pki() {
        let path = write_temp("ca.pem", &format!("some comment\n{CA_PEM}{CA_PEM}"));
        assert_eq!(private_roots(&path).unwrap().len(), 2);
        assert!(client_config(Some(&path)).is_ok());
        assert!(client_config(None).is_ok());
        assert!(!webpki_roots::TLS_SERVER_ROOTS.is_empty());
    }

    #[test]
    fn a_missing_empty_or_broken_ca_file_is_an_error_naming_it() {
        let missing = Path::new("/nonexistent/ca.pem");
        let err = client_config(Some(missing)).unwrap_err();
        assert!(matches!(err, TlsError::CaFile(..)), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");

        let empty = write_temp("empty.pem", "no certificates here\n");
        assert!(matches!(client_config(Some(&empty)), Err(TlsError::NoCaCertificates(_))));

        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let broken = write_temp("broken.pem", garbage);
        assert!(matches!(client_config(Some(&broken)), Err(TlsError::BadCa(..))));
    }

    #[test]
    fn hosts_become_server_names_with_ipv6_brackets_removed() {
        let config = client_config(None).unwrap();
        let name = |h: &str| TlsTarget::new(Arc::clone(&config), h).map(|t| t.name().to_owned());
        assert_eq!(name("example.com").unwrap(), ServerName::try_from("example.com").unwrap());
        assert!(matches!(name("127.0.0.1").unwrap(), ServerName::IpAddress(_)));
        assert!(matches!(name("[::1]").unwrap(), ServerName::IpAddress(_)));
        assert!(matches!(name("bad name!"), Err(TlsError::ServerName(_))));
        assert!(TlsTarget::new(config, "localhost").unwrap().session().is_ok());
    }

    #[test]
    fn certificate_errors_are_counted_by_cause() {
        let cert = |e| TlsFailure::of(&rustls::Error::InvalidCertificate(e));
        assert_eq!(cert(CertificateError::UnknownIssuer), TlsFailure::UnknownIssuer);
        assert_eq!(cert(CertificateError::NotValidForName), TlsFailure::WrongName);
        assert_eq!(cert(CertificateError::Expired), TlsFailure::Expired);
        assert_eq!(cert(CertificateError::BadSignature), TlsFailure::BadCertificate);
        let alert = rustls::Error::AlertReceived(AlertDescription::HandshakeFailure);
        assert_eq!(TlsFailure::of(&alert), TlsFailure::Alert(40));
        assert_eq!(TlsFailure::of(&rustls::Error::DecryptError), TlsFailure::Protocol);
        assert!(TlsFailure::UnknownIssuer.to_string().contains("--ca"));
        assert!(TlsFailure::Alert(40).to_string().contains("HandshakeFailure"));
        let wrapped = io_error(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
        assert!(inner_error(&wrapped).is_some());
        assert!(inner_error(&std::io::Error::other("plain")).is_none());
    }
}
