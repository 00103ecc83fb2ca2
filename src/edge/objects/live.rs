//! Ending a GPT-Live session the call object no longer holds (lost, or never handed to it):
//! Live has no hang-up endpoint, so a fresh sideband attaches and sends `session.close`.

use crate::edge::log;
use crate::edge::objects::call::connect;
use crate::request::voice::live::{attach_url, CLOSE_EVENT};
use crate::secret::Secret;

/// Attaches to the session `id` and closes it; a failure is logged (`voice_hangup_failed`): the
/// session then runs unmetered until it ends upstream.
pub async fn close_session(upstream_base_url: &str, key: &Secret, id: &str) -> bool {
    let closed = match connect(&attach_url(upstream_base_url, id), key).await {
        Ok(socket) => socket
            .accept()
            .and_then(|()| socket.send_with_str(CLOSE_EVENT))
            .and_then(|()| socket.close(Some(1000), Some("closed"))),
        Err(error) => Err(error),
    };
    if let Err(error) = &closed {
        log::warn("voice_hangup_failed", &format!("session {id}: {error}"));
    }
    closed.is_ok()
}
