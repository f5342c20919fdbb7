//! TLS for page server connections (`--tls`), as CRIU 4.2 does it with
//! GnuTLS, so that either side may be CRIU:
//!
//! - both sides present a certificate (`--tls-cert`, `--tls-key`); the
//!   server requires the client's;
//! - both sides check the peer's chain against the trusted CAs
//!   (`--tls-cacert`; without it the system's CA store and
//!   /etc/pki/CA/cacert.pem if present) and the revocation list
//!   (`--tls-cacrl`, or /etc/pki/CA/cacrl.pem if it can be read);
//! - both sides check the peer's name against `--address` unless
//!   `--tls-no-cn-verify`: the client the server's certificate against
//!   the address it connects to; the server the client's certificate
//!   against the address it listens on, and only if one was given;
//! - names are matched as GnuTLS does, common name included
//!   ([`super::tlsname`]); the chain is webpki's (rustls) to check;
//! - TLS 1.2 and 1.3 (GnuTLS's default priorities allow both); each
//!   side ends with a close_notify and waits for the peer's.

use super::error::PsError;
use super::tlsname::Names;
use crate::error::Result;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// CRIU's default files (its SYSCONFDIR is /etc).
pub const DEFAULT_CACERT: &str = "/etc/pki/CA/cacert.pem";
pub const DEFAULT_CACRL: &str = "/etc/pki/CA/cacrl.pem";
pub const DEFAULT_CERT: &str = "/etc/pki/criu/cert.pem";
pub const DEFAULT_KEY: &str = "/etc/pki/criu/private/key.pem";

/// Where distributions keep the system's CA bundle (GnuTLS's "system
/// trust", which CRIU adds when `--tls-cacert` is not given).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// `--tls` and its files; a connection without TLS has none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOpts {
    pub cacert: Option<PathBuf>,
    pub cacrl: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Do not check the peer's name (its chain still is).
    pub no_cn_verify: bool,
}

/// Everything read from the files, before any connection.
struct Creds {
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn file_err(opt: &'static str, path: &Path, why: impl std::fmt::Display) -> PsError {
    PsError::TlsFile {
        opt,
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// A PEM reading error in words ("no such file" for a missing one).
fn pem_why(e: &rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) if io.kind() == std::io::ErrorKind::NotFound => "no such file".into(),
        E::Io(io) => io.to_string(),
        E::NoItemsFound => format!("no {what} in it (PEM expected)"),
        other => format!("bad PEM: {other:?}"),
    }
}

impl TlsOpts {
    fn path<'a>(given: &'a Option<PathBuf>, default: &'static str) -> &'a Path {
        given.as_deref().unwrap_or(Path::new(default))
    }

    fn load(&self) -> Result<Creds> {
        let mut roots = RootCertStore::empty();
        let cacert = Self::path(&self.cacert, DEFAULT_CACERT);
        if self.cacert.is_none() {
            if let Some(bundle) = SYSTEM_CA_BUNDLES.iter().find(|p| Path::new(p).is_file()) {
                if let Ok(it) = CertificateDer::pem_file_iter(bundle) {
                    roots.add_parsable_certificates(it.flatten());
                }
            }
        }
        match CertificateDer::pem_file_iter(cacert) {
            Ok(it) => {
                let certs = it
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| file_err("--tls-cacert", cacert, pem_why(&e, "certificate")))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 && self.cacert.is_some() {
                    return Err(file_err("--tls-cacert", cacert, "no CA certificate in it").into());
                }
            }
            // As CRIU: the default file may be missing (the system's
            // CAs may do), a given one may not.
            Err(_) if self.cacert.is_none() => {}
            Err(e) => {
                return Err(file_err("--tls-cacert", cacert, pem_why(&e, "certificate")).into())
            }
        }
        if roots.is_empty() {
            return Err(file_err(
                "--tls-cacert",
                cacert,
                "no trusted CA certificate (not there, and no system CA store)",
            )
            .into());
        }
        let cacrl = Self::path(&self.cacrl, DEFAULT_CACRL);
        // As CRIU: the default list is read if it can be; a given one
        // must be.
        let crls = match (std::fs::File::open(cacrl), &self.cacrl) {
            (Err(_), None) => Vec::new(),
            (Err(e), Some(_)) => return Err(file_err("--tls-cacrl", cacrl, io_why(&e)).into()),
            (Ok(_), _) => CertificateRevocationListDer::pem_file_iter(cacrl)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| file_err("--tls-cacrl", cacrl, pem_why(&e, "X509 CRL")))?,
        };
        let cert = Self::path(&self.cert, DEFAULT_CERT);
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| file_err("--tls-cert", cert, pem_why(&e, "certificate")))?;
        if chain.is_empty() {
            return Err(file_err("--tls-cert", cert, "no certificate in it (PEM expected)").into());
        }
        let key = Self::path(&self.key, DEFAULT_KEY);
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| file_err("--tls-key", key, pem_why(&e, "private key")))?;
        Ok(Creds {
            roots: Arc::new(roots),
            crls,
            chain,
            key,
        })
    }

    /// A key that does not fit the certificate, or of a kind rustls
    /// cannot use.
    fn key_err(&self, e: rustls::Error) -> PsError {
        let key = Self::path(&self.key, DEFAULT_KEY);
        let cert = Self::path(&self.cert, DEFAULT_CERT);
        let why = match e {
            rustls::Error::InconsistentKeys(_) => {
                format!("does not belong to --tls-cert {}", cert.display())
            }
            e => describe(&e),
        };
        file_err("--tls-key", key, why)
    }

    /// The client's configuration, to connect to a page server at
    /// `address`.
    pub fn client_config(&self, address: &str) -> Result<Arc<ClientConfig>> {
        let c = self.load()?;
        let provider = provider();
        let inner = WebPkiServerVerifier::builder_with_provider(c.roots, provider.clone())
            .with_crls(c.crls)
            .allow_unknown_revocation_status()
            .build()
            .map_err(|e| self.crl_err(e))?;
        let verifier = Arc::new(ServerVerifier {
            inner,
            name: (!self.no_cn_verify).then(|| address.to_string()),
        });
        let cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PsError::TlsSetup(describe(&e)))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(c.chain, c.key)
            .map_err(|e| self.key_err(e))?;
        Ok(Arc::new(cfg))
    }

    /// The server's configuration; `address`: the one it listens on, if
    /// given (the client's certificate must be valid for it, as CRIU's
    /// server wants).
    pub fn server_config(&self, address: Option<&str>) -> Result<Arc<ServerConfig>> {
        let c = self.load()?;
        let provider = provider();
        let inner = WebPkiClientVerifier::builder_with_provider(c.roots, provider.clone())
            .with_crls(c.crls)
            .allow_unknown_revocation_status()
            .build()
            .map_err(|e| self.crl_err(e))?;
        let verifier = Arc::new(ClientVerifier {
            inner,
            name: address.filter(|_| !self.no_cn_verify).map(str::to_string),
        });
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PsError::TlsSetup(describe(&e)))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(c.chain, c.key)
            .map_err(|e| self.key_err(e))?;
        // No TLS 1.3 session tickets: nobody resumes a page server
        // session, and CRIU's client takes the GnuTLS "try again" that a
        // ticket makes its first read return for a dead server.
        cfg.send_tls13_tickets = 0;
        Ok(Arc::new(cfg))
    }

    fn crl_err(&self, e: rustls::server::VerifierBuilderError) -> PsError {
        let cacrl = Self::path(&self.cacrl, DEFAULT_CACRL);
        match e {
            rustls::server::VerifierBuilderError::InvalidCrl(e) => {
                file_err("--tls-cacrl", cacrl, format!("bad CRL: {e:?}"))
            }
            e => PsError::TlsSetup(format!("{e:?}")),
        }
    }
}

