//! Store URLs and connection settings: the `schema` parameter, redaction for messages,
//! schema-name checks, and the writer's connection configuration.

use super::*;

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

/// Splits our own `schema` parameter off a PostgreSQL URL and parses the rest.
pub(crate) fn parse_url(url: &str) -> Result<(tokio_postgres::Config, Option<String>), Error> {
    let (rest, schema) = split_schema(url);
    let config = tokio_postgres::Config::from_str(&rest)
        .map_err(|e| Error::UnsupportedStore(format!("{} ({e})", redact(url))))?;
    Ok((config, schema))
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
pub(crate) fn writer_config(config: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut config = config.clone();
    let limit = format!(
        "-c idle_in_transaction_session_timeout={WRITER_IDLE_IN_TRANSACTION_MS} \
         -c lock_timeout={WRITER_LOCK_TIMEOUT_MS}"
    );
    let options = match config.get_options() {
        Some(theirs) if !theirs.trim().is_empty() => format!("{theirs} {limit}"),
        _ => limit,
    };
    config.options(&options);
    config
}

pub(crate) async fn connect_plain(config: &tokio_postgres::Config) -> Result<Client, Error> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| unavailable("cannot connect to PostgreSQL", &e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}
