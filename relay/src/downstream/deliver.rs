//! A whole message the relay composed itself (a delivery status
//! notification), delivered through the same next hops and pooled
//! connections as relayed mail.

use super::{Envelope, HopId, Outbound};
use crate::reply::Reply;
use routing::table::ConnectorRoute;

impl Outbound {
    /// `wire` (CRLF lines, dot-stuffed, without the final dot) to the
    /// envelope's one recipient; the next hop's reply, or ours when it could
    /// not be reached or was lost.
    pub async fn deliver(
        &self,
        id: HopId,
        route: &ConnectorRoute,
        envelope: &Envelope<'_>,
        wire: &[u8],
    ) -> Reply {
        let (mut hop, r) = match self.start(id, route, envelope).await {
            Ok(started) => started,
            Err((r, _)) => return r,
        };
        if !r.is_positive_completion() {
            hop.reset(self).await;
            return r;
        }
        if let Err(r) = hop.data().await {
            if r.code != 421 {
                hop.reset(self).await;
            }
            return r;
        }
        let mut last = Vec::with_capacity(wire.len() + 3);
        last.extend_from_slice(wire);
        last.extend_from_slice(b".\r\n");
        match hop.finish(&last).await {
            Ok(r) => {
                if r.code != 421 {
                    hop.release(self);
                }
                r
            }
            Err(r) => r,
        }
    }
}
