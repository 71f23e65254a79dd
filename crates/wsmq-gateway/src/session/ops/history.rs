//! `{"op":"history","channel":c,"limit"?:50,"before"?:42}`: page back through a channel's
//! history (chat scroll-back): `ok` with the `epoch` and the latest `limit` publications
//! before `before` (exclusive), oldest first. Needs the right to subscribe to the channel; a
//! channel without history is `not_found`.

use wsmq_proto::{ChannelName, ErrorCode, HistoryItem, Ref, ServerFrame};

use super::{Reply, Session};
use crate::{engine::HistoryRange, error::GatewayError};

/// Authorizes and reads.
pub(super) async fn apply(
    session: &mut Session,
    channel: ChannelName,
    limit: u32,
    before: Option<u64>,
    reference: Option<Ref>,
) -> Reply {
    let gateway = &session.gateway;
    if !gateway
        .auth
        .policy
        .may_subscribe(&session.identity, &channel)
    {
        return Reply::error(
            reference,
            ErrorCode::Forbidden,
            format!("you may not read the history of channel {channel}"),
        );
    }
    let Some(policy) = gateway.history_policy(channel.as_str()) else {
        return Reply::error(
            reference,
            ErrorCode::NotFound,
            format!("channel {channel} keeps no history"),
        );
    };
    let read = gateway
        .engine
        .broker
        .history(
            channel.as_str(),
            policy,
            HistoryRange::Before(before),
            u64::from(limit),
        )
        .await;
    match read {
        Ok(page) => Reply::Now(ServerFrame::Ok {
            reference,
            id: None,
            offset: Some(page.top),
            epoch: Some(page.epoch.to_string()),
            recovered: None,
            messages: Some(
                page.entries
                    .into_iter()
                    .map(|e| HistoryItem {
                        offset: e.offset,
                        message: e.body,
                        sent: e.sent,
                    })
                    .collect(),
            ),
        }),
        Err(err) => {
            gateway
                .metrics
                .engine_failed("history", channel.as_str(), &err, false);
            Reply::failed(reference, &GatewayError::Engine(err))
        }
    }
}
