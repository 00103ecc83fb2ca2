//! The call object's class (binding `CALLS`, one object per call, named by its id upstream):
//! it holds the call's sideband WebSocket to OpenAI (a GPT-Live session's too:
//! `objects/live.rs`), meters every usage event into the user's
//! object, and hangs up when the budget, the session cap, a ban, the operator or a page
//! changing the fixed session says so. The decisions are `CallMeter`'s (core).
//!
//! An outgoing WebSocket does not hibernate: the object stays in memory (billed) while the call
//! lasts. A deploy or an eviction drops the socket and the memory; the alarm, which survives
//! both, then finds the call in storage but not in memory, hangs it up and settles it in full.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures_util::StreamExt;
use worker::wasm_bindgen_futures::spawn_local;
use worker::{
    durable_object, DurableObject, Env, Fetch, Headers, Method, Request, RequestInit, Response, State, WebSocket,
    WebsocketEvent,
};

use crate::budget::lease::{Grant, LeaseAsk};
use crate::budget::quota::Spend;
use crate::config::voice::call_key;
use crate::edge::objects::live::close_session;
use crate::edge::objects::user::{call_user, post_alert, top_up};
use crate::edge::objects::{command, relay};
use crate::edge::voice::{hang_up, settle};
use crate::edge::{env_string, http, log, Now};
use crate::objects::user::{LiveCharge, UserCommand, UserReply};
use crate::request::voice::call::{CallCommand, CallMeter, CallStart, EndReason, Step};
use crate::request::voice::live::{attach_url, CLOSE_EVENT};
use crate::request::voice::relay::is_relay;
use crate::secret::Secret;

const START_KEY: &str = "start";
/// How often a live call renews its reservation and checks the user's standing, and how soon
/// a lost call is found: the longest a call can run unmetered after its object is lost.
const WATCHDOG: Duration = Duration::from_secs(60);
/// After the hang-up, how long the sideband may stay open (its last usage events still
/// charged) before the call is settled without it.
const GRACE: Duration = Duration::from_secs(10);

#[durable_object]
pub struct VoiceCall {
    call: Rc<Call>,
}

/// What the event loop shares with the object's handlers.
pub(super) struct Call {
    state: State,
    env: Env,
    pub(super) live: RefCell<Option<Live>>,
    /// A relay's end for the page, until the Worker's upgrade takes it (`relay.rs`).
    pub(super) page: RefCell<Option<WebSocket>>,
}

pub(super) struct Live {
    pub(super) meter: CallMeter,
    /// The sideband, or the relay's session upstream.
    pub(super) socket: WebSocket,
    /// The relay's page (`relay.rs`): every upstream event is passed on to it.
    pub(super) client: Option<WebSocket>,
    /// Hung up (or hanging up) for this reason: the call is settled when its sideband closes.
    pub(super) ending: Option<(EndReason, bool)>,
}

