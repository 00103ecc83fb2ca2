// The operator console: reads and acts through the admin API only, with the admin token the
// operator typed, kept in this tab's sessionStorage and sent as a bearer token.
"use strict";

const TOKEN_KEY = "openai-edge-proxy.admin-token";
const HISTORY_DAYS = 14;
const DAY_PAGE = 50;
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

// ---- Numbers and times for people ----

const compactFormat = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
const usdFormat = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD" });
const smallUsdFormat = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumSignificantDigits: 2 });
const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const clockFormat = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: "UTC" });

/** `12.3k`, `1.2M`, `950`: the k is lower case, as people write it. */
function compact(n) {
  return compactFormat.format(n).replace("K", "k");
}
function tokens(n) {
  return `${compact(n)} token${n === 1 ? "" : "s"}`;
}
/** `$1.23`; amounts under a cent keep two significant digits (`$0.0042`) rather than `$0.00`. */
function usd(x) {
  return x > 0 && x < 0.01 ? smallUsdFormat.format(x) : usdFormat.format(x);
}
function utc(date) {
  return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}
/** A time in the viewer's zone, with UTC on hover. */
function timeElement(date, format = timeFormat) {
  const element = document.createElement("time");
  element.dateTime = date.toISOString();
  element.title = utc(date);
  element.textContent = format.format(date);
  return element;
}
/** A UTC day (`2026-11-24`) as `Nov 24`, never shifted by the viewer's zone. */
function dayLabel(day) {
  return dayFormat.format(new Date(`${day}T00:00:00Z`));
}
function addDays(day, n) {
  const date = new Date(`${day}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + n);
  return date.toISOString().slice(0, 10);
}
function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}
/** A bar showing `value` of `max`, labelled for screen readers; a `budget` nearly spent turns red. */
function meter(value, max, label, { budget = true } = {}) {
  const outer = element("div", undefined, "meter");
  outer.setAttribute("role", "meter");
  outer.setAttribute("aria-label", label);
  outer.setAttribute("aria-valuemin", "0");
  outer.setAttribute("aria-valuemax", String(max));
  outer.setAttribute("aria-valuenow", String(Math.min(value, max)));
  const fill = element("div", undefined, "fill");
  const share = max > 0 ? Math.min(1, value / max) : 0;
  fill.style.width = `${(share * 100).toFixed(1)}%`;
  if (budget && share >= 0.9) fill.classList.add("high");
  outer.append(fill);
  return outer;
}

// ---- The admin API ----

class Refused extends Error {}

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ""}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch (error) {
    throw new Error(`Network error: ${error.message}`);
  }
  const json = await response.json().catch(() => null);
  if (response.status === 401) throw new Refused("The admin token was refused. Check ADMIN_TOKEN and enter it again.");
  if (!response.ok) throw new Error(json?.error?.message ?? `The proxy answered ${response.status}.`);
  return json;
}

// ---- Messages and signing in ----

function say(text, kind = "info") {
  const message = $("message");
  message.textContent = text;
  message.dataset.kind = kind;
  message.hidden = !text;
}

function showSignedIn(signedIn) {
  $("sign-in").hidden = signedIn;
  $("console").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  $("refresh").hidden = !signedIn;
  if (!signedIn) $("updated").textContent = "";
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.sub = null;
  state.usage = null;
  $("user").hidden = true;
  showSignedIn(false);
  say(message ?? "", message ? "error" : "info");
  $("token").focus();
}

/** Runs an API action; a refused token signs out, other failures are shown. */
async function run(action) {
  try {
    await action();
    return true;
  } catch (error) {
    if (error instanceof Refused) signOut(error.message);
    else say(error.message, "error");
    return false;
  }
}

// ---- Overview: today, top users, the last 14 days (each day's summary, never its users) ----

const state = { sub: null, usage: null, dollars: false };

async function loadOverview() {
  const budget = await api("GET", "/admin/budget");
  const from = addDays(budget.day, -(HISTORY_DAYS - 1));
  const range = await api("GET", `/admin/usage?from=${from}&to=${budget.day}`);
  state.dollars = range.days.some((day) => day.total_usd > 0);
  const today = range.days.at(-1) ?? { day: budget.day, total_tokens: 0, total_usd: 0, user_count: 0, top: [] };
  renderToday(budget, today);
  renderTopUsers(today);
  renderHistory(range.days);
  const updated = $("updated");
  updated.replaceChildren("Updated ", timeElement(new Date(), clockFormat));
}

function renderToday(budget, today) {
  $("today-day").textContent = `${dayLabel(today.day)} (UTC day)`;
  const tokensFigure = $("today-tokens");
  tokensFigure.textContent = tokens(today.total_tokens);
  tokensFigure.title = `${today.total_tokens.toLocaleString()} tokens`;
  $("today-usd-stat").hidden = !state.dollars;
  if (state.dollars) $("today-usd").textContent = usd(today.total_usd);

  const parts = [];
  if (budget.tokens && budget.tokens.limit != null) {
    // Leased: held by users' objects for their next requests, so committed like the rest.
    const spent = budget.tokens.used + budget.tokens.reserved + (budget.tokens.leased ?? 0);
    parts.push(budgetLine("Global token budget", spent, budget.tokens.limit, tokens, budget.tokens.reset_seconds));
  }
  if (budget.cost && budget.cost.limit_usd != null) {
    const spent = budget.cost.used_usd + budget.cost.reserved_usd + (budget.cost.leased_usd ?? 0);
    parts.push(budgetLine("Global dollar budget", spent, budget.cost.limit_usd, usd, budget.cost.reset_seconds));
  }
  if (parts.length === 0) {
    parts.push(element("p", "No global budget is set (GLOBAL_DAILY_TOKEN_BUDGET, GLOBAL_DAILY_BUDGET_USD).", "muted"));
  }
  $("budget").replaceChildren(...parts);
}

function budgetLine(label, spent, limit, format, resetSeconds) {
  const line = element("div", undefined, "budget-line");
  const share = limit > 0 ? (spent / limit) * 100 : 0;
  const percent = share > 0 && share < 1 ? "<1" : String(Math.round(share));
  const text = element("p");
  text.append(`${label}: ${format(spent)} of ${format(limit)} (${percent}%) used, reserved or leased`);
  if (typeof resetSeconds === "number") {
    text.append(", resets ", timeElement(new Date(Date.now() + resetSeconds * 1000)));
  }
  line.append(text, meter(spent, limit, label));
  return line;
}

/** A user's spend: dollars first when the proxy records them. */
function spendText(entry) {
  return state.dollars ? `${usd(entry.total_usd)} · ${tokens(entry.total_tokens)}` : tokens(entry.total_tokens);
}
function spendValue(entry) {
  return state.dollars ? entry.total_usd : entry.total_tokens;
}

function renderTopUsers(today) {
  // The index keeps the day's top spenders, biggest first.
  const users = today.top;
  const max = Math.max(0, ...users.map(spendValue));
  $("top-empty").hidden = users.length > 0;
  $("top-users").replaceChildren(...users.map((user) => userItem(user, max)));
}

function userItem(user, max) {
  const item = element("li");
  item.dataset.sub = user.sub;
  const name = element("button", user.sub, "link");
  name.type = "button";
  name.setAttribute("aria-label", `Look up ${user.sub}`);
  name.addEventListener("click", () => lookUp(user.sub));
  const figure = element("span", spendText(user), "figure");
  figure.title = `${user.total_tokens.toLocaleString()} tokens`;
  item.append(name, figure);
  if (max !== undefined) item.append(meter(spendValue(user), max, `${user.sub}'s spend against the top spender's`, { budget: false }));
  return item;
}

/** One page of a day's users, in id order; `more` appends the next page. */
async function loadDay(day, cursor) {
  const query = `day=${day}&limit=${DAY_PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
  const page = await api("GET", `/admin/usage?${query}`);
  $("day-users").hidden = false;
  $("day-users-title").textContent = `Users of ${dayLabel(day)} (UTC day), ${page.user_count} in all`;
  const list = $("day-users-list");
  if (!cursor) list.replaceChildren();
  list.append(...page.users.map((user) => userItem(user)));
  const more = $("day-users-more");
  more.hidden = !page.next_cursor;
  more.onclick = () => run(() => loadDay(day, page.next_cursor));
}

function renderHistory(days) {
  const width = 700;
  const height = 240;
  const top = 28;
  const bottom = 32;
  const slot = width / days.length;
  const max = Math.max(0, ...days.map(spendValue));
  const unit = state.dollars ? usd : tokens;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Spend per UTC day, ${days[0]?.day} to ${days.at(-1)?.day}; highest ${unit(max)}. The table below has the figures.`);
  const add = (tag, attributes, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("text", { x: 0, y: 20, class: "axis" }, `highest ${unit(max)}`);
  add("line", { x1: 0, x2: width, y1: height - bottom, y2: height - bottom, class: "baseline" });
  days.forEach((day, i) => {
    const value = spendValue(day);
    const barHeight = max > 0 ? ((height - top - bottom) * value) / max : 0;
    const x = i * slot + slot * 0.15;
    const bar = add("rect", { x, y: height - bottom - barHeight, width: slot * 0.7, height: Math.max(barHeight, value > 0 ? 1 : 0), class: "bar" });
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${day.day} (UTC): ${spendText(day)}, ${day.user_count} user${day.user_count === 1 ? "" : "s"}`;
    bar.append(title);
    // Every other label on narrow screens would collide; the day of the month is enough.
    add("text", { x: x + slot * 0.35, y: height - 8, class: "axis", "text-anchor": "middle" }, day.day.slice(8));
  });
  $("chart").replaceChildren(svg);

  document.querySelectorAll(".usd-column").forEach((cell) => (cell.hidden = !state.dollars));
  $("history-table").tBodies[0].replaceChildren(
    ...days.map((day) => {
      const row = element("tr");
      const name = element("button", day.day, "link");
      name.type = "button";
      name.setAttribute("aria-label", `List the users of ${day.day}`);
      name.addEventListener("click", () => run(() => loadDay(day.day)));
      const cell = element("td");
      cell.append(name);
      row.append(cell, element("td", day.total_tokens.toLocaleString()));
      if (state.dollars) row.append(element("td", usd(day.total_usd)));
      row.append(element("td", String(day.user_count)));
      return row;
    }),
  );
}

