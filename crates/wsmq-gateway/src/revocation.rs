//! Revocation on a running node: closing the sessions of revoked users, and making sure none
//! is missed.
//!
//! `wsmq-cli token revoke --user U` empties U's access-token registry and writes U's
//! revocation mark in one step, then announces U on `wsmq:revoke`. The announcement closes U's
//! sessions here at once (4003). It travels over pub/sub, which keeps nothing for a node whose
//! link is down, so the records are checked besides, against every open session, whenever an
//! announcement may have been lost:
//!
//! - when the engine's link comes back ([`Revocation::Missed`]) and when this node fell
//!   behind the announcements (a lagged broadcast);
//! - every [`AuthConfig::revocation_sweep`](crate::config::AuthConfig) (60 s), for losses no
//!   one noticed;
//! - for a session that registered while a revocation arrived: its handshake may have read the
//!   records just before (see [`SessionRegistry`](crate::state::SessionRegistry)).
//!
//! A sweep costs one engine round trip per [`SWEEP_BATCH`] distinct credentials (a pipeline:
//! per user one `GET` of the mark, per access token one `SISMEMBER`), never one per session.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{sync::broadcast::error::RecvError, time::Instant};
use tracing::{debug, info, warn};
use wsmq_proto::CloseCode;

use crate::{
    auth::Credential,
    engine::{EngineError, Revocation},
    state::Gateway,
};

/// Most credentials looked up in one round trip.
pub(crate) const SWEEP_BATCH: usize = 512;

/// First retry of a sweep that could not reach the engine; doubles up to the sweep period.
const RETRY_MIN: Duration = Duration::from_secs(1);

/// Starts the node's revocation worker on the shutdown tracker.
pub(crate) fn spawn_worker(gateway: &Arc<Gateway>) {
    let g = Arc::clone(gateway);
    let mut revocations = gateway.engine.cluster.revocations();
    gateway.shutdown.spawn(async move {
        let token = g.shutdown.token.clone();
        let period = g.config.auth.revocation_sweep;
        let mut next_sweep = Instant::now() + period;
        let mut retry = RETRY_MIN;
        loop {
            let sweep_now = tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep_until(next_sweep) => true,
                event = revocations.recv() => match event {
                    Ok(Revocation::User(user)) => {
                        let closed = g.sessions.close_user(&user, CloseCode::FORBIDDEN);
                        if closed > 0 {
                            info!(user = %user, closed, "access revoked; sessions closed");
                        }
                        false
                    }
                    Ok(Revocation::Missed) => {
                        info!("revocations may have been missed; checking every session");
                        g.sessions.note_missed();
                        true
                    }
                    Err(RecvError::Lagged(lost)) => {
                        warn!(lost, "revocations were missed; checking every session");
                        g.sessions.note_missed();
                        true
                    }
                    Err(RecvError::Closed) => break,
                },
            };
            if !sweep_now {
                continue;
            }
            match sweep(&g).await {
                Ok(closed) => {
                    if closed > 0 {
                        info!(closed, "revoked sessions found by the check; closed");
                    }
                    retry = RETRY_MIN;
                    next_sweep = Instant::now() + period;
                }
                Err(err) => {
                    debug!(cause = %err, retry_in = ?retry, "revocation check failed");
                    next_sweep = Instant::now() + retry;
                    retry = (retry * 2).min(period);
                }
            }
        }
    });
}

/// Checks every open session against the records and closes, with 4003, those whose
/// credential was revoked; returns how many it closed.
///
/// # Errors
///
/// The engine's error when a batch could not be read; the sessions of the batches read before
/// it were handled.
pub(crate) async fn sweep(gateway: &Gateway) -> Result<usize, EngineError> {
    let sessions = gateway.sessions.snapshot();
    if sessions.is_empty() {
        return Ok(0);
    }
    // One lookup per distinct (user, credential): a user's JWT sessions share their mark.
    let mut lookups: HashMap<(&str, Option<&str>), usize> = HashMap::new();
    let mut queries = Vec::new();
    for session in &sessions {
        let query = session.credential.query(&session.user);
        lookups
            .entry((query.user, query.access_token))
            .or_insert_with(|| {
                queries.push(query);
                queries.len() - 1
            });
    }
    let mut checks = Vec::with_capacity(queries.len());
    for batch in queries.chunks(SWEEP_BATCH) {
        let answers = gateway.engine.cluster.check_credentials(batch).await?;
        checks.extend(answers.checks);
    }
    let mut closed = 0;
    for session in &sessions {
        let query = session.credential.query(&session.user);
        let Some(check) = lookups
            .get(&(query.user, query.access_token))
            .and_then(|&i| checks.get(i))
        else {
            continue;
        };
        if session.credential.is_revoked_by(check)
            && gateway
                .sessions
                .close_session(&session.user, session.n, CloseCode::FORBIDDEN)
        {
            closed += 1;
        }
    }
    Ok(closed)
}

/// Whether `credential` of `user` still stands, by one read of the records (a session that
/// registered while a revocation arrived).
///
/// # Errors
///
/// The engine's error when the records cannot be read.
pub(crate) async fn still_valid(
    gateway: &Gateway,
    user: &str,
    credential: &Credential,
) -> Result<bool, EngineError> {
    let query = [credential.query(user)];
    let answers = gateway.engine.cluster.check_credentials(&query).await?;
    Ok(answers
        .checks
        .first()
        .is_some_and(|check| !credential.is_revoked_by(check)))
}
