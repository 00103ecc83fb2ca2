//! What the Worker and a user's object say to each other: a delivery (the settlements carried,
//! then one command) and the object's answer, versioned (`PROTOCOL_VERSION`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::budget::alerts::{Alert, AlertRules};
use crate::budget::lease::{Grant, LeaseAsk};
use crate::budget::plans::PlanChoice;
use crate::budget::quota::{Ask, Limits, Reservation, Spend, Standing};
use crate::error::Refusal;
use crate::objects::user::voice::{LiveCharge, VoiceSlots};

/// The version of the objects' protocol this code speaks. 1: before versions (no `version`
/// sent, no `settled` answered, unknown fields ignored); 2: `version`, `settled`, unknown
/// fields and newer versions refused, `Renew`; 3: the command and the reply are externally
/// tagged, each under its own key (`{"command":{"admit":{..}}}`, `{"reply":{"admitted":{..}}}`),
/// not flattened with an `op`/`outcome` tag beside their fields: serde reads those through a
/// buffer of every field, which was about 40 KB of the wasm. Raise it when a message would mean
/// something else to an object of the version before; docs/architecture.md says what each pair
/// does.
pub const PROTOCOL_VERSION: u32 = 3;

/// A request that ended: its reservation is replaced by what it used. Settling is idempotent
/// by reservation id: once the reservation is gone (settled, cancelled, or expired and charged
/// in full), the same settlement again changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finished {
    pub reservation_id: u64,
    pub used_tokens: u64,
    pub limits: Limits,
    /// When the request ended, not when its settlement arrives: a settlement held back a
    /// moment is checked against the expiry at its end (and charged to the day its
    /// reservation was made).
    pub now_ms: i64,
    /// The id of the stored response the request created, which this user may continue.
    #[serde(default)]
    pub created_response: Option<String>,
    /// Its output items' ids, which this user may name as input items. Absent when empty, so
    /// a settlement without them reads the same to an object that predates them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_items: Vec<String>,
    #[serde(default)]
    pub used_nano_usd: u64,
}

/// What the Worker sends an object: the settlements its isolate held back for this object,
/// applied first, then one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// The sender's `PROTOCOL_VERSION`.
    pub version: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settle: Vec<Finished>,
    pub command: UserCommand,
}

impl Delivery {
    pub fn new(settle: Vec<Finished>, command: UserCommand) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            settle,
            command,
        }
    }

    /// Settlements alone, in one call: the last is the command, the others ride with it.
    pub fn flush(mut settle: Vec<Finished>) -> Option<Self> {
        let last = settle.pop()?;
        Some(Self::new(settle, UserCommand::Finish(last)))
    }

    /// Reads a delivery as an object must: a message it does not wholly understand (a newer
    /// version, an unknown command or field) is refused, never answered OK half applied.
    /// serde ignores unknown fields unless told otherwise, hence `deny_unknown_fields` on
    /// every type of a command. A Worker of an earlier version sends its command flattened
    /// beside `version` (or no `version` at all): refused as unreadable.
    pub fn read(json: &str) -> Result<Self, String> {
        let delivery: Self = serde_json::from_str(json).map_err(|e| format!("unreadable delivery: {e}"))?;
        if delivery.version > PROTOCOL_VERSION {
            return Err(format!(
                "protocol version {} is newer than this object's {PROTOCOL_VERSION}",
                delivery.version
            ));
        }
        Ok(delivery)
    }

    /// The reservations whose settlements it carries, the command's included.
    pub(super) fn settles(&self) -> Vec<u64> {
        let command = match &self.command {
            UserCommand::Finish(finished) => Some(finished.reservation_id),
            UserCommand::Admit { .. }
            | UserCommand::Cancel { .. }
            | UserCommand::Revoke { .. }
            | UserCommand::Unrevoke {}
            | UserCommand::Status { .. }
            | UserCommand::Mint { .. }
            | UserCommand::SetPlan { .. }
            | UserCommand::Renew { .. }
            | UserCommand::Block { .. }
            | UserCommand::Unblock {}
            | UserCommand::Lease { .. }
            | UserCommand::PoolStatus { .. } => None,
        };
        self.settle.iter().map(|f| f.reservation_id).chain(command).collect()
    }
}

/// An object's answer to a delivery: its reply, and the reservations whose settlements it
/// applied. The Worker holds on to every settlement not listed and delivers it again, so an
/// object that dropped one (an object of version 1 lists none) loses nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    #[serde(default)]
    pub settled: Vec<u64>,
    pub reply: UserReply,
}

