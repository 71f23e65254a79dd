//! [`AmqpUrl`]: the broker's URL, which carries a password, shown only with the password
//! replaced (in `Debug`, `Display`, logs and errors); and [`AmqpUrlArg`], the same as given on
//! the command line, before validation.

use std::{fmt, str::FromStr};

use serde::Deserialize;

/// `amqp://user:pass@host:port/vhost`, validated; its `Debug` and `Display` print `***` for
/// the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AmqpUrl(String);

impl AmqpUrl {
    /// The URL with its password, for the connection only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with the password (if any) replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl FromStr for AmqpUrl {
    type Err = String;

    /// Accepts `amqp://…` that lapin's URI parser understands. `amqps://` is refused: this
    /// build carries no TLS stack (docs/amqp.md says why and what to do).
    fn from_str(url: &str) -> Result<AmqpUrl, String> {
        if url.starts_with("amqps://") {
            return Err(
                "amqps:// is not supported by this build (no TLS): use amqp:// on a trusted \
                 network or a TLS-terminating proxy"
                    .to_owned(),
            );
        }
        if !url.starts_with("amqp://") {
            return Err("must start with amqp://".to_owned());
        }
        // The parser's message may quote the URL: say only that it did not parse.
        url.parse::<lapin::uri::AMQPUri>()
            .map_err(|_| format!("{} is not a valid AMQP URL", redact(url)))?;
        Ok(AmqpUrl(url.to_owned()))
    }
}

impl TryFrom<String> for AmqpUrl {
    type Error = String;

    fn try_from(url: String) -> Result<AmqpUrl, String> {
        url.parse()
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({})", self.redacted())
    }
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `scheme://user:***@rest` for `scheme://user:password@rest`; other URLs unchanged.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The authority ends at the first `/`; a `@` after that belongs to the path.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
        None => url.to_owned(),
    }
}

/// `--amqp-url` as given: parsing never fails here, so that clap (whose errors quote the
/// value) never shows it; [`AmqpUrlArg::validate`] says what is wrong with the password
/// redacted. `Debug` redacts too.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AmqpUrlArg(String);

impl AmqpUrlArg {
    /// The validated URL.
    ///
    /// # Errors
    ///
    /// A one-line reason, without the password.
    pub fn validate(&self) -> Result<AmqpUrl, String> {
        self.0.parse()
    }
}

impl FromStr for AmqpUrlArg {
    type Err = std::convert::Infallible;

    fn from_str(url: &str) -> Result<AmqpUrlArg, Self::Err> {
        Ok(AmqpUrlArg(url.to_owned()))
    }
}

impl fmt::Debug for AmqpUrlArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrlArg({})", redact(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        let url: AmqpUrl = "amqp://app:s3cr%40t@rabbit:5672/prod".parse().unwrap();
        for shown in [format!("{url:?}"), url.to_string(), url.redacted()] {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(shown.contains("amqp://app:***@rabbit:5672/prod"), "{shown}");
        }
        assert_eq!(url.expose(), "amqp://app:s3cr%40t@rabbit:5672/prod");
        let arg: AmqpUrlArg = "amqp://app:s3cr%40t@rabbit/prod".parse().unwrap();
        assert!(!format!("{arg:?}").contains("s3cr"));
        let plain: AmqpUrl = "amqp://rabbit".parse().unwrap();
        assert_eq!(plain.to_string(), "amqp://rabbit");
    }

    #[test]
    fn other_schemes_are_refused_without_echoing_the_password() {
        let err = "amqps://u:hunter2@h".parse::<AmqpUrl>().unwrap_err();
        assert!(
            err.contains("amqps://") && !err.contains("hunter2"),
            "{err}"
        );
        let err = "http://u:hunter2@h".parse::<AmqpUrl>().unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let err = "amqp://u:hunter2@h:notaport"
            .parse::<AmqpUrl>()
            .unwrap_err();
        assert!(err.contains("u:***@h") && !err.contains("hunter2"), "{err}");
    }
}
