//! The relay's side of the call object: it answers the page's WebSocket upgrade, opens the
//! session upstream with the key (`GET {upstream}/realtime?model=…`), sends the operator's
//! session first, then passes each client event that `check_client_event` (core) lets through
//! and each upstream event, which the call's meter charges as it does a sideband's.

use std::rc::Rc;

use futures_util::StreamExt;
use serde_json::json;
use worker::wasm_bindgen_futures::spawn_local;
use worker::{Response, WebSocket, WebSocketPair, WebsocketEvent};

use super::call::{upstream, Call, Live};
use crate::request::voice::call::{CallStart, EndReason};
use crate::request::voice::relay::{check_client_event, ended_event};

impl Call {
    /// Opens the session upstream and keeps the page's end of the relay for the Worker's
    /// upgrade (a request with a body cannot be an upgrade). Nothing is stored until the
    /// session is open: a failure leaves the Worker to settle the reservation.
    pub(super) async fn relay(self: &Rc<Self>, start: CallStart) -> worker::Result<()> {
        let query = format!("model={}", start.model);
        let socket = upstream(&start.rules.upstream_base_url, &self.key()?, &query).await?;
        self.store(&start).await?;
        // Before any event of the page: its events come after the operator's session upstream.
        let fixed = json!({ "type": "session.update", "session": start.session });
        let pair = WebSocketPair::new()?;
        pair.server.accept()?;
        self.meter(start, socket.clone(), Some(pair.server.clone()))?;
        socket.send_with_str(fixed.to_string())?;
        self.page.replace(Some(pair.client));
        let call = self.clone();
        spawn_local(async move { call.pass_client_events(pair.server).await });
        Ok(())
    }

    /// The Worker's upgrade: the page's end of the relay, once.
    pub(super) fn answer_upgrade(&self) -> worker::Result<Response> {
        let page = self.page.take();
        Response::from_websocket(page.ok_or_else(|| worker::Error::RustError("no relay to answer".into()))?)
    }

    /// Passes the page's events upstream, each checked first; a refusal goes back to the page
    /// as an `error` event. The page closing its socket ends the call.
    async fn pass_client_events(self: Rc<Self>, client: WebSocket) {
        if let Ok(mut events) = client.events() {
            while let Some(Ok(WebsocketEvent::Message(message))) = events.next().await {
                let live = self.live.borrow();
                let Some(live) = live.as_ref().filter(|live| live.ending.is_none()) else {
                    break;
                };
                let checked = check_client_event(
                    &live.meter.start.rules,
                    &live.meter.start.session,
                    &message.text().unwrap_or_default(),
                );
                if let Some(event) = checked.forward {
                    let _ = live.socket.send_with_str(event);
                }
                if let Some(refusal) = checked.refusal {
                    let _ = client.send_with_str(refusal);
                }
            }
        }
        self.end(EndReason::Closed).await;
    }
}

/// Ends a relay's session: the page is told why (an `error` event), then both sockets are
/// closed with the reason. A sideband's call is hung up instead, its socket closed at the end.
pub(super) fn close(live: &Live, reason: EndReason) {
    let Some(client) = &live.client else { return };
    let _ = client.send_with_str(ended_event(reason));
    let _ = client.close(Some(1000), Some(reason.name()));
    let _ = live.socket.close(Some(1000), Some(reason.name()));
}
