//! `{"op":"subscribe","channel":c,"since"?:{"offset","epoch"}}` on a channel with history:
//! join the channel, then send `ok` with its position and, with `since`, every publication
//! after it, then go live, with no gap and no duplicate.
//!
//! The order is what makes it exact: the subscription joins the hub first, pending (what
//! arrives is kept aside), then the history is read, then the `ok` and the replay are sent,
//! and only then what was kept aside past the replay (see `hub`). A `since` the history can
//! no longer serve (another epoch, trimmed or expired, past the latest) gets
//! `"recovered":false` with the current position and no replay: the client knows to reload.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Utf8Bytes;
use wsmq_proto::{
    ChannelName, Ref, ServerFrame, StreamPosition, encode_channel_publication, encode_server,
};

use super::{Reply, Session};
use crate::{
    engine::{EngineError, HistoryPage, HistoryPolicy, HistoryRange, Position},
    error::GatewayError,
    outbound::OutFrame,
    session::subscribe,
};

/// Publications read per history round trip while replaying.
const PAGE: u64 = 1000;

/// Longest wait for the node's subscription to the channel to take effect.
const LISTEN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Subscribes with history; a channel without history is subscribed to as usual, and a
/// `since` for it answered `"recovered":false`.
pub(super) async fn apply(
    session: &mut Session,
    channel: ChannelName,
    since: Option<StreamPosition>,
    reference: Option<Ref>,
) -> Reply {
    let policy = session.gateway.history_policy(channel.as_str());
    let Some(policy) = policy.filter(|_| !session.channels.contains_key(&channel)) else {
        // No history, or subscribed already: the plain subscribe (a no-op `ok` for the
        // latter).
        let mut ok = ServerFrame::ok(reference.clone());
        if let ServerFrame::Ok { recovered, .. } = &mut ok {
            *recovered = since.is_some().then_some(false);
        }
        let ok = encode_server(&ok);
        return match subscribe::channel(session, channel, ok.into()) {
            Ok(()) => Reply::Deferred,
            Err(refusal) => Reply::Now(refusal.into_frame(reference)),
        };
    };
    if let Err(refusal) = subscribe::admit_channel(session, &channel) {
        return Reply::Now(refusal.into_frame(reference));
    }
    let out = session.out.clone();
    let sink = Box::new(move |frame| {
        out.push(OutFrame::text(frame));
    });
    let cap = session.gateway.config.limits.outbound_buffer;
    let subscription = session
        .gateway
        .hub
        .subscribe_pending(channel.as_str(), sink, cap);
    // Read only once the node's subscription is in effect: a publication after the read then
    // reaches the member live. Bounded: with the engine's link down, the link's return reads
    // what was missed (see `hub`).
    if let Some(listening) = session
        .gateway
        .engine
        .broker
        .channel_listening(channel.as_str())
        && tokio::time::timeout(LISTEN_WAIT, listening.wait_on())
            .await
            .is_err()
    {
        tracing::debug!(%channel, "not yet listening to the channel; reading its history anyway");
    }
    let after = since.as_ref().map_or(u64::MAX, |s| s.offset);
    let page = match read(session, &channel, policy, after).await {
        Ok(page) => page,
        Err(err) => return Reply::failed(reference, &GatewayError::Engine(err)),
    };
    let recovered = since.as_ref().map(|since| recoverable(since, &page));
    let ok = ServerFrame::Ok {
        reference,
        id: None,
        offset: Some(page.top),
        epoch: Some(page.epoch.to_string()),
        recovered,
        messages: None,
    };
    if !session.out.send(OutFrame::text(encode_server(&ok))).await {
        return Reply::Deferred;
    }
    let mut at = Position {
        offset: page.top,
        epoch: Arc::clone(&page.epoch),
    };
    if recovered == Some(true) {
        match replay(session, &channel, policy, page).await {
            Some(reached) => at = reached,
            None => return Reply::Deferred,
        }
    }
    subscription.start_at(at);
    session.channels.insert(channel, subscription);
    Reply::Deferred
}

/// Whether every publication after `since` is in the history: same epoch, not past the
/// latest, and the first one read follows `since` at once.
fn recoverable(since: &StreamPosition, page: &HistoryPage) -> bool {
    if since.epoch != *page.epoch || since.offset > page.top {
        return false;
    }
    since.offset == page.top
        || page
            .entries
            .first()
            .is_some_and(|first| first.offset == since.offset + 1)
}

/// Sends `page`'s entries and the following pages up to `page.top`, waiting for room in the
/// outbound queue (a replay is not a slow client). Returns the last position sent, `None`
/// when the session closed. Should the history change meanwhile (trimmed, lost), the replay
/// stops where it can; what the member then misses reaches it as a `reset`.
async fn replay(
    session: &Session,
    channel: &ChannelName,
    policy: HistoryPolicy,
    mut page: HistoryPage,
) -> Option<Position> {
    let top = page.top;
    let epoch = Arc::clone(&page.epoch);
    let mut at = page.entries.first().map_or(top, |e| e.offset - 1);
    loop {
        for entry in page.entries.iter().filter(|e| e.offset <= top) {
            if entry.offset != at + 1 {
                break;
            }
            let mut frame = String::new();
            encode_channel_publication(&mut frame, channel, &entry.body, entry.offset, &epoch);
            if !session
                .out
                .send(OutFrame::text(Utf8Bytes::from(frame)))
                .await
            {
                return None;
            }
            at = entry.offset;
        }
        if at >= top || page.entries.is_empty() {
            break;
        }
        page = match read(session, channel, policy, at).await {
            Ok(next) if next.epoch == epoch => next,
            _ => break,
        };
    }
    Some(Position { offset: at, epoch })
}

/// One page of the history after `after` (engine failures counted and logged).
async fn read(
    session: &Session,
    channel: &ChannelName,
    policy: HistoryPolicy,
    after: u64,
) -> Result<HistoryPage, EngineError> {
    let broker = &session.gateway.engine.broker;
    let limit = policy.size.min(PAGE);
    broker
        .history(channel.as_str(), policy, HistoryRange::After(after), limit)
        .await
        .inspect_err(|err| {
            session
                .gateway
                .metrics
                .engine_failed("history", channel.as_str(), err, false);
        })
}
