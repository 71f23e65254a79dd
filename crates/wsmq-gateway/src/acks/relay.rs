//! Acks of streams on other nodes (placeholder until the cross-node relay lands).

use super::{AckRequest, Op, not_held};
use crate::{error::GatewayError, state::Gateway};

/// Asks the other nodes to apply the ack to one of `user`'s streams there.
pub(crate) async fn apply_remote(
    _gateway: &Gateway,
    _user: &str,
    _op: Op,
    request: &AckRequest,
) -> Result<(), GatewayError> {
    Err(not_held(request))
}
