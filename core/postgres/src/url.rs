//! Store URLs and connection settings: the `schema` parameter, transport security
//! (`sslmode` and its files, through rustls), redaction for messages, schema-name checks,
//! and the writer's connection configuration.

use std::str::FromStr;
use std::sync::Arc;

use tokio_postgres::Client;

use closeloop_log::*;

use crate::common::*;

/// Splits our `schema=S` parameter off a store URL: (the URL tokio-postgres reads, the
/// schema named, if any). The read side uses it too, so both sides read one URL alike.
pub fn split_schema(url: &str) -> (String, Option<String>) {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", value)) => schema = Some(value.to_owned()),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, schema)
}

/// Splits our own `schema` parameter off a PostgreSQL URL and parses the rest, with the
/// transport its `sslmode`, `sslrootcert`, `sslcert` and `sslkey` ask for ([`Endpoint`]).
pub(crate) fn parse_url(url: &str) -> Result<(Endpoint, Option<String>), Error> {
    let (rest, schema) = split_schema(url);
    Ok((Endpoint::parse(&rest)?, schema))
}

/// The transport security a store URL asks for, in libpq's words (`sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// `disable`, `allow`, `prefer` or no `sslmode`: plain TCP, as libpq's default reaches
    /// a server without TLS. Closeloop never tries TLS it would not verify: a connection is
    /// either plain or verified.
    Plain,
    /// `require`, `verify-ca` or `verify-full`: TLS, and the server's certificate chain and
    /// host name are always verified (against `sslrootcert`, else the system's roots), so
    /// `require` and `verify-ca` mean what `verify-full` means to libpq, never less.
    Verified,
}

/// Where a PostgreSQL server is and how to reach it: tokio-postgres's settings plus the
/// TLS connector the URL's `ssl*` parameters ask for. Every connection of the log and of the
/// read side is made through one, so `sslmode=verify-full` holds for all of them.
#[derive(Clone)]
pub struct Endpoint {
    pub config: tokio_postgres::Config,
    pub ssl: SslMode,
    tls: Tls,
}

/// The TLS connector: rustls, through tokio-postgres's rustls integration.
pub type Tls = tokio_postgres_rustls::MakeRustlsConnect;
/// A connection made through an [`Endpoint`] (plain or TLS, one type).
pub type Connection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <Tls as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("config", &self.config)
            .field("ssl", &self.ssl)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Parses a PostgreSQL URL without our `schema` parameter (see [`split_schema`]).
    /// `sslmode` takes libpq's six values ([`SslMode`]); `sslrootcert` names a PEM file of
    /// the CAs to trust instead of the system's; `sslcert` and `sslkey` name the client's
    /// certificate chain and PKCS#8 or RSA key (PEM) for servers that ask for one.
    pub fn parse(url: &str) -> Result<Endpoint, Error> {
        let bad = |why: String| Error::UnsupportedStore(format!("{} ({why})", redact(url)));
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        let (mut mode, mut root, mut cert, mut key) = (None, None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = || {
                percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .map(|v| v.into_owned())
                    .map_err(|_| bad(format!("`{name}` is not UTF-8")))
            };
            match name {
                "sslmode" => mode = Some(decoded()?),
                "sslrootcert" => root = Some(decoded()?),
                "sslcert" => cert = Some(decoded()?),
                "sslkey" => key = Some(decoded()?),
                _ => kept.push(pair),
            }
        }
        let ssl = match mode.as_deref() {
            None | Some("disable" | "allow" | "prefer") => SslMode::Plain,
            Some("require" | "verify-ca" | "verify-full") => SslMode::Verified,
            Some(other) => {
                return Err(bad(format!(
                    "sslmode `{other}`: use disable, allow, prefer, require, verify-ca or \
                     verify-full"
                )))
            }
        };
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| bad(e.to_string()))?;
        config.ssl_mode(match ssl {
            SslMode::Plain => tokio_postgres::config::SslMode::Disable,
            SslMode::Verified => tokio_postgres::config::SslMode::Require,
        });
        let tls = match ssl {
            // Never used (TLS is disabled), but one connector type keeps one connection type.
            SslMode::Plain => Tls::new(client_config(None, None, None).map_err(bad)?),
            SslMode::Verified => Tls::new(
                client_config(root.as_deref(), cert.as_deref(), key.as_deref()).map_err(bad)?,
            ),
        };
        Ok(Endpoint { config, ssl, tls })
    }

    /// Opens one connection; the caller drives the returned [`Connection`].
    pub async fn connect(&self) -> Result<(Client, Connection), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }

    /// The connector, for pools that open their own connections.
    pub fn tls(&self) -> Tls {
        self.tls.clone()
    }
}

/// A rustls client configuration: the roots (`sslrootcert`'s PEM certificates, else the
/// system's), and the client's certificate when both `sslcert` and `sslkey` are given.
fn client_config(
    root: Option<&str>,
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslrootcert `{path}`: {e}"))?;
            if certs.is_empty() {
                return Err(format!("sslrootcert `{path}`: no certificate in it"));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("sslrootcert `{path}`: {e}"))?;
            }
        }
        None => {
            // Unreadable system certificates are skipped, as every TLS client does.
            let system = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(system.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    match (cert, key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslcert `{cert}`: {e}"))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("sslkey `{key}`: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("sslcert and sslkey: {e}"))
        }
        _ => Err("sslcert and sslkey go together: give both or neither".into()),
    }
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

pub(crate) fn check_schema_name(url: &str, schema: &str) -> Result<(), Error> {
    let mut chars = schema.chars();
    let valid = schema.len() <= SCHEMA_NAME_MAX
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with("pg_");
    if valid {
        Ok(())
    } else {
        Err(Error::UnsupportedStore(format!(
            "{} (schema name `{schema}`: use [a-z_][a-z0-9_]*, at most {SCHEMA_NAME_MAX} bytes, not pg_*)",
            redact(url)
        )))
    }
}

/// The writer's connection settings: the user's, plus its server-side limits on an idle
/// transaction and on a lock wait, sent in the startup packet rather than as statements.
pub(crate) fn writer_config(endpoint: &Endpoint) -> Endpoint {
    let mut endpoint = endpoint.clone();
    let limit = format!(
        "-c idle_in_transaction_session_timeout={WRITER_IDLE_IN_TRANSACTION_MS} \
         -c lock_timeout={WRITER_LOCK_TIMEOUT_MS}"
    );
    let options = match endpoint.config.get_options() {
        Some(theirs) if !theirs.trim().is_empty() => format!("{theirs} {limit}"),
        _ => limit,
    };
    endpoint.config.options(&options);
    endpoint
}

/// One connection, its driver spawned on the current runtime.
pub(crate) async fn connect_once(endpoint: &Endpoint) -> Result<Client, Error> {
    let (client, connection) = endpoint
        .connect()
        .await
        .map_err(|e| unavailable("cannot connect to PostgreSQL", &e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}
