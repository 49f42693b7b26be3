//! TLS trust: Mozilla's roots plus the CA bundles the environment names, assembled at the first handshake, and
//! what a TLS failure means in words.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::config::Env;
use crate::error::{Error, Result};

/// Environment variables naming extra PEM bundles of trusted CAs (`REQUESTS_CA_BUNDLE` is what Python users
/// already set for `requests`).
pub const CA_BUNDLE_VARS: [&str; 2] = ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"];

/// The TLS configuration. Trust is Mozilla's roots (compiled in) plus the CA files named by the environment,
/// and it is assembled at the first TLS handshake, not here: a process that only talks plain HTTP (the
/// emulator) never reads certificate files, and one that talks TLS reads each file once, however many
/// variables name it (machines often point REQUESTS_CA_BUNDLE, SSL_CERT_FILE and SSL_CERT_DIR at the same
/// system store, which then cost milliseconds of every cold start). Unreadable bundle files are reported now.
pub(crate) fn tls_config(env: &dyn Env) -> Result<rustls::ClientConfig> {
    let mut sources = Vec::new();
    for var in CA_BUNDLE_VARS {
        if let Some(path) = env.var(var).filter(|p| !p.is_empty()) {
            let meta =
                std::fs::metadata(&path).map_err(|e| Error::Config(format!("{var}: {path}: cannot read it: {e}")))?;
            if !meta.is_file() {
                return Err(Error::Config(format!("{var}: {path}: is not a file")));
            }
            sources.push(CaSource {
                var,
                path: PathBuf::from(path),
                required: true,
            });
        }
    }
    // OpenSSL's SSL_CERT_DIR: folders separated by ':'; like OpenSSL, a missing folder and files that are not
    // PEM certificates are skipped.
    for dir in env
        .var("SSL_CERT_DIR")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
    {
        sources.push(CaSource {
            var: "SSL_CERT_DIR",
            path: PathBuf::from(dir),
            required: false,
        });
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = LazyVerifier {
        sources,
        provider: provider.clone(),
        inner: OnceLock::new(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Transport(format!("cannot configure TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth())
}

/// A file or folder of trusted CAs named by an environment variable.
#[derive(Debug)]
struct CaSource {
    var: &'static str,
    path: PathBuf,
    /// A bundle file named directly must hold certificates; files in an SSL_CERT_DIR folder may be anything.
    required: bool,
}

/// The standard WebPKI verifier, built on first use from the compiled-in roots and the [`CaSource`]s.
#[derive(Debug)]
struct LazyVerifier {
    sources: Vec<CaSource>,
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
    inner: OnceLock<std::result::Result<std::sync::Arc<rustls::client::WebPkiServerVerifier>, String>>,
}

impl LazyVerifier {
    fn get(&self) -> std::result::Result<&rustls::client::WebPkiServerVerifier, rustls::Error> {
        self.inner
            .get_or_init(|| self.build())
            .as_deref()
            .map_err(|e| rustls::Error::General(e.clone()))
    }

    fn build(&self) -> std::result::Result<std::sync::Arc<rustls::client::WebPkiServerVerifier>, String> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut seen = std::collections::HashSet::new();
        for source in &self.sources {
            let files: Vec<PathBuf> = if source.required {
                vec![source.path.clone()]
            } else {
                let Ok(entries) = std::fs::read_dir(&source.path) else {
                    log::warn!("{}: cannot read {}; skipped", source.var, source.path.display());
                    continue;
                };
                entries.flatten().map(|e| e.path()).collect()
            };
            for file in files {
                // Hash links and .pem links in a certs folder, and the variables, often name the same file.
                if !seen.insert(std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone())) {
                    continue;
                }
                match load_pem_certs(&file) {
                    Ok(certs) if !certs.is_empty() => {
                        let (_, rejected) = roots.add_parsable_certificates(certs);
                        if rejected > 0 {
                            log::warn!(
                                "{}: {rejected} certificate(s) in {} are unusable",
                                source.var,
                                file.display()
                            );
                        }
                    }
                    Ok(_) if source.required => {
                        return Err(format!("{}: {}: holds no PEM certificate", source.var, file.display()));
                    }
                    Err(e) if source.required => return Err(format!("{}: {}: {e}", source.var, file.display())),
                    _ => {}
                }
            }
        }
        rustls::client::WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| format!("cannot build the certificate verifier: {e}"))
    }
}

impl rustls::client::danger::ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.get()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.get()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.get()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn load_pem_certs(path: &Path) -> std::result::Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))
}

/// What a TLS failure means and what fixes it, in words (rustls' own text is its Debug form, e.g.
/// `invalid peer certificate: UnknownIssuer`).
pub(crate) fn tls_advice(e: &rustls::Error, url: Option<&reqwest::Url>) -> String {
    use rustls::CertificateError as C;
    let host = url.and_then(reqwest::Url::host_str).unwrap_or("the host");
    let trust = "put the CA's certificate (PEM) in a file and point REQUESTS_CA_BUNDLE or SSL_CERT_FILE at it";
    match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => format!(
                "the server's certificate is not signed by a certificate authority this machine trusts (a \
                 private CA, or a self-signed certificate): {trust}"
            ),
            C::Expired | C::ExpiredContext { .. } => "the server's certificate has expired: renew it (or, if it \
                 should still be valid, correct this machine's clock)"
                .into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "the server's certificate is not valid yet: check \
                 this machine's clock and the certificate's start date"
                .into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the server's certificate is not issued for {host}: connect with a name the certificate lists, or \
                 reissue it with {host} among its subject alternative names"
            ),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "the server's certificate is not meant for a \
                 TLS server (its extended key usage lacks serverAuth): reissue it for server authentication"
                .into(),
            C::BadSignature => "the server's certificate signature does not verify against its issuer: the \
                 certificate chain is broken or forged"
                .into(),
            C::Revoked => "the server's certificate has been revoked by its issuer: install a new one".into(),
            other if format!("{other:?}").contains("CaUsedAsEndEntity") => format!(
                "the server presents a CA certificate as its own certificate (a self-signed `openssl req -x509` \
                 certificate is one): serve a certificate for {host} signed by that CA, and {trust}"
            ),
            other => format!("the server's certificate was rejected ({other:?})"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            let origin = url.map_or_else(|| "that address".to_string(), |u| u.origin().ascii_serialization());
            format!(
                "the server at {origin} did not answer in TLS: it looks like a plain-HTTP port; use http:// for it, \
                 or the port that serves HTTPS"
            )
        }
        other => format!("the TLS handshake failed ({other})"),
    }
}
