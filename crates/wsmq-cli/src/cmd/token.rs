//! `token issue | revoke`: the tokens clients open sessions with.
//!
//! `issue` signs a JWT (HS256) and makes a `tokens2` access token for a user, and registers the
//! access token in `wsmq:access:{user}`, without which the gateways refuse it. `revoke` removes
//! every registered access token of the user and announces it on `wsmq:revoke`, on which every
//! gateway closes the user's sessions (4003).

use wsmq_proto::{
    keys,
    token::{Claims, Grants, issue_access_token, issue_hs256},
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
    let now = redis_time(&mut conn).await?;
    let expires = now.saturating_add(ttl);
    let claims = Claims {
        iat: Some(now),
        wsmq: grants,
        ..Claims::new(user.as_str(), expires)
    };
    let jwt = issue_hs256(&claims, jwt_secret.as_bytes());
    let access_token = issue_access_token(access_secret.as_bytes(), &user, now);
    let _added: u64 = redis::cmd("SADD")
        .arg(keys::access_tokens(&user))
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

/// Removes a user's access tokens and tells every gateway to close the user's sessions.
pub(crate) async fn revoke(ctx: &Ctx, user: &str) -> anyhow::Result<()> {
    let user = user_id(user)?;
    let rsmq = ctx.connect(false).await?;
    let mut conn = conn(&rsmq).await?;
    let key = keys::access_tokens(&user);
    // One transaction: the count is of the tokens actually deleted, and no gateway can see the
    // announcement while the tokens are still registered.
    let (removed, notified): (u64, u64) = redis::pipe()
        .atomic()
        .cmd("SCARD")
        .arg(&key)
        .cmd("DEL")
        .arg(&key)
        .ignore()
        .cmd("PUBLISH")
        .arg(keys::REVOKE_CHANNEL)
        .arg(user.as_str())
        .query_async(&mut conn)
        .await?;
    ctx.out.revoked(&user, removed, notified)
}
