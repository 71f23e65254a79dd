//! Keeping passwords and secrets out of what `wsmq-cli` prints.
//!
//! A Redis URL may carry a password (`redis://:pw@host`, `redis+unix:///s.sock?pass=pw`), and
//! error messages that quote the URL end up in terminals, CI logs and bug reports.

use std::borrow::Cow;

/// What replaces a redacted part.
const MASK: &str = "***";

/// The URL with its user info and any `pass`/`password` query value replaced by `***`.
///
/// Works on the text alone, so that even a URL too broken to parse is shown safely: a stray
/// `@` makes it hide more than needed, never less.
pub(crate) fn url(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return Cow::Borrowed(url);
    };
    let (scheme, rest) = url.split_at(scheme_end);
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    // The last `@` ends the user info even when an unencoded password contains `@`.
    let rest = match rest.rfind('@') {
        Some(at) => {
            out.push_str(MASK);
            &rest[at..]
        }
        None => rest,
    };
    match rest.split_once('?') {
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            let params: Vec<Cow<'_, str>> = query.split('&').map(query_param).collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(rest),
    }
    if out == url {
        Cow::Borrowed(url)
    } else {
        Cow::Owned(out)
    }
}

/// `text` with every occurrence of each non-empty secret replaced by `***`.
///
/// The last line of defence for error messages that come from libraries, which may quote a URL
/// or a secret in ways [`url`] cannot foresee.
pub(crate) fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        if !secret.is_empty() {
            text = text.replace(secret, MASK);
        }
    }
    text
}

/// The password of a Redis URL, as written in it, if it has one.
pub(crate) fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    if let Some(at) = rest.rfind('@') {
        let userinfo = &rest[..at];
        // Without a `:` the user info is only a user name.
        return userinfo
            .split_once(':')
            .map(|(_, pw)| pw)
            .filter(|pw| !pw.is_empty());
    }
    let query = rest.split_once('?')?.1;
    query.split('&').find_map(|param| {
        let (key, value) = param.split_once('=')?;
        matches!(key, "pass" | "password").then_some(value)
    })
}

fn query_param(param: &str) -> Cow<'_, str> {
    match param.split_once('=') {
        Some((key @ ("pass" | "password"), _)) => Cow::Owned(format!("{key}={MASK}")),
        _ => Cow::Borrowed(param),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(url("redis://:pw@host:6379/2"), "redis://***@host:6379/2");
        assert_eq!(url("rediss://user:p@ss@host"), "rediss://***@host");
        assert_eq!(
            url("redis+unix:///tmp/r.sock?db=1&pass=pw"),
            "redis+unix:///tmp/r.sock?db=1&pass=***"
        );
        assert_eq!(url("not a url"), "not a url");
    }

    #[test]
    fn passwords_are_found_where_redis_reads_them() {
        assert_eq!(url_password("redis://:pw@host"), Some("pw"));
        assert_eq!(url_password("redis://user:p@ss@host"), Some("p@ss"));
        assert_eq!(url_password("redis+unix:///s?password=pw"), Some("pw"));
        assert_eq!(url_password("redis://host:6379"), None);
        assert_eq!(url_password("redis://user@host:6379"), None);
    }

    #[test]
    fn scrub_masks_every_occurrence() {
        assert_eq!(scrub("a pw b pw", ["pw", ""]), "a *** b ***");
    }
}