impl DurableObject for VoiceCall {
    fn new(state: State, env: Env) -> Self {
        Self {
            call: Rc::new(Call {
                state,
                env,
                live: RefCell::new(None),
                page: RefCell::new(None),
            }),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        if req.headers().has("upgrade")? {
            return self.call.answer_upgrade();
        }
        match command::<CallCommand>(&mut req).await? {
            CallCommand::Start(start) => {
                self.call.start(*start).await?;
            }
            CallCommand::Relay(start) => self.call.relay(*start).await?,
            CallCommand::End { banned } => {
                let reason = if banned {
                    EndReason::Revoked
                } else {
                    EndReason::Operator
                };
                self.call.clone().end(reason).await;
            }
        }
        Response::ok("{}")
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let live = self
            .call
            .live
            .borrow()
            .as_ref()
            .map(|live| (live.meter.start.clone(), live.ending.is_some()));
        match live {
            // Hung up, and the sideband did not close within the grace.
            Some((_, true)) => self.call.clone().settle().await,
            Some((start, false)) if Now::read().millis() >= start.ends_at_ms => {
                self.call.clone().end(EndReason::MaxSeconds).await
            }
            Some((start, false)) => {
                self.call.clone().charge(Spend::default()).await;
                if self
                    .call
                    .live
                    .borrow()
                    .as_ref()
                    .is_some_and(|live| live.ending.is_none())
                {
                    self.call.arm(&start).await?;
                }
            }
            None => {
                // `get_multiple`, not `get::<String>`: no serde_wasm_bindgen copy for one string.
                let stored = self.call.state.storage().get_multiple(vec![START_KEY]).await?;
                let stored = stored.get(&START_KEY.into()).as_string();
                if let Some(start) = stored.and_then(|json| serde_json::from_str::<CallStart>(&json).ok()) {
                    self.call.lost(&start).await;
                }
            }
        }
        Response::ok("")
    }
}

impl Call {
    /// Stores the call, opens its sideband and starts metering it; the first charge (nothing
    /// spent) tells the user's object the call's id.
    async fn start(self: &Rc<Self>, start: CallStart) -> worker::Result<()> {
        self.store(&start).await?;
        let (base, key) = (&start.rules.upstream_base_url, self.key()?);
        let socket = match start.live_since_ms {
            Some(_) => connect(&attach_url(base, &start.call), &key).await?,
            None => upstream(base, &key, &format!("call_id={}", start.call)).await?,
        };
        self.meter(start, socket, None)
    }

    /// Meters the call from the events of `socket` (passed on to `client`, for the relay).
    pub(super) fn meter(
        self: &Rc<Self>,
        start: CallStart,
        socket: WebSocket,
        client: Option<WebSocket>,
    ) -> worker::Result<()> {
        socket.accept()?;
        self.live.replace(Some(Live {
            meter: CallMeter::new(start),
            socket: socket.clone(),
            client,
            ending: None,
        }));
        let call = self.clone();
        spawn_local(async move { call.listen(socket).await });
        Ok(())
    }

    /// Stores the call, for the alarm to find it if the object loses it, and arms the alarm.
    pub(super) async fn store(&self, start: &CallStart) -> worker::Result<()> {
        // As JSON text: storing the struct itself would bring serde_wasm_bindgen's copy of it.
        let stored = serde_json::to_string(start).map_err(|e| worker::Error::RustError(e.to_string()))?;
        self.state.storage().put(START_KEY, stored).await?;
        self.arm(start).await
    }

    /// The next alarm: the session cap or the watchdog, whichever comes first.
    async fn arm(&self, start: &CallStart) -> worker::Result<()> {
        let watchdog = Now::read().millis().saturating_add(WATCHDOG.as_millis() as i64);
        let at = start.ends_at_ms.min(watchdog);
        let offset = at.saturating_sub(Now::read().millis()).max(1);
        self.state.storage().set_alarm(offset).await
    }

    /// Reads the sideband's events in order, one at a time: each charge lands before the
    /// next event is read, so the hold is always topped up (or the call ended) in order.
    /// After a hang-up it goes on reading until the sideband closes: a response that started
    /// before the hang-up took effect is still charged from its own `response.done`.
    async fn listen(self: Rc<Self>, socket: WebSocket) {
        if let Ok(mut events) = socket.events() {
            self.clone().charge(Spend::default()).await;
            while let Some(Ok(WebsocketEvent::Message(message))) = events.next().await {
                let Some(text) = message.text() else { continue };
                let step = {
                    let mut live = self.live.borrow_mut();
                    let Some(live) = live.as_mut() else { return };
                    if let Some(client) = &live.client {
                        let _ = client.send_with_str(&text);
                    }
                    live.meter.on_event(&text)
                };
                match step {
                    Step::Nothing => {}
                    Step::Charge(spent) => self.clone().charge(spent).await,
                    Step::Send(event) => {
                        if let Some(live) = self.live.borrow().as_ref() {
                            let _ = live.socket.send_with_str(event.to_string());
                        }
                    }
                    Step::HangUp(reason) => self.clone().end(reason).await,
                }
            }
        }
        // Closed: by our hang-up, or by the page or OpenAI ending the call (hung up too, in
        // case only the sideband broke: a call this object cannot see must not go on).
        self.clone().end(EndReason::Closed).await;
        self.settle().await;
    }