// ---- One user: usage, limits, plan, revocation, and the actions ----

function lookUp(sub) {
  $("sub").value = sub;
  return run(() => loadUser(sub)).then(() => $("user").scrollIntoView({ block: "nearest" }));
}

async function loadUser(sub) {
  const usage = await api("GET", `/admin/users/${encodeURIComponent(sub)}/usage`);
  state.sub = sub;
  renderUser(usage);
}

function fact(term, ...details) {
  const row = element("div");
  const dd = element("dd");
  dd.append(...details);
  row.append(element("dt", term), dd);
  return row;
}

function renderUser(usage) {
  state.usage = usage;
  $("user").hidden = false;
  $("user-sub").textContent = usage.sub;
  const facts = [];
  const revoked = usage.revoked_at != null;
  const blocked = usage.blocked_at != null;
  const statusLine = element("span");
  statusLine.id = "user-status";
  if (blocked) {
    statusLine.append(element("span", "Blocked", "badge bad"), " every token is refused, since ", timeElement(new Date(usage.blocked_at * 1000)));
  } else if (revoked) {
    statusLine.append(element("span", "Revoked", "badge bad"), " tokens issued until ", timeElement(new Date(usage.revoked_at * 1000)), " are refused");
  } else {
    statusLine.append(element("span", "Active", "badge good"));
  }
  facts.push(fact("Status", statusLine));
  const hasPlans = typeof usage.plan === "string";
  if (hasPlans) {
    const source = { override: "set by an operator", claim: "from the token's claim", default: "the default" }[usage.plan_source] ?? usage.plan_source;
    const planLine = element("span");
    planLine.id = "user-plan";
    planLine.append(element("strong", usage.plan), ` (${source})`);
    facts.push(fact("Plan", planLine));
  }
  if (usage.requests) {
    const r = usage.requests;
    facts.push(fact("Requests", `${r.remaining} of ${r.limit} left per ${r.window_seconds} s window`));
  }
  if (usage.tokens) {
    const t = usage.tokens;
    const detail = [`${tokens(t.used)} used`];
    if (t.reserved > 0) detail.push(`${tokens(t.reserved)} reserved`);
    const limit = t.limit == null ? "no daily limit" : `daily limit ${tokens(t.limit)}`;
    const figure = element("span", `${detail.join(", ")}; ${limit}`);
    figure.id = "user-token-limit";
    figure.dataset.limit = String(t.limit ?? "");
    facts.push(fact("Tokens today", figure, ...(t.limit == null ? [] : [meter(t.used + t.reserved, t.limit, "Tokens used today")])));
  }
  if (usage.cost) {
    const c = usage.cost;
    const limit = c.limit_usd == null ? "no daily limit" : `daily limit ${usd(c.limit_usd)}`;
    const figure = element("span", `${usd(c.used_usd)} used${c.reserved_usd > 0 ? `, ${usd(c.reserved_usd)} reserved` : ""}; ${limit}`);
    figure.id = "user-usd";
    facts.push(fact("Dollars today", figure, ...(c.limit_usd == null ? [] : [meter(c.used_usd + c.reserved_usd, c.limit_usd, "Dollars used today")])));
  }
  if (usage.streams) facts.push(fact("Streams", `${usage.streams.open} of ${usage.streams.limit} open`));
  if (usage.tokens && typeof usage.tokens.reset_seconds === "number") {
    facts.push(fact("Budget resets", timeElement(new Date(Date.now() + usage.tokens.reset_seconds * 1000))));
  }
  if (usage.calls?.length) facts.push(fact("Live voice calls", callList(usage.calls)));
  $("user-facts").replaceChildren(...facts);
  $("revoke").hidden = revoked;
  $("lift").hidden = !revoked;
  $("block").hidden = blocked;
  $("unblock").hidden = !blocked;
  $("plan-form").hidden = !hasPlans;
  $("clear-plan").disabled = usage.plan_source !== "override";
}

