//! Plans: named overlays of the per-user variables (`PLANS`), the token claim that picks one
//! (`PLAN_CLAIM`), and an operator's per-user override stored in the user's object.
//!
//! A plan is built by the same constructors as the top-level variables (config.rs), reading
//! the overlay first and the top-level variables after it, so a plan states only what differs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::budget::cost::CostRules;
use crate::budget::images::ImageRules;
use crate::budget::quota::Limits;
use crate::error::ProxyError;

/// What one request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_output_tokens: u64,
    pub max_n: u64,
    pub max_prompt_chars: usize,
}

/// What a plan allows of the audio endpoints; no model means the endpoint is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudioRules {
    /// Models `/v1/audio/transcriptions` may use (`TRANSCRIBE_MODELS`).
    pub transcribe_models: Vec<String>,
    /// Models `/v1/audio/speech` may use (`SPEECH_MODELS`).
    pub speech_models: Vec<String>,
    /// The longest audio a transcription may send, by its bound (`MAX_AUDIO_SECONDS`).
    pub max_audio_seconds: u64,
}

/// The plan of the top-level variables: a token without a plan claim gets it.
pub const DEFAULT_PLAN: &str = "default";

/// The variables a plan may set, in their own names and value formats.
pub const PLAN_VARIABLES: [&str; 18] = [
    "ALLOWED_MODELS",
    "VOICE_MODELS",
    "IMAGE_MODELS",
    "MAX_IMAGES_PER_REQUEST",
    "IMAGE_QUALITIES",
    "IMAGE_SIZES",
    "TRANSCRIBE_MODELS",
    "SPEECH_MODELS",
    "MAX_AUDIO_SECONDS",
    "MAX_OUTPUT_TOKENS",
    "MAX_N",
    "MAX_PROMPT_CHARS",
    "MAX_IMAGE_INPUTS",
    "RATE_LIMIT_REQUESTS",
    "RATE_LIMIT_WINDOW_SECONDS",
    "MAX_CONCURRENT_STREAMS",
    "DAILY_TOKEN_BUDGET",
    "DAILY_BUDGET_USD",
];

/// What a user may ask for and spend under one plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    /// Models clients may ask for; the first is the default for `/api/generate-text`.
    pub allowed_models: Vec<String>,
    pub request_limits: RequestLimits,
    /// What a request may spend beyond text: images, hosted tools, stored responses.
    pub cost_rules: CostRules,
    /// What `POST /v1/images/generations` may make.
    pub images: ImageRules,
    /// What one user may use.
    pub user_limits: Limits,
    pub audio: AudioRules,
    /// Realtime models the user may call by voice (`VOICE_MODELS`); empty: no voice.
    pub voice_models: Vec<String>,
}

impl Plan {
    pub fn default_model(&self) -> &str {
        // The models list is never empty (`Vars::list`).
        self.allowed_models.first().map_or("", String::as_str)
    }

    pub fn is_model_allowed(&self, model: &str) -> bool {
        self.allowed_models.iter().any(|allowed| allowed == model)
    }

    /// Every model a user on this plan may call, text and audio.
    pub fn all_models(&self) -> impl Iterator<Item = &String> {
        self.allowed_models
            .iter()
            .chain(&self.audio.transcribe_models)
            .chain(&self.audio.speech_models)
    }
}

/// `PLANS` as given: plan name -> variable name -> value as text.
pub type Overlays = BTreeMap<String, BTreeMap<String, String>>;

/// Reads `PLANS`; the values are checked later by the variables' own readers.
pub fn parse_overlays(raw: Option<&str>) -> Result<Overlays, ProxyError> {
    let Some(raw) = raw else {
        return Ok(Overlays::new());
    };
    let invalid = |why: String| ProxyError::misconfigured(format!("PLANS: {why}"));
    let Ok(Value::Object(plans)) = serde_json::from_str::<Value>(raw) else {
        return Err(invalid(
            r#"not a JSON object like {"free":{"RATE_LIMIT_REQUESTS":2},"pro":{"ALLOWED_MODELS":"gpt-4o-mini,gpt-4.1"}}"#.into(),
        ));
    };
    let mut overlays = Overlays::new();
    for (name, overlay) in plans {
        if name == DEFAULT_PLAN || !is_plan_name(&name) {
            return Err(invalid(format!(
                "{name:?} cannot name a plan (1 to 64 of a-z, A-Z, 0-9, `-`, `_`; `{DEFAULT_PLAN}` is the top-level variables)"
            )));
        }
        let Value::Object(variables) = overlay else {
            return Err(invalid(format!("plan {name:?} is not an object of variables")));
        };
        let mut values = BTreeMap::new();
        for (variable, value) in variables {
            if !PLAN_VARIABLES.contains(&variable.as_str()) {
                return Err(invalid(format!(
                    "plan {name:?} sets {variable}, which a plan cannot set (only {})",
                    PLAN_VARIABLES.join(", ")
                )));
            }
            let text = match value {
                Value::String(text) => text,
                Value::Number(number) => number.to_string(),
                Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
                    return Err(invalid(format!(
                        "plan {name:?}: {variable} must be a number or a string"
                    )))
                }
            };
            values.insert(variable, text);
        }
        overlays.insert(name, values);
    }
    Ok(overlays)
}

/// Plan names are echoed in `/v1/usage` and logs: keep them plain.
pub fn is_plan_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Why a plan is in force for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanSource {
    /// An operator set it (`PUT /admin/users/{sub}/plan`).
    Override,
    /// The token's plan claim named it.
    Claim,
    /// The token had no plan claim.
    Default,
}