    /// Charges `spent` to the user and tops the hold up; ends the call when the budget
    /// cannot hold the next two turns, the user is banned, or the user's object fails. With
    /// a shared budget, a hold its lease no longer covers is topped up from the pool first
    /// (and the hold renewed with the grant, nothing charged twice), or the call ends.
    async fn charge(self: Rc<Self>, spent: Spend) {
        let Some(start) = self.live.borrow().as_ref().map(|live| live.meter.start.clone()) else {
            return;
        };
        let (mut spent, mut grants) = (spent, Vec::new());
        let mut reason = EndReason::Budget;
        for _ in 0..2 {
            let command = UserCommand::Renew {
                reservation_id: start.reservation_id,
                limits: start.limits,
                now_ms: Now::read().millis(),
                charge: Some(LiveCharge {
                    call: start.call.clone(),
                    issued_at: start.issued_at,
                    spent,
                    hold: start.hold,
                    leases: start.pools.clone(),
                    grants,
                }),
            };
            reason = match call_user(&self.env, &start.sub, command).await {
                Ok(UserReply::Renewed { expires_at_ms: Some(_) }) => return,
                Ok(UserReply::Revoked) => EndReason::Revoked,
                Ok(UserReply::NeedLease { leases }) => match self.top_up(&start, leases).await {
                    Some(granted) => {
                        (spent, grants) = (Spend::default(), granted);
                        continue;
                    }
                    None => EndReason::Budget,
                },
                // No room; or, unmetered it may not go on: the charge is lost, the reservation holds.
                Ok(
                    UserReply::Renewed { expires_at_ms: None }
                    | UserReply::Admitted { .. }
                    | UserReply::Refused { .. }
                    | UserReply::UnknownResponse { .. }
                    | UserReply::Status { .. }
                    | UserReply::Finished
                    | UserReply::Minted
                    | UserReply::MintRefused { .. }
                    | UserReply::PlanChanged { .. }
                    | UserReply::Leased { .. }
                    | UserReply::Pool { .. },
                ) => EndReason::Budget,
                Err(error) => {
                    log::warn("voice_charge_failed", &error.to_string());
                    EndReason::Budget
                }
            };
            break;
        }
        self.end(reason).await;
    }

    /// The grants the pools give for `asks`; `None` when one refuses (the budget is spent).
    async fn top_up(&self, start: &CallStart, asks: Vec<LeaseAsk>) -> Option<Vec<Grant>> {
        let raise_alert = |message: &str| {
            log::alert(message);
            if let Some(url) = start.alert_webhook.clone() {
                spawn_local(post_alert(url, message.to_owned()));
            }
        };
        let granted = top_up(&self.env, &start.pools, start.pool_alerts, &raise_alert, asks).await;
        if granted.is_err() {
            log::info(
                "voice_lease_refused",
                &format!("call {}: a shared budget is spent", start.call),
            );
        }
        granted.ok()
    }

    /// Hangs the call up once; it is settled when its sideband closes (or `GRACE` later).
    pub(super) async fn end(self: Rc<Self>, reason: EndReason) {
        let start = {
            let mut live = self.live.borrow_mut();
            let Some(live) = live.as_mut().filter(|live| live.ending.is_none()) else {
                return;
            };
            live.ending = Some((reason, false));
            live.meter.mark_end(Now::read().millis());
            relay::close(live, reason);
            live.meter.start.clone()
        };
        let hung_up = self.hang_up(&start).await;
        let still_live = match self.live.borrow_mut().as_mut() {
            Some(live) => {
                live.ending = Some((reason, hung_up));
                true
            }
            None => false, // settled meanwhile: the sideband closed
        };
        if !still_live {
            return;
        }
        if let Err(error) = self.state.storage().set_alarm(GRACE).await {
            log::warn("voice_alarm_failed", &error.to_string());
        }
    }