/** The user's live voice calls, each with a button that hangs it up. */
function callList(calls) {
  const list = element("ul", undefined, "calls");
  list.id = "user-calls";
  for (const id of calls) {
    const item = element("li");
    item.dataset.call = id;
    const end = element("button", "End call", "danger");
    end.type = "button";
    end.setAttribute("aria-label", `End call ${id}`);
    end.addEventListener("click", () => endCall(id));
    item.append(element("code", id), end);
    list.append(item);
  }
  return list;
}

/**
 * Hangs the call up (`DELETE /admin/calls/{id}`), then reloads the user until the call has left
 * the list: it is settled, and its slot freed, once OpenAI closes its sideband (a second or so).
 */
function endCall(id) {
  return act(
    `End voice call ${id} of “${state.sub}” now? It is hung up at once and charged what it used.`,
    "End call",
    async () => {
      await api("DELETE", `/admin/calls/${encodeURIComponent(id)}`);
      for (let tries = 0; tries < 10; tries++) {
        const usage = await api("GET", `/admin/users/${encodeURIComponent(state.sub)}/usage`);
        if (!usage.calls?.includes(id)) break;
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
    },
    `Ended voice call ${id}.`,
  );
}

/** Asks in a modal dialog (Escape or Cancel says no); resolves to whether to go on. */
function confirmAction(text, confirmLabel) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = confirmLabel;
  return new Promise((resolve) => {
    const finish = (answer) => {
      $("confirm-ok").onclick = $("confirm-cancel").onclick = dialog.oncancel = null;
      dialog.close();
      resolve(answer);
    };
    $("confirm-ok").onclick = () => finish(true);
    $("confirm-cancel").onclick = () => finish(false);
    dialog.oncancel = (event) => {
      event.preventDefault();
      finish(false);
    };
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

/** Confirms, acts, then refreshes the user and the overview in place. */
async function act(question, confirmLabel, request, done) {
  const sub = state.sub;
  if (!sub || !(await confirmAction(question, confirmLabel))) return;
  say("");
  const buttons = document.querySelectorAll("#user button");
  buttons.forEach((button) => (button.disabled = true));
  const ok = await run(async () => {
    await request(`/admin/users/${encodeURIComponent(sub)}`);
    await Promise.all([loadUser(sub), loadOverview()]);
  });
  buttons.forEach((button) => (button.disabled = false));
  // Enabling every button undid what the user's state disables (clearing a plan never set).
  if (state.usage) renderUser(state.usage);
  if (ok) say(done, "success");
}

// ---- Wiring ----

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    say("");
    if (await run(loadOverview)) {
      showSignedIn(true);
      $("sub").focus();
    }
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", () => run(() => Promise.all([loadOverview(), state.sub ? loadUser(state.sub) : null])));
  $("lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const sub = $("sub").value.trim();
    if (sub) lookUp(sub);
  });
  $("revoke").addEventListener("click", () =>
    act(
      `Revoke every token of “${state.sub}” issued until now? Their next request is refused; tokens minted after this still work.`,
      "Revoke",
      (base) => api("POST", `${base}/revoke`),
      `Revoked the tokens of ${state.sub}.`,
    ),
  );
  $("lift").addEventListener("click", () =>
    act(
      `Lift the revocation of “${state.sub}”? Every old token of theirs works again, a stolen one included, until it expires.`,
      "Lift revocation",
      (base) => api("DELETE", `${base}/revoke`),
      `Lifted the revocation of ${state.sub}.`,
    ),
  );
  $("block").addEventListener("click", () =>
    act(
      `Block “${state.sub}”? Every token of theirs is refused, those their sign-in provider issues later included, until you unblock them.`,
      "Block",
      (base) => api("POST", `${base}/block`),
      `Blocked ${state.sub}.`,
    ),
  );
  $("unblock").addEventListener("click", () =>
    act(`Unblock “${state.sub}”? Their tokens work again (a revocation still holds).`, "Unblock", (base) => api("DELETE", `${base}/block`), `Unblocked ${state.sub}.`),
  );
  $("plan-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const plan = $("plan-name").value.trim();
    if (!plan) return;
    act(`Put “${state.sub}” on plan “${plan}”, whatever their token claims?`, "Set plan", (base) => api("PUT", `${base}/plan`, { plan }), `${state.sub} is now on plan ${plan}.`);
  });
  $("clear-plan").addEventListener("click", () =>
    act(`Clear the plan override of “${state.sub}”? Their token's plan applies again.`, "Clear override", (base) => api("DELETE", `${base}/plan`), `Cleared the plan override of ${state.sub}.`),
  );

  if (sessionStorage.getItem(TOKEN_KEY)) {
    run(loadOverview).then((ok) => ok && showSignedIn(true));
  } else {
    showSignedIn(false);
    // `autofocus` is applied at a later rendering step; a keyboard user may type at once.
    $("token").focus();
  }
});
