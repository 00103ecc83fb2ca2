//! Admission on the user's plan: the body is checked with the plan in force, and the user's
//! object, which holds any override an operator set, admits it in the same call that checks
//! the plan. One round trip in the steady state; one more the first time an isolate meets an
//! override.

use std::cell::RefCell;
use std::rc::Rc;

use worker::{Context, Env};

use super::log::Outcome;
use super::objects::{self, user::Admission};
use super::settlement::Settlement;
use super::Result;
use crate::auth::Identity;
use crate::budget::plans::{claimed_plan, OverrideHints, Plan, PlanChoice};
use crate::budget::quota::{Ask, Standing};
use crate::config::Config;
use crate::error::ProxyError;
use crate::request::{self, ApiRequest};
use crate::routes::{ApiRoute, UserRoute};

/// Admission attempts of one request whose plan an operator changes meanwhile, before the
/// request gives up (503): in practice the second attempt always agrees with the object.
const MAX_PLAN_ATTEMPTS: usize = 3;

thread_local! {
    /// The overrides this isolate learnt from users' objects, so that the next request of an
    /// overridden user is checked with its plan at once.
    static PLAN_HINTS: RefCell<OverrideHints> = RefCell::default();
}

/// The plan to check `sub`'s request with first: a known override, else the claim's plan.
fn plan_hint(sub: &str, claimed: &str) -> String {
    PLAN_HINTS.with_borrow(|hints| hints.plan_for(sub, claimed))
}

/// What the user's object says is in force.
fn learn_plan(sub: &str, in_force: &PlanChoice) -> String {
    PLAN_HINTS.with_borrow_mut(|hints| hints.learn(sub, &in_force.name, in_force.source));
    in_force.name.clone()
}

/// A request checked with the plan in force and admitted by the user's object.
pub struct Admitted<'a> {
    pub plan: &'a Plan,
    /// The upstream request (none for `/v1/models` and `/v1/usage`).
    pub request: Option<ApiRequest>,
    pub settlement: Settlement,
    /// What the user (a guest: its client) has left, as the object counted it.
    pub standing: Standing,
}

/// What checking a body with a plan came to.
enum Check {
    // Boxed: a request (its price's every dimension) is far larger than the other variant.
    Accepted(Option<Box<ApiRequest>>),
    /// The plan refused it, and another plan is in force: check it again with that one.
    OtherPlanInForce(String),
}

/// Checks the body with the user's plan and admits it. The plan is the claim's, or the
/// override this isolate knows of; the user's object compares it with its override in the
/// same admission call, and when they differ nothing is counted and the request is checked
/// and admitted again with the plan in force.
pub async fn admit_on_plan<'a>(
    route: UserRoute,
    body: Option<&[u8]>,
    identity: &Identity,
    env: &Env,
    ctx: &Rc<Context>,
    config: &'a Config,
    outcome: &mut Outcome,
) -> Result<Admitted<'a>> {
    // Before any Durable Object call: a claim naming a plan this proxy lacks costs nothing.
    let claimed = claimed_plan(identity.plan.as_deref()).name;
    config.plan(&claimed)?;
    let mut plan_name = plan_hint(&identity.sub, &claimed);
    for _ in 0..MAX_PLAN_ATTEMPTS {
        let plan = config.plan(&plan_name)?;
        outcome.plan = Some(plan.name.clone());
        let request = match check(route, body, plan, identity, env, ctx, config).await? {
            Check::Accepted(request) => request.map(|request| *request),
            Check::OtherPlanInForce(in_force) => {
                plan_name = in_force;
                continue;
            }
        };
        if let Some(request) = &request {
            outcome.describe(request);
        }
        let ask = request.as_ref().map(|request| Ask {
            tokens: request.reserve_tokens,
            stream: request.stream,
            nano_usd: request.reserve_nano_usd,
        });
        let (standing, admission) = objects::user::admit(env, ctx, config, identity, ask, plan, request.as_ref()).await;
        outcome.standing = standing;
        match admission? {
            Admission::Admitted { settlement, standing } => {
                return Ok(Admitted {
                    plan,
                    request,
                    settlement,
                    standing,
                })
            }
            Admission::PlanChanged(in_force) => plan_name = learn_plan(&identity.sub, &in_force),
        }
    }
    Err(ProxyError::Unavailable {
        detail: format!("the plan of {:?} kept changing during its admission", identity.sub),
    })
}

/// The body checked with `plan`; when `plan` refuses it, whether another plan is in force.
async fn check(
    route: UserRoute,
    body: Option<&[u8]>,
    plan: &Plan,
    identity: &Identity,
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
) -> Result<Check> {
    let (UserRoute::Api(route), Some(body)) = (route, body) else {
        return Ok(Check::Accepted(None));
    };
    let refused = match request::parse(route, body, &config.requests, plan, identity.abuse_subject()) {
        Ok(request) => return Ok(Check::Accepted(Some(Box::new(request)))),
        Err(refused) => refused,
    };
    let checked = Checked { route, body, plan };
    match plan_in_force(checked, identity, env, ctx, config).await? {
        Some(in_force) => Ok(Check::OtherPlanInForce(in_force)),
        None => Err(refused),
    }
}

/// After a refusal by the policy: another plan than `plan` may be in force (an override this
/// isolate has not seen). Only when another plan would accept the body is the user's object
/// asked (a status read, nothing counted): a body no plan accepts costs no call.
async fn plan_in_force(
    checked: Checked<'_>,
    identity: &Identity,
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
) -> Result<Option<String>> {
    let Checked { route, body, plan } = checked;
    let another_accepts = config
        .all_plans()
        .filter(|other| other.name != plan.name)
        .any(|other| request::parse(route, body, &config.requests, other, identity.abuse_subject()).is_ok());
    if !another_accepts {
        return Ok(None);
    }
    match objects::user::admit(env, ctx, config, identity, None, plan, None)
        .await
        .1?
    {
        Admission::PlanChanged(in_force) => Ok(Some(learn_plan(&identity.sub, &in_force))),
        Admission::Admitted { .. } => Ok(None),
    }
}

/// A body that `plan`'s policy refused.
#[derive(Clone, Copy)]
struct Checked<'a> {
    route: ApiRoute,
    body: &'a [u8],
    plan: &'a Plan,
}
