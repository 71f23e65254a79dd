//! [`AmqpConfig`]: the validated `--amqp-*` options of the gateway.

use super::{AmqpOptions, AmqpUrl, AmqpUrlArg};

/// The default `--amqp-exchange`.
pub const DEFAULT_EXCHANGE: &str = "wsmq.direct";

/// Longest queue prefix: with a 160-character queue name the broker's name stays within
/// AMQP's 255-byte short strings.
const MAX_PREFIX: usize = 95;

/// How the gateway reaches RabbitMQ and names things there.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// The broker (its password redacted in `Debug`).
    pub url: AmqpUrl,
    /// Put before every queue name on the broker.
    pub queue_prefix: String,
    /// The durable direct exchange the user queues are bound to.
    pub exchange: String,
}

impl AmqpConfig {
    /// Validates the flags: `url` is required for the others to mean anything.
    ///
    /// # Errors
    ///
    /// A one-line reason naming the flag (never the URL's password).
    pub fn from_args(
        url: Option<&AmqpUrlArg>,
        queue_prefix: Option<&str>,
        exchange: Option<&str>,
    ) -> Result<Option<AmqpConfig>, String> {
        let Some(url) = url else {
            if queue_prefix.is_some() || exchange.is_some() {
                return Err("--amqp-queue-prefix and --amqp-exchange need --amqp-url".into());
            }
            return Ok(None);
        };
        let url = url.validate().map_err(|why| format!("--amqp-url: {why}"))?;
        let queue_prefix = queue_prefix.unwrap_or_default().to_owned();
        if queue_prefix.len() > MAX_PREFIX || !queue_prefix.bytes().all(name_byte) {
            return Err(format!(
                "--amqp-queue-prefix {queue_prefix:?} must be at most {MAX_PREFIX} characters of \
                 A-Z a-z 0-9 _ - . :"
            ));
        }
        let exchange = exchange.unwrap_or(DEFAULT_EXCHANGE).to_owned();
        if exchange.is_empty()
            || exchange.len() > 200
            || exchange.starts_with("amq.")
            || !exchange.bytes().all(name_byte)
        {
            return Err(format!(
                "--amqp-exchange {exchange:?} must be 1 to 200 characters of A-Z a-z 0-9 _ - . : \
                 and not start with amq. (reserved by RabbitMQ)"
            ));
        }
        Ok(Some(AmqpConfig {
            url,
            queue_prefix,
            exchange,
        }))
    }

    /// The engine's options, with the subscription window as the consumers' prefetch.
    pub fn options(&self, window: usize) -> AmqpOptions {
        AmqpOptions {
            url: self.url.clone(),
            queue_prefix: self.queue_prefix.clone(),
            exchange: self.exchange.clone(),
            prefetch: u16::try_from(window).unwrap_or(u16::MAX),
        }
    }
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(url: &str) -> AmqpUrlArg {
        url.parse().unwrap()
    }

    #[test]
    fn flags_are_validated_with_the_password_kept_out_of_errors() {
        assert!(AmqpConfig::from_args(None, None, None).unwrap().is_none());
        let config = AmqpConfig::from_args(Some(&arg("amqp://u:pw@h/v")), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (config.exchange.as_str(), config.queue_prefix.as_str()),
            ("wsmq.direct", "")
        );
        assert_eq!(config.options(64).prefetch, 64);
        let err = AmqpConfig::from_args(Some(&arg("amqps://u:pw@h")), None, None).unwrap_err();
        assert!(
            err.starts_with("--amqp-url: amqps://") && !err.contains("pw"),
            "{err}"
        );
        for (prefix, exchange) in [
            (Some("a b"), None),
            (None, Some("amq.direct")),
            (None, Some("")),
        ] {
            assert!(AmqpConfig::from_args(Some(&arg("amqp://h")), prefix, exchange).is_err());
        }
        assert!(AmqpConfig::from_args(None, Some("p."), None).is_err());
    }
}
