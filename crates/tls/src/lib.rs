//! TLS certificates for every listener that speaks TLS: the MQTT `tls` and
//! `wss` listeners (`switchboard-server`) and the HTTPS console
//! (`switchboard-console`). Loading certificates and keys from PEM files,
//! optional client-certificate verification, and reloading them while the
//! broker runs.
//!
//! It is its own crate so that both servers load and reload certificates
//! with the same code, and the console need not depend on the MQTT server.
//!
//! Each TLS listener keeps its rustls `ServerConfig` behind an [`ArcSwap`]:
//! a handshake takes the current one (one atomic load), and a reload builds a
//! complete new one and swaps it in. Connections already established keep
//! the session they negotiated; only handshakes after the swap see the new
//! certificate. A reload that fails (missing file, a key that does not match
//! the certificate) changes nothing, so a broker never ends up without a
//! certificate.
//!
//! Crypto comes from rustls' `ring` provider, installed per config rather than
//! process-wide, so an embedding program's own choice of default provider is
//! left alone.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// Largest PEM file read: certificate chains and keys are a few kilobytes, so
/// this only stops a path mistakenly pointing at something huge (or endless,
/// like a device) from being read into memory.
const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

/// What a TLS (or WSS) listener needs: its certificate and key, and how it
/// treats client certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM: the server certificate first, then any intermediates.
    pub cert_file: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
    /// PEM: the CA certificates client certificates are checked against.
    /// `None`: clients are not asked for a certificate.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse the handshake of a client without a valid certificate. Needs
    /// `client_ca_file`; without this, a client may present no certificate,
    /// but one it presents must still verify.
    pub require_client_cert: bool,
    /// Take the user name from the client certificate's subject common name
    /// (CN) and skip the password check: the certificate, verified against
    /// `client_ca_file`, is the credential. The CONNECT's own user name and
    /// password are ignored. A client without a certificate, or whose
    /// certificate has no single CN, is refused (CONNACK 0x87 / 3.1.1: 5).
    pub use_subject_as_username: bool,
}

impl TlsOptions {
    /// A listener with this certificate and key that asks for no client
    /// certificate.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> TlsOptions {
        TlsOptions {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            client_ca_file: None,
            require_client_cert: false,
            use_subject_as_username: false,
        }
    }
}

/// A certificate, key or CA file that cannot be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is larger than {MAX_PEM_FILE_BYTES} bytes; is it really a PEM file?", path.display())]
    TooLarge { path: PathBuf },
    #[error("{} is not valid PEM: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("{} holds no certificate (expected a \"BEGIN CERTIFICATE\" block)", path.display())]
    NoCertificate { path: PathBuf },
    #[error(
        "{} holds no private key (expected a \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" \
         or \"BEGIN EC PRIVATE KEY\" block)",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error("the certificate {} and the key {} cannot be used together: {source}", cert_file.display(), key_file.display())]
    CertifiedKey {
        cert_file: PathBuf,
        key_file: PathBuf,
        source: rustls::Error,
    },
    #[error("{} holds no usable CA certificate: {message}", path.display())]
    ClientCa { path: PathBuf, message: String },
    #[error("require_client_cert and use_subject_as_username need a client_ca_file to check client certificates against")]
    NoClientCa,
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the rustls configuration for one listener from its files.
///
/// Blocking: reads up to three files.
pub fn load(options: &TlsOptions) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certificates = read_certificates(&options.cert_file)?;
    let key = read_key(&options.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &options.client_ca_file {
        None if options.require_client_cert || options.use_subject_as_username => {
            return Err(TlsError::NoClientCa)
        }
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(read_certificates(path)?);
            if added == 0 {
                return Err(TlsError::ClientCa {
                    path: path.clone(),
                    message: "none of its certificates could be parsed".to_owned(),
                });
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if !options.require_client_cert {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|error| TlsError::ClientCa {
                path: path.clone(),
                message: error.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certificates, key)
        .map_err(|source| TlsError::CertifiedKey {
            cert_file: options.cert_file.clone(),
            key_file: options.key_file.clone(),
            source,
        })?;
    Ok(Arc::new(config))
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_error = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem_file(path)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_pem_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        other => TlsError::Pem {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    })
}

/// One TLS listener's live configuration: share it (`Arc`) between the
/// listener, which takes an [`TlsListener::acceptor`] per handshake, and a
/// [`Certificates`] handle, which reloads it.
#[derive(Debug)]
pub struct TlsListener {
    /// The listener's name, for logs.
    name: String,
    options: TlsOptions,
    /// What new handshakes use; replaced whole by [`TlsListener::reload`].
    config: ArcSwap<ServerConfig>,
}

impl TlsListener {
    /// Loads the listener's files. Blocking.
    pub fn load(name: &str, options: &TlsOptions) -> Result<TlsListener, TlsError> {
        Ok(TlsListener {
            name: name.to_owned(),
            options: options.clone(),
            config: ArcSwap::new(load(options)?),
        })
    }

    /// The listener's name, as in logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The files and client-certificate settings it was loaded from.
    pub fn options(&self) -> &TlsOptions {
        &self.options
    }

    /// An acceptor with the current configuration, for one handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }

    /// Re-reads the files and, if they are usable, makes new handshakes use
    /// them. On error the previous configuration stays. Blocking.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load(&self.options)?;
        self.config.store(config);
        Ok(())
    }
}

/// Reloads the certificates of a set of TLS listeners: an MQTT server's
/// (`Server::certificates`), with the HTTPS console's added by
/// [`Certificates::with_listener`]. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Certificates {
    listeners: Arc<[Arc<TlsListener>]>,
}

/// A listener whose certificate files could not be reloaded; it keeps the
/// certificate it had.
#[derive(Debug, thiserror::Error)]
#[error("listener {listener}: {source}")]
pub struct ReloadError {
    pub listener: String,
    pub source: TlsError,
}

impl Certificates {
    pub fn new(listeners: Vec<Arc<TlsListener>>) -> Certificates {
        Certificates {
            listeners: listeners.into(),
        }
    }

    /// These listeners and `listener`: one SIGHUP reloads them all.
    pub fn with_listener(&self, listener: Arc<TlsListener>) -> Certificates {
        let mut listeners = self.listeners.to_vec();
        listeners.push(listener);
        Certificates::new(listeners)
    }

    /// Whether there is no listener to reload.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    /// Re-reads every TLS listener's certificate, key and CA files (the
    /// SIGHUP reload). New handshakes use the new files; established
    /// connections are not touched. A listener whose files fail keeps its
    /// previous certificate, and the failure is logged and returned; the
    /// others are still reloaded.
    ///
    /// Blocking file I/O: from async code, call it on the blocking pool.
    pub fn reload(&self) -> Result<(), Vec<ReloadError>> {
        let mut errors = Vec::new();
        for listener in self.listeners.iter() {
            match listener.reload() {
                Ok(()) => {
                    tracing::info!(listener = %listener.name, cert_file = %listener.options.cert_file.display(), "certificate reloaded");
                }
                Err(source) => {
                    tracing::error!(listener = %listener.name, error = %source, "certificate reload failed; the previous certificate stays in use");
                    errors.push(ReloadError {
                        listener: listener.name.clone(),
                        source,
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}
