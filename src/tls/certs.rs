//! TLS certificates: loading the PEM files, the rustls server configuration, and the
//! reload on SIGHUP.
//!
//! The configuration is built once; its certificate comes from [`ReloadableCert`], a
//! resolver that hands every new handshake the certificate current at that moment.
//! A reload builds the new [`CertifiedKey`] completely (files read, key parsed, key
//! checked against the certificate) before it swaps it in, so a bad file leaves the old
//! certificate in place. Live sessions keep the keys they negotiated: a reload never
//! touches them. Handshakes, the resolver's lookup among them, run on the handshake pool
//! (`server/handshakes.rs`), never on an event loop.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};

/// ALPN: HTTP/1.1 only (the WebSocket upgrade is an HTTP/1.1 request).
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why a certificate could not be loaded.
#[derive(Debug)]
pub enum TlsError {
    /// A PEM file could not be read or holds no valid PEM section of the needed kind.
    Pem { path: PathBuf, error: rustls::pki_types::pem::Error },
    /// The certificate file holds no certificate.
    NoCertificate(PathBuf),
    /// The key is not one the crypto provider can sign with, or does not match the
    /// certificate, or the configuration was refused.
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem { path, error } => write!(f, "{}: {error}", path.display()),
            TlsError::NoCertificate(path) => {
                write!(f, "{}: no CERTIFICATE section", path.display())
            }
            TlsError::Rustls(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The server's TLS side: the configuration every connection starts from, and the
/// certificate files it reloads.
pub struct Tls {
    config: Arc<ServerConfig>,
    cert: Arc<ReloadableCert>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl Tls {
    /// Loads the certificate chain and key, and builds the configuration: TLS 1.3 and
    /// 1.2 with the `ring` provider, no client certificates, ALPN `http/1.1`.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = load_certified_key(cert_path, key_path, &provider)?;
        let cert = Arc::new(ReloadableCert {
            current: RwLock::new(Arc::new(current)),
            provider: provider.clone(),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Rustls)?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        // WebSocket sessions run their records in `records.rs` with keys taken from rustls.
        config.enable_secret_extraction = true;
        Ok(Tls {
            config: Arc::new(config),
            cert,
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
        })
    }

    /// A server-side TLS session for a new connection.
    pub(crate) fn accept(&self) -> Result<ServerConnection, rustls::Error> {
        ServerConnection::new(self.config.clone())
    }

    /// Reads both files again; on success new handshakes get the new certificate, on
    /// failure nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_certified_key(&self.cert_path, &self.key_path, &self.cert.provider)?;
        self.cert.swap(fresh);
        Ok(())
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }
}

/// The certificate resolver: one certificate, replaced whole on reload.
struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl ReloadableCert {
    fn swap(&self, fresh: CertifiedKey) {
        // A poisoned lock only means a panic elsewhere while it was held; the `Arc`
        // inside is always whole, so keep using it.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
    }
}

impl fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCert").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // One read lock per handshake (never per frame); a reload holds the write lock
        // only for the pointer swap.
        Some(self.current.read().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

/// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
/// SEC1), and checks that the key belongs to the leaf.
fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let pem_error = |path: &Path| {
        let path = path.to_owned();
        move |error| TlsError::Pem { path, error }
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(pem_error(cert_path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(cert_path))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(pem_error(key_path))?;
    CertifiedKey::from_der(chain, key, provider).map_err(TlsError::Rustls)
}