/// A message to a user's object (or a shared one), sent as JSON in a `Delivery`. Each request
/// makes one admission call; its settlement rides on a later call to the same object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum UserCommand {
    /// Checks revocation (for a token issued at `issued_at`), then, with an `ask`, admits the
    /// request against `limits`. Without an `ask` nothing is counted (a status read).
    Admit {
        issued_at: Option<i64>,
        ask: Option<Ask>,
        limits: Limits,
        alerts: AlertRules,
        now_ms: i64,
        /// The stored response the request continues: unless this user created it (and it has
        /// not expired), the request is refused as `UnknownResponse` and nothing is counted.
        #[serde(default)]
        continues: Option<String>,
        /// Stored items the request's input names by id (`ALLOW_STORED_CONTEXT`): the same
        /// check as `continues`, for each. Absent when empty: an object that predates it
        /// refuses a message that carries it (`deny_unknown_fields`), never skips the check.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        references: Vec<String>,
        /// The plan the Worker checked the request with (`limits` are its limits), and the
        /// one the token claims. Absent for the global budget.
        #[serde(default)]
        plan: Option<PlanAsk>,
        /// The user's `sub`: a user's object lists what it charges under it in the day's
        /// usage index. Absent for the shared objects, which list nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sub: Option<String>,
        /// A voice call: a voice slot is checked (after the plan, before the quota) and taken
        /// while the reservation lasts. Absent otherwise: an object that predates voice refuses
        /// a call's admission (`deny_unknown_fields`), never admits it without a slot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voice: Option<VoiceSlots>,
        /// The shared budgets the request is admitted against, by a lease this object holds
        /// of each. Absent when empty: an object that predates leases refuses a message that
        /// carries them, never admits past a budget it does not know.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        leases: Vec<PoolTerms>,
        /// Grants the pools just made to this object, to deposit before admitting.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        grants: Vec<Grant>,
    },
    /// A request ended: its settlement alone (a flush, or one that must land now).
    Finish(Finished),
    /// The request of `reservation_id` was refused after its admission (by the global
    /// budget), or a voice call could not be created upstream: everything its admission took
    /// is given back, the call's place among the day's calls too.
    Cancel {
        reservation_id: u64,
        limits: Limits,
        now_ms: i64,
    },
    /// Tokens of this user issued at or before `at` (Unix seconds) stop working.
    Revoke { at: i64 },
    /// Lifts a revocation. (Braces: unknown fields are refused only in a struct variant.)
    Unrevoke {},
    /// Where the user stands, for an operator. `limits` are the default plan's;
    /// `plan_limits` every plan's, so the object answers with the plan in force.
    Status {
        limits: Limits,
        now_ms: i64,
        #[serde(default)]
        plan_limits: BTreeMap<String, Limits>,
    },
    /// A client asks for one more guest token: admitted if it minted fewer than `per_hour`
    /// in the last hour (the client's object only).
    Mint { per_hour: u32, now_ms: i64 },
    /// Sets (`Some`) or lifts (`None`) the operator's plan override; answers a `Status`.
    SetPlan {
        plan: Option<String>,
        limits: Limits,
        now_ms: i64,
        plan_limits: BTreeMap<String, Limits>,
    },
    /// The request of `reservation_id` is still alive (a stream): its reservation and stream
    /// slot are kept `RESERVATION_TIMEOUT_MS` longer. Sent every `RENEW_EVERY_MS`.
    Renew {
        reservation_id: u64,
        limits: Limits,
        now_ms: i64,
        /// A live voice call's usage since its last renewal: charged at once, and the
        /// reservation held at the call's worst case again if the budget has room. Answered
        /// `Renewed { expires_at_ms: None }` when it has not (the call must end), `Revoked`
        /// when the user was blocked or the call's token revoked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        charge: Option<LiveCharge>,
    },
    /// Every token of this user stops working, whatever its `iat` (Unix seconds of `at` are
    /// only shown): an identity provider's refreshed token is refused too. Answers a `Status`.
    Block { at: i64 },
    /// Lifts a block; answers a `Status`.
    Unblock {},
    /// To a shared budget's object: a holder's lease top-up, give-back and report.
    Lease {
        ask: LeaseAsk,
        limits: Limits,
        alerts: AlertRules,
        now_ms: i64,
    },
    /// To a shared budget's object: where it stands, for an operator.
    PoolStatus { limits: Limits, now_ms: i64 },
}

/// A shared budget (its object's name) and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolTerms {
    pub pool: String,
    pub limits: Limits,
}

/// The plan a request was checked with, and what its token claims (`None`: no claim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanAsk {
    pub checked: String,
    pub claimed: Option<String>,
}

/// The object's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserReply {
    Admitted {
        reservation: Option<Reservation>,
        standing: Standing,
        alert: Option<Alert>,
    },
    Refused {
        refusal: Refusal,
        standing: Standing,
    },
    Revoked,
    /// The request continues a response (or names an item) this user did not create, or one
    /// that expired: to the client, one that does not exist. `id`: the first such item
    /// reference; absent when it is the response continued (and from objects before items).
    UnknownResponse {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Status {
        revoked_at: Option<i64>,
        standing: Option<Standing>,
        /// The plan in force (absent in replies about revocation).
        #[serde(default)]
        plan: Option<PlanChoice>,
        /// When the user was blocked, if they are.
        #[serde(default)]
        blocked_at: Option<i64>,
        /// The user's live voice calls: for the Worker to end after a block or revocation, for
        /// the console to list otherwise.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        calls: Vec<String>,
    },
    Finished,
    /// One more guest token may be minted.
    Minted,
    /// The client minted its guest tokens for this hour; one more in this many seconds.
    MintRefused {
        retry_after_seconds: u64,
    },
    /// The request was checked with another plan than the one in force (an override was set
    /// or lifted): nothing was counted; check it again with `plan` and admit it again.
    PlanChanged {
        plan: PlanChoice,
    },
    /// The reservation now expires at this time; `None`: it is gone (settled, cancelled, or
    /// expired and charged in full).
    Renewed {
        expires_at_ms: Option<i64>,
    },
    /// The request fits its user's limits, but not the leases held: nothing was counted; ask
    /// the pools for these and admit it again with their grants.
    NeedLease {
        leases: Vec<LeaseAsk>,
    },
    /// A shared budget's grant to a holder.
    Leased {
        grant: Grant,
        alert: Option<Alert>,
    },
    /// A shared budget's standing (`PoolStanding`).
    Pool {
        standing: Standing,
        reserved: Spend,
        idle: Spend,
    },
}
