//! `{"op":"presence","channel":c}`: who is subscribed to a channel, on all nodes: `ok` with
//! `"users":[{"user":…,"sessions":n}, …]` (by user id, at most
//! [`MAX_PRESENCE_USERS`](wsmq_proto::MAX_PRESENCE_USERS)) and the `total` number of users.
//! Needs the right to subscribe to the channel.

use wsmq_proto::{ChannelName, ErrorCode, MAX_PRESENCE_USERS, PresenceUser, Ref, ServerFrame};

use super::{Reply, Session};
use crate::error::GatewayError;

/// Authorizes and reads.
pub(super) async fn apply(
    session: &mut Session,
    channel: ChannelName,
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
            format!("you may not see who is on channel {channel}"),
        );
    }
    match gateway
        .presence
        .members(channel.as_str(), MAX_PRESENCE_USERS)
        .await
    {
        Ok(list) => {
            let mut ok = ServerFrame::ok(reference);
            if let ServerFrame::Ok { users, total, .. } = &mut ok {
                *users = Some(
                    list.users
                        .into_iter()
                        .map(|(user, sessions)| PresenceUser { user, sessions })
                        .collect(),
                );
                *total = Some(list.total);
            }
            Reply::Now(ok)
        }
        Err(err) => {
            gateway
                .metrics
                .engine_failed("presence", channel.as_str(), &err, false);
            Reply::failed(reference, &GatewayError::Engine(err))
        }
    }
}