impl PlanSource {
    pub fn name(self) -> &'static str {
        match self {
            PlanSource::Override => "override",
            PlanSource::Claim => "claim",
            PlanSource::Default => "default",
        }
    }
}

/// A plan and why it is (or was) in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanChoice {
    pub name: String,
    pub source: PlanSource,
}

impl PlanChoice {
    /// The one rule of which plan is in force: an operator's override, else the claim.
    pub fn in_force(plan_override: Option<&str>, claim: PlanChoice) -> PlanChoice {
        match plan_override {
            Some(name) => PlanChoice {
                name: name.to_owned(),
                source: PlanSource::Override,
            },
            None => claim,
        }
    }
}

/// The plan a token's claim asks for, and whether it asked: a token without the claim is on
/// the default plan.
pub fn claimed_plan(claim: Option<&str>) -> PlanChoice {
    match claim {
        Some(name) => PlanChoice {
            name: name.to_owned(),
            source: PlanSource::Claim,
        },
        None => PlanChoice {
            name: DEFAULT_PLAN.to_owned(),
            source: PlanSource::Default,
        },
    }
}

/// What an isolate last learned of users' plan overrides, so that a user with an override is
/// checked with the right plan at once, with no extra round trip. Only a hint: the user's
/// object compares every admission with its override, and answers `PlanChanged` when the
/// hint was stale. Bounded: when full it starts over (the objects still decide).
#[derive(Debug, Default)]
pub struct OverrideHints {
    by_sub: BTreeMap<String, String>,
}

/// Users with an override an isolate remembers (a few hundred KB at most).
const MAX_HINTS: usize = 10_000;

impl OverrideHints {
    /// The plan to check `sub`'s request with: its known override, else its claim's plan.
    pub fn plan_for(&self, sub: &str, claimed: &str) -> String {
        self.by_sub.get(sub).map_or_else(|| claimed.to_owned(), Clone::clone)
    }

    /// The user's object said `plan` is in force for `sub`, for this reason.
    pub fn learn(&mut self, sub: &str, plan: &str, source: PlanSource) {
        if source != PlanSource::Override {
            self.by_sub.remove(sub);
            return;
        }
        if self.by_sub.len() >= MAX_HINTS && !self.by_sub.contains_key(sub) {
            self.by_sub.clear();
        }
        self.by_sub.insert(sub.to_owned(), plan.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(raw: &str) -> String {
        parse_overlays(Some(raw)).unwrap_err().log_detail().unwrap()
    }

    #[test]
    fn plans_are_overlays_of_the_per_user_variables_in_their_own_formats() {
        let overlays =
            parse_overlays(Some(r#"{"free":{"RATE_LIMIT_REQUESTS":2},"pro":{"ALLOWED_MODELS":"gpt-4o-mini,gpt-4.1","DAILY_BUDGET_USD":0.5}}"#))
                .unwrap();
        assert_eq!(overlays["free"]["RATE_LIMIT_REQUESTS"], "2");
        assert_eq!(overlays["pro"]["ALLOWED_MODELS"], "gpt-4o-mini,gpt-4.1");
        assert_eq!(overlays["pro"]["DAILY_BUDGET_USD"], "0.5");
        assert!(parse_overlays(None).unwrap().is_empty());
    }

    #[test]
    fn an_unknown_key_or_an_odd_plan_is_a_configuration_error() {
        assert!(detail(r#"{"free":{"OPENAI_API_KEY":"sk-x"}}"#).contains("OPENAI_API_KEY"));
        assert!(detail(r#"{"free":{"rate_limit_requests":2}}"#).contains("rate_limit_requests"));
        assert!(detail(r#"{"free":{"MAX_N":true}}"#).contains("MAX_N"));
        assert!(detail(r#"{"default":{}}"#).contains("default"));
        assert!(detail(r#"{"a b":{}}"#).contains("a b"));
        assert!(detail(r#"{"free":3}"#).contains("free"));
        assert!(detail("[]").starts_with("PLANS"));
    }

    #[test]
    fn an_isolate_checks_a_user_with_an_override_with_it_until_told_otherwise() {
        let mut hints = OverrideHints::default();
        assert_eq!(hints.plan_for("alice", "free"), "free", "nothing known: the claim");
        hints.learn("alice", "pro", PlanSource::Override);
        assert_eq!(hints.plan_for("alice", "free"), "pro");
        assert_eq!(hints.plan_for("bob", "default"), "default");
        hints.learn("alice", "free", PlanSource::Claim);
        assert_eq!(hints.plan_for("alice", "free"), "free", "the override was lifted");
    }

    #[test]
    fn the_hints_stay_bounded() {
        let mut hints = OverrideHints::default();
        for i in 0..MAX_HINTS + 5 {
            hints.learn(&format!("user-{i}"), "pro", PlanSource::Override);
        }
        assert!(hints.by_sub.len() <= MAX_HINTS);
    }

    #[test]
    fn a_token_without_the_claim_is_on_the_default_plan() {
        let choice = |name: &str, source| PlanChoice {
            name: name.to_owned(),
            source,
        };
        assert_eq!(claimed_plan(None), choice("default", PlanSource::Default));
        assert_eq!(claimed_plan(Some("pro")), choice("pro", PlanSource::Claim));
        assert_eq!(
            PlanChoice::in_force(Some("pro"), claimed_plan(Some("free"))),
            choice("pro", PlanSource::Override),
            "an operator's override wins over the claim"
        );
        assert_eq!(
            PlanChoice::in_force(None, claimed_plan(Some("free"))),
            choice("free", PlanSource::Claim)
        );
    }
}