/// ring's algorithms (not aws-lc-rs: no C toolchain or cmake needed to
/// build). rustls marks this deprecated because ring has no
/// post-quantum key exchange; GnuTLS's defaults on CRIU's side do not
/// need one (X25519 and the NIST curves are both here).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn io_why(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        _ => e.to_string(),
    }
}

/// The server name rustls is given (for SNI only: [`ServerVerifier`]
/// checks the name itself, from the address as it was written).
pub fn server_name(address: &str) -> ServerName<'static> {
    if let Ok(ip) = address.parse::<std::net::IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    // Not a name TLS can carry: no SNI then.
    ServerName::try_from(address.to_string()).unwrap_or(ServerName::IpAddress(
        std::net::Ipv4Addr::UNSPECIFIED.into(),
    ))
}

/// A name the peer's certificate is not valid for.
#[derive(Debug)]
struct WrongName(String);

impl std::fmt::Display for WrongName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WrongName {}

/// Checks `end_entity` against `name` with GnuTLS's rules.
fn check_name(
    end_entity: &CertificateDer<'_>,
    name: &str,
) -> std::result::Result<(), rustls::Error> {
    let names = Names::of(end_entity).map_err(|why| {
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            WrongName(why),
        ))))
    })?;
    match names.matches(name) {
        true => Ok(()),
        false => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(WrongName(format!(
                "certificate not valid for name {name:?} (it names {})",
                names.describe()
            )))),
        ))),
    }
}

fn wrong_name(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

/// The client's check of the server: webpki's chain check, then the
/// name, with GnuTLS's rules where webpki's refuse it.
#[derive(Debug)]
struct ServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    /// None with `--tls-no-cn-verify`.
    name: Option<String>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // webpki checks the name only once the chain is good: a name
        // error means everything else passed.
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(v) => Ok(v),
            Err(e) if wrong_name(&e) => match &self.name {
                None => Ok(ServerCertVerified::assertion()),
                Some(name) => {
                    check_name(end_entity, name).map(|()| ServerCertVerified::assertion())
                }
            },
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The server's check of the client: webpki's chain check, then the
/// name if the server was given an address.
#[derive(Debug)]
struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    name: Option<String>,
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints, as CRIU's server sends none.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match &self.name {
            Some(name) => check_name(end_entity, name).map(|()| ok),
            None => Ok(ok),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A TLS error in a few words (the peer's certificate, or what the peer
/// said of ours).
pub fn describe(e: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "the peer's certificate is not signed by a trusted CA (--tls-cacert)".into()
            }
            CertificateError::Revoked => "the peer's certificate is revoked (--tls-cacrl)".into(),
            CertificateError::Other(o) => o.to_string(),
            c => format!("the peer's certificate: {c}"),
        },
        rustls::Error::AlertReceived(a) => {
            let what = match a {
                A::BadCertificate
                | A::UnknownCA
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnsupportedCertificate
                | A::CertificateRequired
                | A::AccessDenied => "the peer refused our certificate",
                _ => "the peer ended the handshake",
            };
            format!("{what} (alert {a:?})")
        }
        rustls::Error::NoCertificatesPresented => "the peer presented no certificate".into(),
        e => e.to_string(),
    }
}
