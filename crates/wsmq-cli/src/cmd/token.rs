//! `token issue | revoke`: the tokens clients open sessions with.
//!
//! `issue` signs a JWT (HS256) and makes a `tokens2` access token for a user, and registers the
//! access token in `wsmq:access:{user}`, without which the gateways refuse it. `revoke` removes
//! every registered access token of the user and sets the user's revocation mark
//! (`wsmq:revoked:{user}`, Redis' clock), against which the gateways refuse every JWT issued
//! until then, in one script (`revoke.lua`) that also announces it on `wsmq:revoke`, on which
//! every gateway closes the user's sessions (4003).

use std::{sync::LazyLock, time::Duration};

use redis::Script;
use wsmq_proto::{
    keys,
    token::{Audience, Claims, Grants, MAX_JWT_LIFETIME_SECS, issue_access_token, issue_hs256},
};

use super::{Ctx, conn, redis_time, user_id};
use crate::{cli::IssueArgs, output::IssuedTokens};

/// Issues, registers and prints a JWT and an access token.
pub(crate) async fn issue(ctx: &Ctx, args: IssueArgs) -> anyhow::Result<()> {
    let user = user_id(&args.user)?;
    let jwt_secret = args
        .jwt_secret
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "missing --jwt-secret (or WSMQ_JWT_SECRET): the secret the gateways verify JWTs with"
            )
        })?;
    // As in tokens2, one secret serves both formats unless the gateways were given two.
    let access_secret = args
        .access_token_secret
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(jwt_secret);
    let ttl = args.ttl.as_secs();
    anyhow::ensure!(ttl >= 1, "--ttl must be at least 1s");
    // The gateways refuse longer lifetimes: revocation marks could not outlive such tokens.
    anyhow::ensure!(
        ttl <= MAX_JWT_LIFETIME_SECS,
        "--ttl must be at most {}d (the longest JWT lifetime the gateways accept)",
        MAX_JWT_LIFETIME_SECS / 86_400
    );
    let grants = (!args.consume.is_empty()
        || !args.subscribe.is_empty()
        || !args.publish.is_empty())
    .then(|| Grants {
        consume: args.consume.clone(),
        subscribe: args.subscribe.clone(),
        publish: args.publish.clone(),
    });

    let rsmq = ctx.connect(false).await?;
    let mut conn = conn(&rsmq).await?;
    let (access_key, mark_key) = user_keys(&rsmq, &user);
    let now = issue_time(&mut conn, &mark_key, &user).await?;
    let expires = now.saturating_add(ttl);
    let claims = Claims {
        iat: Some(now),
        iss: args.issuer.clone().filter(|s| !s.is_empty()),
        aud: args
            .audience
            .clone()
            .filter(|s| !s.is_empty())
            .map(Audience::One),
        wsmq: grants,
        ..Claims::new(user.as_str(), expires)
    };
    let jwt = issue_hs256(&claims, jwt_secret.as_bytes());
    let access_token = issue_access_token(access_secret.as_bytes(), &user, now);
    let _added: u64 = redis::cmd("SADD")
        .arg(&access_key)
        .arg(&access_token)
        .query_async(&mut conn)
        .await?;

    ctx.out.tokens(&IssuedTokens {
        user: &user,
        jwt: &jwt,
        access_token: &access_token,
        expires,
    })
}

/// Redis' clock, once it is past the user's revocation mark: a JWT issued in the second of a
/// revocation counts as revoked (`iat` has one-second resolution), so a `token issue` right
/// after a `token revoke` waits for the next second rather than print a dead token.
async fn issue_time(
    conn: &mut wsmq_rsmq::RsmqConnection,
    mark_key: &str,
    user: &str,
) -> anyhow::Result<u64> {
    loop {
        let now = redis_time(conn).await?;
        let mark: Option<u64> = redis::cmd("GET").arg(mark_key).query_async(conn).await?;
        match mark {
            // A mark far ahead (a clock that jumped back) is not waited out here: the token
            // would be refused, which `token revoke` cannot undo either; say so.
            Some(mark) if mark >= now && mark - now < 5 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(mark) if mark >= now => anyhow::bail!(
                "user '{user}' has a revocation mark {}s ahead of Redis' clock; \
                 tokens issued now would be refused",
                mark - now
            ),
            _ => return Ok(now),
        }
    }
}

/// The user's access-token set and revocation mark; on a cluster with the user id as their
/// hash tag, so the revocation script touches one slot.
fn user_keys(rsmq: &wsmq_rsmq::Rsmq, user: &str) -> (String, String) {
    if rsmq.is_cluster() {
        (keys::access_tokens_tagged(user), keys::revoked_tagged(user))
    } else {
        (keys::access_tokens(user), keys::revoked(user))
    }
}

/// The revocation script (`revoke.lua`).
static REVOKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("revoke.lua")));

/// Removes a user's access tokens, marks the JWTs issued until now as revoked, and tells every
/// gateway to close the user's sessions.
pub(crate) async fn revoke(ctx: &Ctx, user: &str) -> anyhow::Result<()> {
    let user = user_id(user)?;
    let rsmq = ctx.connect(false).await?;
    let mut conn = conn(&rsmq).await?;
    let (access_key, mark_key) = user_keys(&rsmq, &user);
    let (removed, notified, mark): (u64, u64, u64) = REVOKE
        .key(access_key)
        .key(mark_key)
        .arg(user.as_str())
        .arg(keys::REVOCATION_TTL_SECS)
        .arg(keys::REVOKE_CHANNEL)
        .invoke_async(&mut conn)
        .await?;
    ctx.out.revoked(&user, removed, mark, notified)
}
