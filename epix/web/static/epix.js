// EPIX web pages: thin views over the /v1 API. Data is only ever inserted as text, never HTML.
"use strict";

const $ = (id) => document.getElementById(id);

function text(element, value) {
  element.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
}

// Where the API names a refused value (problem+json "location"), the field that holds it.
const FIELD_OF_LOCATION = {
  credentials: "password", party: "party", number: "number", token: "token", side: "side",
  port: "port", date: "date", officer: "officer", transport_document: "transport",
};

function fieldOf(location, lineInputs) {
  const path = String(location || "").replace(/^body\//, "");
  const line = /^lines\/(\d+)(\/|$)/.exec(path);
  if (line) return (lineInputs || [])[Number(line[1])] || null;
  return FIELD_OF_LOCATION[path] ? $(FIELD_OF_LOCATION[path]) : null;
}

function labelOf(field) {
  return field.labels && field.labels.length ? field.labels[0].textContent.trim() : field.name;
}

// The error summary (focused, so it is read out) lists each refusal; one that names a field links
// to it, and the field itself says what is wrong (aria-invalid, described by the message), so
// nothing is told by colour alone. lineInputs maps "lines/<i>" to the i-th quantity sent.
function showProblem(problem, lineInputs) {
  clearProblem();
  const errors = problem.errors && problem.errors.length ? problem.errors
    : [{ code: problem.code, message: problem.detail || problem.title || "The request was refused." }];
  const list = document.createElement("ul");
  for (const error of errors) {
    const item = document.createElement("li");
    const message = (error.code ? `${error.code}: ` : "") + error.message;
    const field = error.field || fieldOf(error.location, lineInputs);
    if (field && field.id) {
      const link = document.createElement("a");
      link.href = "#" + field.id;
      link.textContent = message;
      link.addEventListener("click", (event) => {
        event.preventDefault();
        field.focus();
        field.scrollIntoView({ block: "center" });
      });
      item.append(link);
      markInvalid(field, message);
    } else {
      item.textContent = message + (error.location ? ` (at ${error.location})` : "");
    }
    if (error.code) item.dataset.code = error.code;
    list.append(item);
  }
  $("problem-body").replaceChildren(list);
  const box = $("problem");
  box.hidden = false;
  document.title = "Error: " + pageTitle;
  box.scrollIntoView({ block: "center" }); // a refused endorsement is far below it
  box.focus({ preventScroll: true });
}

function markInvalid(field, message) {
  const container = field.closest(".field") || field.parentElement;
  const error = document.createElement("span");
  error.className = "field-error";
  error.id = field.id + "-error";
  error.textContent = "Error: " + message;
  container.append(error);
  field.setAttribute("aria-invalid", "true");
  field.setAttribute("aria-describedby", [field.dataset.hint, error.id].filter(Boolean).join(" "));
}

// A message for the officer that is not a refusal (a polite live region: read out, no focus).
function notice(message) {
  $("notice").textContent = message;
}

function clearProblem() {
  $("problem").hidden = true;
  $("problem-body").replaceChildren();
  document.title = pageTitle;
  for (const error of document.querySelectorAll(".field-error")) error.remove();
  for (const field of document.querySelectorAll("[aria-invalid]")) {
    field.removeAttribute("aria-invalid");
    if (field.dataset.hint) field.setAttribute("aria-describedby", field.dataset.hint);
    else field.removeAttribute("aria-describedby");
  }
}

// Required fields left empty, as refusals the summary lists (the forms do their own checking, so
// every problem is told the same way, linked to its field).
function missingFields(form) {
  return [...form.elements]
    .filter((field) => field.required && !field.value.trim())
    .map((field) => ({ field, message: `Enter the ${labelOf(field).toLowerCase()}.` }));
}

// Checks the form before sending; false (and the summary shown) when something is missing.
function formIsComplete(form) {
  const errors = missingFields(form);
  if (errors.length) showProblem({ errors });
  return errors.length === 0;
}

let pageTitle = document.title;

// No answer came (the network dropped, the node is unreachable, the tablet slept): what was
// sent may or may not have been done.
const NO_ANSWER = "The node did not answer (is the network down?). Check the connection and try again.";

// A call to the API; a refusal, or no answer at all, is shown in the error summary.
// lineInputs: see showProblem; headers: extra request headers; noAnswer: what to tell the
// officer when no answer comes.
async function api(method, path, body, { lineInputs, headers, noAnswer } = {}) {
  const options = {
    method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin",
  };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (_) {
    showProblem({ errors: [{ message: noAnswer || NO_ANSWER }] });
    throw new Error(`no answer to ${method} ${path}`);
  }
  const data = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
  // A refusal as from another site (403 EPIX-AUTH-012) is not a session that ended: logging in
  // again would not help, so it is shown in the error summary like any other refusal.
  if (response.status === 401 && !location.pathname.endsWith("/login")) {
    // The session ended (expired, logged out in another tab, password changed): nothing was
    // done. Keep what was typed, log in again, come back here; the officer submits again.
    keepTypedValues();
    location.assign(`/web/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new Error("not logged in");
  }
  if (!response.ok) {
    showProblem(data, lineInputs);
    throw new Error(data.code || `HTTP ${response.status}`);
  }
  return data;
}

let me = null;
let whoKnown = Promise.resolve(); // settles once showWho has asked who is logged in

// What the officer typed when their session ended, kept in this tab only (sessionStorage) until
// they are back on the same page as the same person. Passwords are never kept, nor is a field
// marked data-secret (a permit's security token): the form only notes that one was typed.
const TYPED_KEY = "epix.typed-values";
const TYPED_MAX_AGE_MS = 60 * 60 * 1000;

function keepTypedValues() {
  const forms = {};
  for (const form of document.querySelectorAll("form[data-keep]")) {
    if (form.closest("[hidden]")) continue; // not in view: nothing typed there
    const values = {};
    let secretLeftOut = false;
    for (const field of form.elements) {
      const key = field.name || field.id;
      const typed = ["INPUT", "SELECT", "TEXTAREA"].includes(field.tagName);
      if (!key || !typed || field.type === "password") continue;
      if ("secret" in field.dataset) secretLeftOut ||= field.value !== "";
      else values[key] = field.value;
    }
    forms[form.id] = { subject: form.dataset.subject || null, values, secretLeftOut };
  }
  const typed = { path: location.pathname + location.search, user: me ? me.username : null, at: Date.now(), forms };
  try { sessionStorage.setItem(TYPED_KEY, JSON.stringify(typed)); } catch (_) { /* storage off */ }
}

// The values kept for this page and this person, taken out of storage (they are used once).
function takeTypedValues() {
  let typed = null;
  try {
    typed = JSON.parse(sessionStorage.getItem(TYPED_KEY) || "null");
    sessionStorage.removeItem(TYPED_KEY);
  } catch (_) { return null; }
  if (!typed || typeof typed.forms !== "object" || typed.path !== location.pathname + location.search) return null;
  if (!(Date.now() - typed.at < TYPED_MAX_AGE_MS)) return null;
  if (typed.user !== null && (!me || me.username !== typed.user)) return null; // another person
  return typed;
}

// Puts kept values back, only into the same form about the same thing (e.g. the same permit).
function restoreForm(form, kept) {
  if (!kept || (kept.subject || null) !== (form.dataset.subject || null)) return false;
  for (const [name, value] of Object.entries(kept.values || {})) {
    const field = form.elements.namedItem(name);
    if (field && field.type !== "password") field.value = String(value);
  }
  return true;
}

// Whose typed values wait in this tab (a username), without taking them.
function keptFor() {
  try { return (JSON.parse(sessionStorage.getItem(TYPED_KEY) || "null") || {}).user || null; } catch (_) { return null; }
}

// Where to go after logging in: a page of ours, never another site (no open redirect).
function returnPath(next) {
  let target = null;
  try { target = next ? new URL(next, location.origin) : null; } catch (_) { target = null; }
  if (!target || target.origin !== location.origin || !target.pathname.startsWith("/web/")
    || target.pathname === "/web/login") return "/web/lookup";
  return target.pathname + target.search;
}

async function showWho() {
  try {
    const who = await fetch("/v1/auth/whoami", { credentials: "same-origin" });
    if (!who.ok) return;
    me = await who.json();
    text($("who"), `${me.username} · ${me.party} · ${me.roles.join(", ")}`);
    $("logout-form").hidden = false;
  } catch (_) { /* not logged in: the header stays empty */ }
}

async function logOut() {
  let response = null;
  try {
    response = await fetch("/v1/auth/logout", {
      method: "POST", headers: { Accept: "application/json" }, credentials: "same-origin",
    });
  } catch (_) { /* no answer: the login page shows whether the session is still on */ }
  if (response && !response.ok && response.status !== 401) {
    // Refused (e.g. EPIX-AUTH-012, the node took the request for another site's): the person
    // is still logged in, so say so here instead of showing the login page as if logged out.
    showProblem(await response.json().catch(() => ({ detail: `HTTP ${response.status}` })));
    return;
  }
  location.assign("/web/login");
}

function initLogin() {
  // An endorse form the node carries through this login (sent from a page without script): the
  // form is posted as it is, so that what was typed comes back on the permit's page.
  if ($("login-form").elements.namedItem("kept")) return;
  if (keptFor()) notice("Your session has ended. Log in again to go back to where you were; what you typed is kept.");
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblem();
    if (!formIsComplete($("login-form"))) return;
    try {
      await api("POST", "/v1/auth/login", { username: $("username").value, password: $("password").value });
    } catch (_) {
      return; /* the problem box shows why */
    }
    location.assign(returnPath(new URLSearchParams(location.search).get("next")));
  });
}

// Times are shown in the officer's own time zone, named (the API gives UTC).
const TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const TIME_FORMAT = new Intl.DateTimeFormat("en-GB", {
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
  hourCycle: "h23", timeZoneName: "shortOffset",
});

// A <time> element for an ISO instant: "2026-12-07 08:30 UTC+9", the exact UTC value in datetime.
function instant(iso) {
  const element = document.createElement("time");
  const at = new Date(iso);
  if (!iso || Number.isNaN(at.getTime())) {
    text(element, iso);
    return element;
  }
  const part = Object.fromEntries(TIME_FORMAT.formatToParts(at).map(({ type, value }) => [type, value]));
  const zone = (part.timeZoneName || "").replace(/^GMT/, "UTC");
  element.dateTime = iso;
  element.textContent = `${part.year}-${part.month}-${part.day} ${part.hour}:${part.minute} ${zone}`;
  return element;
}

function zoneNote() {
  return `Times are in your time zone, ${TIME_ZONE}.`;
}

// Today in the officer's time zone, as a date input wants it (valueAsDate would give UTC's day).
function localToday() {
  const now = new Date();
  const pad = (value) => String(value).padStart(2, "0");
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

function partyText(party) {
  if (!party) return null;
  const country = party.address && party.address.country ? ` (${party.address.country})` : "";
  return (party.name || "") + country;
}

function lookupLink(party, number) {
  const link = document.createElement("a");
  link.href = `/web/lookup?party=${encodeURIComponent(party)}&number=${encodeURIComponent(number)}`;
  link.textContent = `${party} ${number}`;
  return link;
}

// Why a permit may no longer be used: when it was cancelled or replaced, by what, and the reason.
function renderStatusDetail(view) {
  const detail = $("status-detail");
  detail.replaceChildren();
  if (view.status === "cancelled" || view.status === "replaced") {
    detail.append(`${view.status === "cancelled" ? "Cancelled" : "Replaced"} by the issuer`);
    if (view.status_changed_at) detail.append(" on ", instant(view.status_changed_at));
    if (view.replaced_by) {
      detail.append("; the permit that replaces it: ");
      detail.append(lookupLink(view.replaced_by.issuing_party, view.replaced_by.number));
    }
    if (view.status_reason) detail.append(`. Reason: ${view.status_reason}`);
  }
  detail.hidden = detail.childNodes.length === 0;
}

function renderPermit(view) {
  const signature = view.signature;
  const verdict = $("verdict");
  verdict.className = "verdict " + (signature.valid ? "good" : "bad");
  text(verdict, signature.valid ? "Signature valid" : "Signature NOT valid");
  const status = $("status");
  status.className = "status status-" + view.status;
  text(status, view.status.toUpperCase());
  renderStatusDetail(view);
  text($("fact-number"), `${view.issuing_party} ${view.number}`);
  text($("fact-type"), view.document_type);
  $("fact-validity").replaceChildren(
    view.valid_from ? instant(view.valid_from) : "?", " → ", view.valid_until ? instant(view.valid_until) : "?");
  const signer = signature.signer;
  text($("fact-signer"), signer ? `${signer.authority_name} (${signer.party}), key ${signer.fingerprint.slice(0, 16)}…` : null);
  const permit = view.permit || {};
  text($("fact-exporter"), partyText(permit.exporter));
  text($("fact-importer"), partyText(permit.importer));
  text($("fact-sha"), view.sha256);
  $("qr").src = `/web/qr.svg?party=${encodeURIComponent(view.issuing_party)}&number=${encodeURIComponent(view.number)}`;

  const species = new Map((permit.lines || []).map((line) => [line.line_id, line]));
  const body = $("lines").querySelector("tbody");
  body.replaceChildren();
  const endorseLines = $("endorse-lines");
  endorseLines.replaceChildren(endorseLines.querySelector("legend"), $("qty-hint"));
  for (const line of view.lines) {
    const detail = species.get(line.line_id) || {};
    const row = document.createElement("tr");
    row.dataset.line = line.line_id;
    for (const value of [line.line_id, detail.scientific_name, detail.appendix, detail.source,
      line.permitted, line.reserved, line.used, line.remaining, line.unit]) {
      const cell = document.createElement("td");
      text(cell, value);
      row.append(cell);
    }
    body.append(row);
    const field = document.createElement("div");
    field.className = "field";
    const input = document.createElement("input");
    input.name = input.id = "qty-" + line.line_id;
    input.dataset.line = line.line_id;
    input.dataset.unit = line.unit;
    input.inputMode = "decimal";
    input.autocomplete = "off";
    input.value = input.dataset.remaining = line.remaining;
    input.setAttribute("aria-describedby", input.dataset.hint = "qty-hint");
    const label = document.createElement("label");
    label.htmlFor = input.id;
    label.textContent = `Line ${line.line_id}` + (detail.scientific_name ? `, ${detail.scientific_name}` : "")
      + ` (${line.unit})`;
    field.append(label, input);
    endorseLines.append(field);
  }
  const flags = $("flags");
  flags.replaceChildren();
  for (const flag of view.compliance.length ? view.compliance : [null]) {
    const item = document.createElement("li");
    text(item, flag === null ? "No compliance flags." : (flag.code ? `${flag.code}: ${flag.message}` : flag));
    flags.append(item);
  }
  const history = $("history");
  history.replaceChildren();
  for (const event of view.history) {
    const item = document.createElement("li");
    item.append(instant(event.at),
      ` ${event.action} ${event.outcome} (${event.party || ""}${event.by ? ", " + event.by : ""})`);
    history.append(item);
  }
  showEndorseForm(view);
  $("endorse-form").dataset.subject = `${view.issuing_party}/${view.number}`;
  $("result").hidden = false;
  notice(`Permit ${view.issuing_party} ${view.number}: ${verdict.textContent}, ${status.textContent}.`);
}

// The endorse form is for customs of the permit's exporting or importing Party only (the API
// refuses anyone else, and the page without script shows it to no one else), offering the
// sides their Party may record: the exporting Party's customs endorse, the importing Party's
// inspect.
function showEndorseForm(view) {
  const customs = me !== null && me.roles.includes("customs");
  const sides = [
    ["export", "Export (box 14)", view.exporter_party],
    ["import", "Import inspection", view.importer_party],
  ].filter(([, , party]) => customs && me.party === party);
  $("side").replaceChildren(...sides.map(([side, label]) => new Option(label, side)));
  $("endorse-form").hidden = sides.length === 0;
}

// A quantity as typed, read the one way it can be meant. A point or a comma is the decimal
// separator (a decimal keypad gives either, by locale); a value that could be thousands grouping
// ("1,500", "1.500": one and a half in one locale, fifteen hundred in another) or has other
// characters is refused with what to write instead, never guessed. The prefilled remaining
// quantity, unchanged, is the node's own and sent as it is.
function readQuantity(input) {
  const typed = input.value.trim();
  if (typed === input.dataset.remaining) return { value: typed };
  const unit = input.dataset.unit;
  const grouped = /^[1-9]\d{0,2}[.,]\d{3}$/;
  if (grouped.test(typed)) {
    const whole = typed.replace(/[.,]/, "");
    const decimal = typed.replace(",", ".").replace(/0+$/, "").replace(/\.$/, "");
    const unambiguous = grouped.test(decimal) ? decimal + "0" : decimal;
    return {
      error: `“${typed}” could mean ${decimal} or ${whole} ${unit}: write ${whole} for ${whole}, `
        + `or ${unambiguous} for ${decimal}.`,
    };
  }
  if (/^\d+([.,]\d+)?$/.test(typed)) return { value: typed.replace(",", ".") };
  return {
    error: `“${typed}” is not a quantity: write digits, with a point or a comma before decimals `
      + "(12.5 or 12,5), and no thousands separators.",
  };
}

// The permit on screen: the endorse form acts on it, whatever is typed in the lookup form since.
let shown = null;

// The Idempotency-Key of the endorsement the officer is making: made for the request (permit and
// values) when Endorse is pressed, and sent again with that same request until it succeeds. So
// pressing Endorse again after an answer that never came (or a gateway error) gets the
// endorsement the node may have recorded, never a second one; a success, another permit or
// other values make a new key (a refused request kept none on the node, so resending it is
// judged afresh).
let pendingEndorsement = null; // { request: path and body as JSON, key }

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Outside a secure context (plain http to a non-loopback host) randomUUID is missing.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

function endorsementKey(path, body) {
  const request = JSON.stringify([path, body]);
  if (!pendingEndorsement || pendingEndorsement.request !== request) {
    pendingEndorsement = { request, key: newKey() };
  }
  return pendingEndorsement.key;
}

const ENDORSEMENT_NO_ANSWER = "The node did not answer, so the endorsement may or may not have "
  + "been recorded. Check the connection and press Endorse again without changing anything: "
  + "if it was recorded, you get that endorsement; it is never recorded twice.";

function permitPath(permit) {
  return `/v1/permits/${encodeURIComponent(permit.party)}/${encodeURIComponent(permit.number)}`;
}

// Permit numbers are printed in capitals without spaces; copied from paper they are often typed
// in lower case or with spaces. The number as typed is looked up first (an issuer's number that
// has lower case or spaces still matches); only when none is on file is the printed form tried.
function printedForm(number) {
  return number.replace(/\s+/g, "").toUpperCase();
}

function lookupPath(permit) {
  return permitPath(permit) + (permit.token ? `?token=${encodeURIComponent(permit.token)}` : "");
}

async function lookUp(permit) {
  clearProblem();
  $("result").hidden = true;
  await whoKnown; // who is logged in decides whether the endorse form is shown
  let view;
  try {
    view = await api("GET", lookupPath(permit));
  } catch (error) {
    const printed = { ...permit, number: printedForm(permit.number) };
    if (error.message !== "EPIX-STATE-007" || printed.number === permit.number) throw error;
    view = await api("GET", lookupPath(printed));
    clearProblem();
  }
  shown = { party: view.issuing_party, number: view.number, token: permit.token };
  renderPermit(view);
}

function typedPermit() {
  return { party: $("party").value.trim().toUpperCase(), number: $("number").value.trim(), token: $("token").value.trim() };
}

function initLookup(who) {
  const params = new URLSearchParams(location.search);
  if (params.get("party")) $("party").value = params.get("party");
  if (params.get("number")) $("number").value = params.get("number");
  $("date").value = localToday();
  $("zone-note").textContent = zoneNote();
  $("lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearProblem();
    if (formIsComplete($("lookup-form"))) lookUp(typedPermit()).catch(() => {});
  });
  $("endorse-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("endorse-button");
    if (button.disabled) return; // sent already: a second press (or Enter) must not endorse twice
    clearProblem();
    notice("");
    if (!formIsComplete($("endorse-form"))) return;
    const sent = [...$("endorse-lines").querySelectorAll("input")].filter((input) => input.value.trim() !== "");
    if (!sent.length) {
      const first = $("endorse-lines").querySelector("input");
      showProblem({ errors: [{ field: first, message: "Enter the quantity of at least one line." }] });
      return;
    }
    const read = sent.map((input) => ({ input, ...readQuantity(input) }));
    const unreadable = read.filter((quantity) => quantity.error);
    if (unreadable.length) {
      showProblem({ errors: unreadable.map((quantity) => ({ field: quantity.input, message: quantity.error })) });
      return;
    }
    const lines = read.map(({ input, value }) => ({ line_id: input.dataset.line, quantity: value, unit: input.dataset.unit }));
    const permit = shown;
    button.disabled = true;
    button.textContent = "Endorsing…";
    const path = permitPath(permit) + "/endorsements";
    const body = {
      side: $("side").value, port: $("port").value.trim(), date: $("date").value,
      officer: $("officer").value.trim(), transport_document: $("transport").value.trim(), lines,
    };
    try {
      const result = await api("POST", path, body, {
        lineInputs: sent,
        headers: { "Idempotency-Key": endorsementKey(path, body) },
        noAnswer: ENDORSEMENT_NO_ANSWER,
      });
      pendingEndorsement = null;
      const done = $("endorse-result");
      text(done, `Endorsed: ${result.endorsement_id}`);
      done.hidden = false;
      await lookUp(permit);
      notice(`Permit ${permit.party} ${permit.number} endorsed.`);
    } catch (_) {
      /* the problem box shows why */
    } finally {
      button.disabled = false;
      button.textContent = "Endorse";
    }
  });
  restoreTypedValues(who).catch(() => {});
}

// After a forced log-in: the permit and what was typed come back; nothing is sent by itself.
async function restoreTypedValues(who) {
  const params = new URLSearchParams(location.search);
  await who;
  const typed = takeTypedValues();
  if (typed) restoreForm($("lookup-form"), typed.forms["lookup-form"]);
  const secretLeftOut = typed && typed.forms["lookup-form"] && typed.forms["lookup-form"].secretLeftOut;
  if (secretLeftOut || params.get("retype_token")) {
    // Looked up without the token the officer typed, the permit could be refused as unknown.
    if (secretLeftOut) notice("Type the security token again: it is not kept while you log in.");
    $("token").focus();
    return;
  }
  if (!(params.get("party") && params.get("number")) && !typed) return;
  const permit = typedPermit();
  if (!permit.party || !permit.number) return;
  await lookUp(permit);
  if (typed && restoreForm($("endorse-form"), typed.forms["endorse-form"])) {
    notice("Your session had ended. What you typed is back: check it and press Endorse again; it was not sent.");
  }
}

// The registry page comes filled by the node (times in UTC, for a browser without script); the
// script only shows its times in the officer's own time zone.
function initRegistry() {
  for (const time of document.querySelectorAll("#expiring time[datetime]")) {
    time.replaceWith(instant(time.dateTime));
  }
  $("zone-note").textContent = zoneNote();
}

document.addEventListener("DOMContentLoaded", () => {
  pageTitle = document.title;
  for (const field of document.querySelectorAll("input[aria-describedby]")) {
    field.dataset.hint = field.getAttribute("aria-describedby"); // kept while an error is added
  }
  $("logout-form").addEventListener("submit", (event) => {
    event.preventDefault(); // the script's log-out shows a refusal on this page
    logOut().catch(() => {});
  });
  const who = whoKnown = showWho();
  const page = document.querySelector("[data-page]");
  const name = page ? page.dataset.page : "";
  if (name === "login") initLogin();
  if (name === "lookup") initLookup(who);
  if (name === "registry") initRegistry();
});