    /// Settles the call: what it was charged stays, each response still under way counts at
    /// its worst case; the slot is freed and the call forgotten.
    async fn settle(self: Rc<Self>) {
        let Some(mut live) = self.live.borrow_mut().take() else {
            return;
        };
        let (reason, hung_up) = live.ending.unwrap_or((EndReason::Closed, false));
        let _ = live.socket.close(Some(1000), Some(reason.name()));
        let settlement = live.meter.settlement(Now::read().millis());
        self.finish(&live.meter.start, settlement).await;
        let charged = live.meter.charged.plus(settlement);
        let start = &live.meter.start;
        log::info(
            "voice_call_end",
            &format!(
                "call {} of {:?} ({}) ended: {}; hung up: {hung_up}; charged {} tokens, {} nano-USD; overrun: {}",
                start.call,
                start.sub,
                start.model,
                reason.name(),
                charged.tokens,
                charged.nano_usd,
                live.meter.overran
            ),
        );
    }

    /// The object lost its call (evicted, a deploy): hung up, and settled at its whole hold,
    /// as a lost stream's reservation expires charged in full.
    async fn lost(&self, start: &CallStart) {
        self.hang_up(start).await;
        log::warn(
            "voice_call_lost",
            &format!("call {} of {:?}: hung up, charged its hold", start.call, start.sub),
        );
        self.finish(start, start.hold).await;
    }

    /// The upstream key, read alone (the call brings everything else).
    pub(super) fn key(&self) -> worker::Result<Secret> {
        call_key(|name| env_string(&self.env, name))
            .ok_or_else(|| worker::Error::RustError("secret OPENAI_API_KEY is not set".into()))
    }

    /// Hangs a Realtime call up; closes a Live session on its sideband (a fresh one if this
    /// object lost its own).
    async fn hang_up(&self, start: &CallStart) -> bool {
        // A relay's session ends with its sockets, closed already.
        if is_relay(&start.call) {
            return true;
        }
        let Ok(key) = self.key() else { return false };
        let base = &start.rules.upstream_base_url;
        if start.live_since_ms.is_none() {
            return hang_up(base, &key, &start.call).await;
        }
        let sent = self
            .live
            .borrow()
            .as_ref()
            .map(|live| live.socket.send_with_str(CLOSE_EVENT).is_ok());
        match sent {
            Some(sent) => sent,
            None => close_session(base, &key, &start.call).await,
        }
    }

    async fn finish(&self, start: &CallStart, spent: Spend) {
        settle(&self.env, &start.sub, start.reservation_id, start.limits, spent).await;
        let storage = self.state.storage();
        let _ = storage.delete(START_KEY).await;
        let _ = storage.delete_alarm().await;
    }
}

/// `GET {upstream}/realtime?{query}` upgraded to a WebSocket: a call's sideband
/// (`call_id=…`), or a relay's session (`model=…`).
pub(super) async fn upstream(upstream_base_url: &str, key: &Secret, query: &str) -> worker::Result<WebSocket> {
    connect(&format!("{upstream_base_url}/realtime?{query}"), key).await
}

/// `url` upgraded to a WebSocket, with the key in `Authorization`. workers-rs
/// `WebSocket::connect` cannot set headers, so the request is built by hand (Cloudflare: a
/// `fetch` with `Upgrade: websocket`).
pub(super) async fn connect(url: &str, key: &Secret) -> worker::Result<WebSocket> {
    let headers = Headers::new();
    headers.set("upgrade", "websocket")?;
    headers.set("authorization", &format!("Bearer {}", key.expose()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let answer = Fetch::Request(http::outgoing(url, &init)?).send().await?;
    let status = answer.status_code();
    answer
        .websocket()
        .ok_or_else(|| worker::Error::RustError(format!("an upgrade answered {status}, not a WebSocket")))
}
