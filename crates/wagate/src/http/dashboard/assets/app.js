// wagate dashboard: a small single-page app over the Msgera API, reached through the
// session proxy at /ui/api. No framework and no build step. Every piece of data from
// the server is put into the page as text (textContent), never parsed as HTML.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const main = document.getElementById("main");
const flash = document.getElementById("flash");
const DEFAULT_TO = "+201001234567";
const TERMINAL = ["read", "played", "failed"];
const EVENTS = ["message.received", "message.status", "device.status", "message.reaction", "message.edited", "message.deleted", "group.participants"];
let timers = [];
let generation = 0;

// ---- helpers ---------------------------------------------------------------------

/** Builds an element; attributes are set as properties/attributes, children as text. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function badge(status, id) {
  return h("span", { class: "status status-" + status, id }, status);
}

function when(t) {
  return t ? new Date(t).toLocaleString() : "—";
}

function say(text) {
  flash.textContent = text;
  setTimeout(() => { if (flash.textContent === text) flash.textContent = ""; }, 4000);
}

/** Calls the API through the session proxy: {status, body}. A 401 means the session ended. */
async function api(method, path, body, raw) {
  const headers = { "X-CSRF-Token": CSRF, Accept: "application/json" };
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch("/ui/api" + path, { method, headers, body: payload, credentials: "same-origin" });
  if (res.status === 401) {
    window.location.assign("/signin");
    throw new Error("signed out");
  }
  if (raw) return res;
  let json = null;
  try { json = await res.json(); } catch (_) { json = null; }
  return { status: res.status, body: json };
}

function errorText(r) {
  return (r.body && r.body.message) || ("HTTP " + r.status);
}

/** Repeats fn every ms while the current page is shown. */
function every(ms, fn) {
  const gen = generation;
  const tick = async () => {
    if (gen !== generation) return;
    try { await fn(); } catch (e) { window.__lastError = String(e && e.stack || e); /* the next tick retries */ }
    if (gen === generation) timers.push(setTimeout(tick, ms));
  };
  tick();
}

function field(label, input, hint) {
  return [h("label", { for: input.id }, label), input, hint ? h("p", { class: "hint" }, hint) : null];
}

function secretBox(id, label, secret) {
  return h("div", { class: "secret", id, role: "alert" },
    h("strong", {}, label + " (shown once — copy it now): "), h("code", {}, secret));
}

async function deviceOptions(select, selected) {
  const r = await api("GET", "/v1/developer/devices");
  const devices = (r.body && r.body.data) || [];
  select.replaceChildren(...devices.map((d) =>
    h("option", { value: d.deviceUid, selected: d.deviceUid === selected }, d.name + " (" + d.engine + ", " + d.status + ")")));
  return devices;
}

/** Replaces a table body's rows only when the data changed, so focus and buttons survive polling. */
function renderRows(tbody, data, rows) {
  const key = JSON.stringify(data);
  if (tbody.dataset.key === key) return;
  tbody.replaceChildren(...rows());
  tbody.dataset.key = key;
}

function query() {
  const hash = window.location.hash || "#/devices";
  const i = hash.indexOf("?");
  return new URLSearchParams(i >= 0 ? hash.slice(i + 1) : "");
}

// ---- pages -----------------------------------------------------------------------

/**
 * The fields of a Cloud API number's credentials. `required`: a new device needs them all;
 * a change sends only the fields filled in (the secrets are never shown again).
 */
function cloudFields(prefix, required) {
  const input = (id, name, type) => h("input", { id: prefix + "-" + id, name, type, autocomplete: "off" });
  const pnid = input("pnid", "phoneNumberId", "text");
  const token = input("token", "accessToken", "password");
  const secret = input("secret", "appSecret", "password");
  const verify = input("verify", "verifyToken", "text");
  const waba = input("waba", "businessAccountId", "text");
  const wrap = h("div", { id: prefix + "-fields" },
    h("p", { class: "hint" }, required
      ? "From your Meta app: WhatsApp → API Setup (phone number id, business account id), a system user's permanent token, and App settings → Basic (app secret). The verify token is any string you choose; give Meta the same one with the webhook URL."
      : "Fill in only what changes; the device reconnects with the new credentials. The access token and app secret are never shown again."),
    ...field("Phone number id", pnid), ...field("Access token", token), ...field("App secret", secret),
    ...field("Verify token", verify), ...field("Business account id" + (required ? " (optional, for templates)" : ""), waba));
  const value = () => {
    const v = {};
    for (const [k, el] of [["phoneNumberId", pnid], ["accessToken", token], ["appSecret", secret], ["verifyToken", verify], ["businessAccountId", waba]]) {
      if (el.value.trim()) v[k] = el.value.trim();
    }
    return v;
  };
  const clear = () => { for (const el of [pnid, token, secret, verify, waba]) el.value = ""; };
  // Required only while shown: a hidden required field would block the whole form.
  const need = (on) => { for (const el of [pnid, token, secret, verify]) el.required = on && required; };
  return { wrap, value, clear, need, pnid, waba };
}

async function devicesPage() {
  const tbody = h("tbody", { id: "devices-body" });
  const name = h("input", { id: "new-device-name", name: "name", required: true, maxlength: 100 });
  const engine = h("select", { id: "new-device-engine", name: "engine" },
    h("option", { value: "sandbox" }, "sandbox (simulated WhatsApp)"),
    h("option", { value: "whatsapp-web" }, "whatsapp-web (a real phone)"),
    h("option", { value: "cloud-api" }, "cloud-api (an official number on Meta's Cloud API)"));
  // A Cloud API number's credentials, from its Meta app; asked for that engine only.
  const cloud = cloudFields("new-cloud", true);
  cloud.wrap.hidden = true;
  engine.addEventListener("change", () => {
    cloud.wrap.hidden = engine.value !== "cloud-api";
    cloud.need(engine.value === "cloud-api");
  });
  const out = h("div", { id: "new-device-result" });
  const form = h("form", { id: "create-device", onsubmit: async (e) => {
    e.preventDefault();
    const body = { name: name.value, engine: engine.value };
    if (engine.value === "cloud-api") body.cloudApi = cloud.value();
    const r = await api("POST", "/v1/developer/devices", body);
    if (r.status !== 201) { out.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(r))); return; }
    const d = r.body.data;
    name.value = "";
    out.replaceChildren(
      h("p", {}, "Created ", h("a", { href: "#/device/" + d.deviceUid, id: "new-device-link" }, d.name), "."),
      secretBox("new-device-token", "MegaMsg instance token", d.instanceToken));
    refresh();
  } }, h("h2", {}, "New device"), ...field("Name", name), ...field("Engine", engine), cloud.wrap,
    h("button", { type: "submit", id: "create-device-submit" }, "Create device"), out);
  main.replaceChildren(
    h("h1", {}, "Devices"),
    h("section", { class: "card", "aria-labelledby": "devices-h" },
      h("h2", { id: "devices-h" }, "Your devices"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", { class: "hide-sm" }, "Engine"),
        h("th", {}, "Status"), h("th", {}, "Phone"))), tbody)),
    h("section", { class: "card" }, form));
  async function refresh() {
    const r = await api("GET", "/v1/developer/devices");
    const devices = (r.body && r.body.data) || [];
    renderRows(tbody, devices, () => (devices.length ? devices.map((d) => h("tr", { "data-device": d.deviceUid },
      h("td", {}, h("a", { href: "#/device/" + d.deviceUid }, d.name)),
      h("td", { class: "hide-sm" }, d.engine),
      h("td", {}, badge(d.status)),
      h("td", {}, d.phoneNumber || "—"))) : [h("tr", {}, h("td", { colspan: 4 }, "No devices yet."))]));
  }
  every(2000, refresh);
}

async function devicePage(uid) {
  const path = "/v1/developer/devices/" + encodeURIComponent(uid);
  let r = await api("GET", path);
  if (r.status !== 200) { main.replaceChildren(h("p", { class: "error" }, errorText(r))); return; }
  let d = r.body.data;
  const status = badge(d.status, "device-status");
  const linked = h("p", { id: "linked" });
  const linking = h("section", { class: "card", id: "linking", "aria-labelledby": "linking-h" });
  const qrBox = h("div", { class: "qr", id: "qr", "aria-live": "polite" });
  const pairOut = h("p", { id: "pair-code", "aria-live": "polite" });
  let lastQr = null;
  let lastUrl = null;

  const pairPhone = h("input", { id: "pair-phone", name: "phone", inputmode: "tel", placeholder: "+201001234567" });
  const linkUi = h("div", { id: "link-ui" },
    h("p", {}, "On the phone: WhatsApp → Settings → Linked devices → Link a device, then scan the code. It refreshes as WhatsApp rotates it."),
    qrBox,
    h("form", { id: "pair-form", onsubmit: async (e) => {
      e.preventDefault();
      const p = await api("POST", path + "/pair-code", { phone: pairPhone.value });
      pairOut.textContent = p.status < 300 ? "Pair code: " + p.body.data.code + " — enter it on the phone (Link with phone number instead)." : errorText(p);
    } }, ...field("Or link with a phone number", pairPhone, "International format; the phone then asks for the pair code shown here."),
      h("button", { type: "submit" }, "Get pair code"), pairOut));
  const logoutBtn = h("button", { type: "button", class: "secondary", id: "logout", onclick: async () => {
    const c = await api("POST", path + "/logout");
    say(c.status < 300 ? "Logged out." : errorText(c));
  } }, "Log out of WhatsApp");
  // Connect is offered whenever the device is not connected (a sandbox device too, after a logout).
  const connectBtn = h("button", { type: "button", class: "secondary", id: "connect", onclick: async () => {
    const c = await api("POST", path + "/connect");
    say(c.status < 300 ? "Linking started." : errorText(c));
  } }, "Start linking / new QR codes");
  linking.append(h("h2", { id: "linking-h" }, "Linking"), linked, linkUi, connectBtn, logoutBtn);

  // Settings: name, budgets, pacing.
  const nm = h("input", { id: "edit-name", value: d.name, required: true, maxlength: 100 });
  const daily = h("input", { id: "edit-daily", type: "number", min: 1, value: d.safety.dailyLimit });
  const hourly = h("input", { id: "edit-hourly", type: "number", min: 1, value: d.safety.hourlyLimit });
  const minute = h("input", { id: "edit-minute", type: "number", min: 1, value: d.safety.minuteLimit });
  const minDelay = h("input", { id: "edit-min-delay", type: "number", min: 0, value: d.pacing.minDelayMs });
  const maxDelay = h("input", { id: "edit-max-delay", type: "number", min: 0, value: d.pacing.maxDelayMs });
  const typing = h("input", { id: "edit-typing", type: "checkbox", checked: d.pacing.typingIndicator });
  const settingsOut = h("p", { id: "settings-result", "aria-live": "polite" });
  const remaining = h("p", { class: "hint", id: "remaining" });
  const settings = h("form", { class: "card", id: "settings", onsubmit: async (e) => {
    e.preventDefault();
    const p = await api("PATCH", path, {
      name: nm.value,
      safety: { dailyLimit: +daily.value, hourlyLimit: +hourly.value, minuteLimit: +minute.value },
      pacing: { minDelayMs: +minDelay.value, maxDelayMs: +maxDelay.value, typingIndicator: typing.checked },
    });
    settingsOut.className = p.status === 200 ? "" : "error";
    settingsOut.textContent = p.status === 200 ? "Saved." : errorText(p);
  } }, h("h2", {}, "Name, budgets and pacing"), ...field("Name", nm),
    h("div", { class: "row" },
      h("div", {}, ...field("Messages per day", daily)), h("div", {}, ...field("Per hour", hourly)), h("div", {}, ...field("Per minute", minute))),
    remaining,
    h("div", { class: "row" },
      h("div", {}, ...field("Min delay between sends (ms)", minDelay)), h("div", {}, ...field("Max delay (ms)", maxDelay))),
    h("label", { class: "check", for: "edit-typing" }, typing, "Show “typing…” before each message"),
    h("button", { type: "submit", id: "save-settings" }, "Save"), settingsOut);

  const tokenOut = h("div", { id: "token-result" });
  const confirmBox = h("div", { id: "delete-confirm", hidden: true, role: "alertdialog", "aria-labelledby": "delete-q" },
    h("p", { id: "delete-q" }, "Delete “" + d.name + "”? It is logged out of WhatsApp and its queued messages are dropped. This cannot be undone."),
    h("button", { type: "button", class: "danger", id: "delete-yes", onclick: async () => {
      const p = await api("DELETE", path);
      if (p.status < 300) { say("Device deleted."); window.location.hash = "#/devices"; } else say(errorText(p));
    } }, "Yes, delete it"), " ",
    h("button", { type: "button", class: "secondary", id: "delete-no", onclick: () => { confirmBox.hidden = true; deleteBtn.focus(); } }, "Cancel"));
  const deleteBtn = h("button", { type: "button", class: "danger", id: "delete-device", onclick: () => {
    confirmBox.hidden = false; document.getElementById("delete-no").focus();
  } }, "Delete device…");

  // A Cloud API number is set up in Meta's app, not linked: where Meta must call, and a
  // way to replace its credentials.
  let cloudCard = null;
  if (d.engine === "cloud-api") {
    const change = cloudFields("edit-cloud", false);
    const cloudOut = h("p", { id: "cloud-result", "aria-live": "polite" });
    const hookUrl = h("code", { id: "cloud-webhook-url" }, d.cloudApi ? d.cloudApi.webhookUrl : "");
    const verifyToken = h("code", { id: "cloud-verify-token" });
    const ids = h("p", { id: "cloud-ids" });
    const showIds = (c) => {
      verifyToken.textContent = (c && c.verifyToken) || "(not readable on this node)";
      ids.replaceChildren("Phone number id: ", h("code", {}, (c && c.phoneNumberId) || "—"),
        " · business account: ", h("code", {}, (c && c.businessAccountId) || "none (templates cannot be listed)"));
    };
    showIds(d.cloudApi);
    cloudCard = h("form", { class: "card", id: "cloud-api", onsubmit: async (e) => {
      e.preventDefault();
      const p = await api("PATCH", path, { cloudApi: change.value() });
      cloudOut.className = p.status === 200 ? "" : "error";
      cloudOut.textContent = p.status === 200 ? "Saved; reconnecting with the new credentials." : errorText(p);
      if (p.status === 200) { change.clear(); showIds(p.body.data.cloudApi); }
    } }, h("h2", {}, "Cloud API"),
      h("p", {}, "In the Meta app, WhatsApp → Configuration: set the callback URL to ", hookUrl,
        " and the verify token to ", verifyToken, ", then subscribe to the ", h("code", {}, "messages"), " field."), ids,
      change.wrap, h("button", { type: "submit", id: "save-cloud" }, "Replace credentials"), cloudOut);
  }

  main.replaceChildren(
    h("h1", { id: "device-name" }, d.name),
    h("p", {}, status, " ", d.engine, " · ", h("a", { href: "#/messages?device=" + uid }, "Messages"), " · ",
      h("a", { href: "#/sandbox?device=" + uid }, "Try the API"), " · ", h("a", { href: "#/webhooks?device=" + uid }, "Webhooks")),
    cloudCard || linking, settings,
    h("section", { class: "card" }, h("h2", {}, "MegaMsg instance token"),
      h("p", {}, "Instance id: ", h("code", {}, uid)),
      h("button", { type: "button", class: "secondary", id: "rotate-token", onclick: async () => {
        const p = await api("POST", path + "/token");
        tokenOut.replaceChildren(p.status < 300 ? secretBox("new-token", "New instance token", p.body.data.instanceToken) : h("p", { class: "error" }, errorText(p)));
      } }, "Rotate instance token"), tokenOut),
    h("section", { class: "card" }, h("h2", {}, "Danger zone"), deleteBtn, confirmBox));

  async function showQr() {
    const q = await api("GET", path + "/qr");
    if (q.status !== 200) { qrBox.replaceChildren(h("p", { class: "hint" }, "No QR code right now: " + errorText(q))); lastQr = null; return; }
    if (q.body.data.qr === lastQr) return;
    lastQr = q.body.data.qr;
    const res = await api("GET", path + "/qr?format=svg", undefined, true);
    if (!res.ok) return;
    const url = URL.createObjectURL(await res.blob());
    if (lastUrl) URL.revokeObjectURL(lastUrl);
    lastUrl = url;
    qrBox.replaceChildren(h("img", { src: url, alt: "QR code to link this device", id: "qr-img" }),
      h("p", { class: "hint" }, "Valid until " + when(q.body.data.expiresAt)));
  }

  async function refresh() {
    const p = await api("GET", path);
    if (p.status !== 200) return;
    d = p.body.data;
    status.textContent = d.status;
    status.className = "status status-" + d.status;
    const connected = d.status === "connected";
    linked.replaceChildren(connected
      ? h("strong", {}, "Connected as " + (d.pushName || "(no name)") + " · " + (d.phoneNumber || "?"))
      : h("span", {}, "Not connected (" + d.status + (d.statusReason ? ": " + d.statusReason : "") + ")."));
    linkUi.hidden = connected || d.engine !== "whatsapp-web";
    logoutBtn.hidden = !connected;
    connectBtn.hidden = connected;
    remaining.textContent = "Left today: " + d.safety.dailyRemaining + " · this hour: " + d.safety.hourlyRemaining + " · this minute: " + d.safety.minuteRemaining;
    if (!linkUi.hidden) await showQr();
  }
  every(1500, refresh);
}

function shellQuote(s) {
  return "'" + String(s).replace(/'/g, "'\\''") + "'";
}

async function sandboxPage() {
  const device = h("select", { id: "sb-device", name: "deviceUid", required: true });
  const kind = h("select", { id: "sb-kind", name: "kind" },
    h("option", { value: "text" }, "Text"), h("option", { value: "media" }, "Image or video"),
    h("option", { value: "voice" }, "Voice note"), h("option", { value: "document" }, "Document"),
    h("option", { value: "location" }, "Location"), h("option", { value: "contact" }, "Contact card"),
    h("option", { value: "poll" }, "Poll"), h("option", { value: "template" }, "Message template (Cloud API)"),
    h("option", { value: "reaction" }, "Reaction to a message"), h("option", { value: "edit" }, "Edit a sent text"),
    h("option", { value: "delete" }, "Delete a sent message for everyone"),
    h("option", { value: "presence" }, "Typing or recording indicator"), h("option", { value: "read" }, "Mark the chat read"),
    h("option", { value: "group" }, "Create a group"), h("option", { value: "groups" }, "List the device's groups"));
  // What locations, contact cards and polls need; each shown for its kind only.
  const lat = h("input", { id: "sb-lat", name: "latitude", value: "30.0444", inputmode: "decimal" });
  const lon = h("input", { id: "sb-lon", name: "longitude", value: "31.2357", inputmode: "decimal" });
  const place = h("input", { id: "sb-place", name: "name", value: "Tahrir Square" });
  const locWrap = h("div", { hidden: true }, ...field("Latitude", lat), ...field("Longitude", lon), ...field("Place name (optional)", place));
  const cardName = h("input", { id: "sb-card-name", name: "contactName", value: "Support" });
  const cardPhone = h("input", { id: "sb-card-phone", name: "contactPhone", value: "+201001234567", inputmode: "tel" });
  const cardWrap = h("div", { hidden: true }, ...field("Contact name", cardName), ...field("Contact phone", cardPhone, "Sent as a vCard the recipient can save or message."));
  const question = h("input", { id: "sb-question", name: "question", value: "Which time suits you?" });
  const options = h("textarea", { id: "sb-options", name: "options", rows: 3 }, "Morning\nEvening");
  const multiple = h("input", { id: "sb-multiple", name: "multipleAnswers", type: "checkbox" });
  const pollWrap = h("div", { hidden: true }, ...field("Question", question), ...field("Options (one per line, 2 to 12)", options),
    h("label", { for: "sb-multiple" }, multiple, " Voters may pick several"));
  // A template approved in Meta's app: its name, language and parameters.
  const tplName = h("input", { id: "sb-template", name: "name", value: "hello_world" });
  const tplLang = h("input", { id: "sb-template-lang", name: "language", value: "en_US" });
  const tplComponents = h("textarea", { id: "sb-template-components", name: "components", rows: 3, placeholder: '[{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]' });
  const tplWrap = h("div", { hidden: true }, ...field("Template name", tplName, "GET /v1/developer/devices/{deviceUid}/templates lists the approved ones."),
    ...field("Language", tplLang), ...field("Components (JSON, optional)", tplComponents, "The template's parameters, in Meta's shape."));
  // Acting on a message already in a chat: which one, and (reactions) with what.
  const target = h("input", { id: "sb-target", name: "messageId", placeholder: "msg_… of a message sent or received" });
  const emoji = h("input", { id: "sb-emoji", name: "emoji", value: "👍" });
  const emojiWrap = h("div", { hidden: true }, ...field("Emoji (empty removes the reaction)", emoji));
  const targetWrap = h("div", { hidden: true }, ...field("Message id", target, "Edits and deletes: a message this device sent (15 minutes to edit, two days to delete)."), emojiWrap);
  const replyTo = h("input", { id: "sb-reply-to", name: "replyTo", placeholder: "msg_… or a received message's providerMessageId" });
  const replyWrap = h("div", {}, ...field("Reply to (optional)", replyTo, "Quotes that message above this one, in the same chat."));
  const state = h("select", { id: "sb-state", name: "state" },
    h("option", { value: "typing" }, "typing…"), h("option", { value: "recording" }, "recording a voice note…"),
    h("option", { value: "paused" }, "nothing (clear)"));
  const stateWrap = h("div", { hidden: true }, ...field("Show in the chat", state, "POST /v1/developer/presence: shown at once, nothing is stored."));
  const to = h("input", { id: "sb-to", name: "to", value: DEFAULT_TO, required: true });
  // A group: its subject and first members (the device is its owner).
  const subject = h("input", { id: "sb-subject", name: "subject", value: "Sandbox group" });
  const members = h("textarea", { id: "sb-members", name: "participants", rows: 3, placeholder: "+15550001234" });
  const groupWrap = h("div", { hidden: true }, ...field("Subject", subject), ...field("Participants (one phone per line)", members, "Other sandbox devices' numbers get the group's messages."));
  // A value ending in @g.us is a group: sent as groupId, anything else as to.
  const chatOf = () => to.value.trim().endsWith("@g.us") ? { groupId: to.value.trim() } : { to: to.value };
  const DEFAULT_TEXT = "{Hi|Hello} from the wagate dashboard";
  const text = h("textarea", { id: "sb-text", name: "text", rows: 3 }, DEFAULT_TEXT);
  const file = h("input", { id: "sb-file", name: "file", type: "file" });
  const fileWrap = h("div", { hidden: true }, ...field("File", file, "Up to 16 MB; uploaded first with POST /v1/developer/media/upload."));
  const textLabel = h("label", { for: "sb-text" }, "Text");
  const curl = h("pre", { id: "sb-curl" });
  const response = h("pre", { id: "sb-response" });
  const live = h("p", { id: "sb-live", "aria-live": "polite" });
  let watching = 0;
  kind.addEventListener("change", () => {
    // Chat actions are not messages: no text, no file.
    const groupCall = kind.value === "group" || kind.value === "groups";
    const action = kind.value === "presence" || kind.value === "read" || groupCall;
    const structured = ["location", "contact", "poll", "template"].includes(kind.value);
    const acting = ["reaction", "edit", "delete"].includes(kind.value);
    targetWrap.hidden = !acting;
    emojiWrap.hidden = kind.value !== "reaction";
    stateWrap.hidden = kind.value !== "presence";
    locWrap.hidden = kind.value !== "location";
    cardWrap.hidden = kind.value !== "contact";
    pollWrap.hidden = kind.value !== "poll";
    tplWrap.hidden = kind.value !== "template";
    replyWrap.hidden = action || acting;
    groupWrap.hidden = kind.value !== "group";
    // The message acted on decides the chat; group calls have none.
    to.disabled = acting || groupCall;
    textLabel.hidden = text.hidden = action || structured || (acting && kind.value !== "edit");
    fileWrap.hidden = kind.value === "text" || action || structured || acting;
    textLabel.textContent = kind.value === "edit" ? "New text" : kind.value === "text" ? "Text" : kind.value === "voice" ? "Caption (voice notes have none)" : "Caption (optional)";
    // The sample text is for text messages: a file goes without a caption unless one is
    // typed, and a voice note can have none (so nothing hides in the disabled box).
    if (kind.value !== "text" && text.value === DEFAULT_TEXT) text.value = "";
    if ((kind.value === "text" || kind.value === "edit") && !text.value) text.value = DEFAULT_TEXT;
    if (kind.value === "voice") text.value = "";
    text.disabled = kind.value === "voice";
  });
  const form = h("form", { id: "sandbox-form", onsubmit: async (e) => {
    e.preventDefault();
    const base = window.location.origin;
    const lines = [];
    let r;
    response.textContent = "…";
    live.replaceChildren();
    if (kind.value === "groups") {
      const endpoint = "/v1/developer/groups?deviceUid=" + encodeURIComponent(device.value);
      curl.textContent = "curl -s " + shellQuote(base + endpoint) + " -H \"X-API-Key: $KEY\"";
      r = await api("GET", endpoint);
    } else if (kind.value === "group") {
      const body = { deviceUid: device.value, subject: subject.value,
        participants: members.value.split("\n").map((m) => m.trim()).filter((m) => m) };
      curl.textContent = "curl -s -X POST " + base + "/v1/developer/groups -H \"X-API-Key: $KEY\" \\\n  -H 'Content-Type: application/json' \\\n  -d " + shellQuote(JSON.stringify(body));
      r = await api("POST", "/v1/developer/groups", body);
      if (r.status < 300 && r.body.data && r.body.data.groupId) to.value = r.body.data.groupId;
    } else if (kind.value === "presence" || kind.value === "read") {
      const [endpoint, body] = kind.value === "presence"
        ? ["/v1/developer/presence", { deviceUid: device.value, ...chatOf(), state: state.value }]
        : ["/v1/developer/chats/read", { deviceUid: device.value, chat: to.value.trim() }];
      lines.push("curl -s -X POST " + base + endpoint + " -H \"X-API-Key: $KEY\" \\\n  -H 'Content-Type: application/json' \\\n  -d " + shellQuote(JSON.stringify(body)));
      curl.textContent = lines.join("\n\n");
      r = await api("POST", endpoint, body);
    } else if (["reaction", "edit", "delete"].includes(kind.value)) {
      // The message acted on decides the device and the chat.
      const id = encodeURIComponent(target.value.trim());
      let method = "POST", endpoint = "/v1/developer/messages/" + id + "/reaction", body = { emoji: emoji.value };
      if (kind.value === "edit") { method = "PATCH"; endpoint = "/v1/developer/messages/" + id; body = { text: text.value }; }
      if (kind.value === "delete") { method = "DELETE"; endpoint = "/v1/developer/messages/" + id; body = undefined; }
      lines.push("curl -s -X " + method + " " + base + endpoint + " -H \"X-API-Key: $KEY\"" +
        (body ? " \\\n  -H 'Content-Type: application/json' \\\n  -d " + shellQuote(JSON.stringify(body)) : ""));
      curl.textContent = lines.join("\n\n");
      r = await api(method, endpoint, body);
    } else if (kind.value === "text" || ["location", "contact", "poll", "template"].includes(kind.value)) {
      const body = { deviceUid: device.value, ...chatOf() };
      let endpoint = "/v1/developer/messages/send";
      if (kind.value === "text") body.text = text.value;
      if (kind.value === "location") {
        endpoint = "/v1/developer/messages/send-location";
        // Sent as typed: the API says which field is not a number.
        body.latitude = lat.value.trim() === "" || isNaN(Number(lat.value)) ? lat.value : Number(lat.value);
        body.longitude = lon.value.trim() === "" || isNaN(Number(lon.value)) ? lon.value : Number(lon.value);
        if (place.value) body.name = place.value;
      } else if (kind.value === "contact") {
        endpoint = "/v1/developer/messages/send-contact";
        body.contacts = [{ name: cardName.value, phone: cardPhone.value }];
      } else if (kind.value === "poll") {
        endpoint = "/v1/developer/messages/send-poll";
        body.question = question.value;
        body.options = options.value.split("\n").map((o) => o.trim()).filter((o) => o);
        body.multipleAnswers = multiple.checked;
      } else if (kind.value === "template") {
        endpoint = "/v1/developer/messages/send-template";
        body.name = tplName.value.trim();
        body.language = tplLang.value.trim();
        if (tplComponents.value.trim()) {
          // Sent as typed when it is not JSON: the API says what is wrong with it.
          try { body.components = JSON.parse(tplComponents.value); } catch (_) { body.components = tplComponents.value; }
        }
      }
      if (replyTo.value.trim()) body.replyTo = replyTo.value.trim();
      lines.push("curl -s -X POST " + base + endpoint + " -H \"X-API-Key: $KEY\" \\\n  -H 'Content-Type: application/json' \\\n  -d " + shellQuote(JSON.stringify(body)));
      curl.textContent = lines.join("\n\n");
      r = await api("POST", endpoint, body);
    } else {
      if (!file.files.length) { response.textContent = "Choose a file first."; return; }
      const f = file.files[0];
      lines.push("curl -s -X POST " + base + "/v1/developer/media/upload -H \"X-API-Key: $KEY\" \\\n  -F " + shellQuote("file=@" + f.name));
      const fd = new FormData();
      fd.append("file", f, f.name);
      const up = await api("POST", "/v1/developer/media/upload", fd);
      if (up.status >= 300) {
        curl.textContent = lines.join("\n\n");
        response.textContent = "HTTP " + up.status + "\n" + JSON.stringify(up.body, null, 2);
        return;
      }
      const mediaId = up.body.data.mediaId;
      const voice = kind.value === "voice";
      const body = { deviceUid: device.value, ...chatOf(), mediaId };
      if (!voice && text.value) body.caption = text.value;
      if (replyTo.value.trim()) body.replyTo = replyTo.value.trim();
      const endpoint = voice ? "/v1/developer/messages/send-voice" : "/v1/developer/messages/send-media";
      lines.push("curl -s -X POST " + base + endpoint + " -H \"X-API-Key: $KEY\" \\\n  -H 'Content-Type: application/json' \\\n  -d " + shellQuote(JSON.stringify(body)));
      curl.textContent = lines.join("\n\n");
      r = await api("POST", endpoint, body);
    }
    response.textContent = "HTTP " + r.status + "\n" + JSON.stringify(r.body, null, 2);
    if (r.status < 300 && r.body.data && r.body.data.messageId) watch(r.body.data.messageId);
  } },
  ...field("From device", device), ...field("Kind", kind), ...field("To (phone or group id)", to, "A phone number, or a group's id (…@g.us: sent as groupId). Sandbox: numbers ending 0000 are not on WhatsApp; 0500 fail once, then succeed."),
  targetWrap, textLabel, text, fileWrap, locWrap, cardWrap, pollWrap, tplWrap, stateWrap, groupWrap, replyWrap,
  h("button", { type: "submit", id: "sb-send" }, "Send"));

  function watch(id) {
    const mine = ++watching;
    const st = badge("queued", "sb-status");
    live.replaceChildren("Message ", h("a", { href: "#/message/" + id, id: "sb-message-link" }, id), ": ", st);
    const gen = generation;
    const tick = async () => {
      if (mine !== watching || gen !== generation) return;
      const m = await api("GET", "/v1/developer/messages/" + id);
      if (m.status === 200) {
        st.textContent = m.body.data.status;
        st.className = "status status-" + m.body.data.status;
        if (TERMINAL.includes(m.body.data.status)) return;
      }
      timers.push(setTimeout(tick, 400));
    };
    tick();
  }

  main.replaceChildren(h("h1", {}, "API sandbox"),
    h("p", {}, "Send from one of your devices and see the exact request. Replace ", h("code", {}, "$KEY"), " with your API key."),
    h("section", { class: "card" }, form),
    h("section", { class: "card", "aria-labelledby": "sb-req-h" }, h("h2", { id: "sb-req-h" }, "Request"), curl,
      h("h2", {}, "Response"), response, live));
  await deviceOptions(device, query().get("device"));
}

const STATUSES = ["queued", "sent", "delivered", "read", "played", "failed"];

async function messagesPage() {
  const q = query();
  const device = h("select", { id: "msg-device", name: "device" }, h("option", { value: "" }, "All devices"));
  const status = h("select", { id: "msg-status", name: "status" }, h("option", { value: "" }, "Any status"),
    ...STATUSES.map((s) => h("option", { value: s, selected: q.get("status") === s }, s)));
  const tbody = h("tbody", { id: "messages-body" });
  const inbound = h("tbody", { id: "inbound-body" });
  const form = h("form", { id: "msg-filter", class: "row", onsubmit: (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    if (device.value) p.set("device", device.value);
    if (status.value) p.set("status", status.value);
    window.location.hash = "#/messages?" + p.toString();
  } }, h("div", {}, ...field("Device", device)), h("div", {}, ...field("Status", status)),
    h("div", {}, h("button", { type: "submit", id: "msg-apply" }, "Filter")));
  main.replaceChildren(h("h1", {}, "Messages"), h("section", { class: "card" }, form),
    h("section", { class: "card" }, h("h2", {}, "Outbound"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Message"), h("th", {}, "To"), h("th", { class: "hide-sm" }, "Kind"),
        h("th", {}, "Status"), h("th", { class: "hide-sm" }, "Updated"))), tbody)),
    h("section", { class: "card" }, h("h2", {}, "Inbound"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "From"), h("th", {}, "Text"), h("th", { class: "hide-sm" }, "Received"))), inbound)));
  const all = [];
  const devices = await api("GET", "/v1/developer/devices");
  for (const d of (devices.body && devices.body.data) || []) {
    all.push(d);
    device.append(h("option", { value: d.deviceUid, selected: q.get("device") === d.deviceUid }, d.name));
  }
  async function refresh() {
    const p = new URLSearchParams({ limit: "50" });
    if (q.get("device")) p.set("deviceUid", q.get("device"));
    if (q.get("status")) p.set("status", q.get("status"));
    const r = await api("GET", "/v1/developer/messages?" + p.toString());
    const items = (r.body && r.body.data && r.body.data.items) || [];
    renderRows(tbody, [r.status, items], () => (items.length ? items.map((m) => h("tr", { "data-message": m.messageId },
      h("td", {}, h("a", { href: "#/message/" + m.messageId }, m.messageId)), h("td", {}, m.to),
      h("td", { class: "hide-sm" }, (m.type || m.kind)), h("td", {}, badge(m.status)), h("td", { class: "hide-sm" }, when(m.updatedAt))))
      : [h("tr", {}, h("td", { colspan: 5 }, r.status === 200 ? "No messages." : errorText(r)))]));
    const ip = new URLSearchParams({ limit: "20" });
    if (q.get("device")) ip.set("deviceUid", q.get("device"));
    const ir = await api("GET", "/v1/developer/inbound?" + ip.toString());
    const got = (ir.body && ir.body.data && ir.body.data.items) || [];
    renderRows(inbound, got, () => (got.length ? got.map((m) => h("tr", {},
      h("td", {}, (m.fromName ? m.fromName + " " : "") + (m.from || m.fromLid || "?")),
      h("td", {}, m.text || "[" + (m.type || m.kind) + "]"), h("td", { class: "hide-sm" }, when(m.receivedAt))))
      : [h("tr", {}, h("td", { colspan: 3 }, "Nothing received."))]));
  }
  every(1500, refresh);
}

async function messagePage(id) {
  const head = h("div", { id: "message-head" });
  const hist = h("tbody", { id: "history-body" });
  main.replaceChildren(h("h1", {}, "Message ", h("code", {}, id)), h("section", { class: "card" }, head),
    h("section", { class: "card" }, h("h2", {}, "History"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Status"), h("th", {}, "At"), h("th", {}, "Reason"))), hist)));
  every(1000, async () => {
    const r = await api("GET", "/v1/developer/messages/" + encodeURIComponent(id));
    if (r.status !== 200) { head.replaceChildren(h("p", { class: "error" }, errorText(r))); return; }
    const m = r.body.data;
    // replaceChildren() would print a null as the text "null": absent parts are dropped.
    head.replaceChildren(...[h("p", {}, "Status: ", badge(m.status, "message-status")),
      h("p", {}, "From device ", h("a", { href: "#/device/" + m.deviceUid }, m.deviceUid), " to ", m.to, " · ", (m.type || m.kind), " · via ", m.source),
      m.text ? h("p", { id: "message-text" }, (m.media ? "Caption: " : "Text: "), m.text) : null,
      m.media ? mediaLine(m.media) : null,
      m.failureReason ? h("p", { class: "error" }, "Failed: " + m.failureReason) : null,
      m.providerMessageId ? h("p", { class: "hint" }, "WhatsApp id: " + m.providerMessageId) : null].filter(Boolean));
    hist.replaceChildren(...(m.history || []).map((c) => h("tr", {}, h("td", {}, badge(c.status)), h("td", {}, when(c.at)), h("td", {}, c.reason || ""))));
  });
}

function size(bytes) {
  if (bytes >= 1024 * 1024) return (bytes / 1024 / 1024).toFixed(1) + " MB";
  if (bytes >= 1024) return Math.round(bytes / 1024) + " KB";
  return bytes + " bytes";
}

/** What a message carries: type, name and size, and a short-lived download link. */
function mediaLine(media) {
  return h("p", { id: "message-media" }, "Media: ", h("code", {}, media.mimeType),
    media.fileName ? [" · ", media.fileName] : null, " · ", size(media.size),
    media.url ? [" · ", h("a", { href: media.url, id: "message-media-link", rel: "noopener noreferrer", download: media.fileName || true }, "Download")] : null);
}

async function webhooksPage() {
  const q = query();
  const device = h("select", { id: "wh-device", name: "deviceUid", onchange: () => { window.location.hash = "#/webhooks?device=" + device.value; } });
  const devices = await deviceOptions(device, q.get("device"));
  if (!devices.length) { main.replaceChildren(h("h1", {}, "Webhooks"), h("p", {}, "Create a device first.")); return; }
  const uid = device.value;
  const r = await api("GET", "/v1/developer/webhooks?deviceUid=" + encodeURIComponent(uid));
  if (r.status === 404 && !(r.body && r.body.code === "not_found" && /device/i.test(r.body.message))) {
    main.replaceChildren(h("h1", {}, "Webhooks"), h("p", {}, "This server has no webhook support yet."));
    return;
  }
  const c = (r.body && r.body.data) || {};
  const personal = h("input", { id: "wh-personal", type: "url", value: c.personalWebhookUrl || "", placeholder: "https://example.com/hooks/whatsapp" });
  const group = h("input", { id: "wh-group", type: "url", value: c.groupWebhookUrl || "" });
  const active = h("input", { id: "wh-active", type: "checkbox", checked: c.updatedAt ? c.isActive : true });
  const events = EVENTS.map((e) => h("input", { type: "checkbox", id: "wh-ev-" + e.replace(/\./g, "-"), value: e, checked: (c.events || []).includes(e) }));
  const out = h("p", { id: "wh-result", "aria-live": "polite" });
  const hist = h("tbody", { id: "wh-history" });
  const form = h("form", { id: "webhooks-form", onsubmit: async (e) => {
    e.preventDefault();
    const p = await api("PUT", "/v1/developer/webhooks", {
      deviceUid: uid, personalWebhookUrl: personal.value || null, groupWebhookUrl: group.value || null,
      isActive: active.checked, events: events.filter((x) => x.checked).map((x) => x.value),
    });
    out.className = p.status === 200 ? "" : "error";
    out.textContent = p.status === 200 ? "Saved." : errorText(p);
  } }, ...field("Device", device), ...field("Direct-chat webhook URL", personal), ...field("Group webhook URL", group),
    h("label", { class: "check", for: "wh-active" }, active, "Active"),
    h("fieldset", {}, h("legend", {}, "Events"), ...events.map((x) => h("label", { class: "check", for: x.id }, x, x.value))),
    h("button", { type: "submit", id: "wh-save" }, "Save"), out,
    c.secret ? h("p", { class: "hint" }, "Signing secret: ", h("code", {}, c.secret)) : null);
  main.replaceChildren(h("h1", {}, "Webhooks"), h("section", { class: "card" }, form),
    h("section", { class: "card" }, h("h2", {}, "Delivery history"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Event"), h("th", {}, "Attempt"), h("th", {}, "Result"),
        h("th", { class: "hide-sm" }, "Response"), h("th", {}, ""))), hist)));
  every(2000, async () => {
    const p = await api("GET", "/v1/developer/webhooks/history?limit=50&deviceUid=" + encodeURIComponent(uid));
    const items = (p.body && p.body.data && p.body.data.items) || [];
    renderRows(hist, [p.status, items], () => (items.length ? items.map((a) => h("tr", { "data-attempt": a.id },
      h("td", {}, a.eventType, h("br"), h("span", { class: "hint" }, a.url)),
      h("td", {}, "#" + a.attempt + " · " + when(a.createdAt)),
      h("td", {}, badge(a.status === "SUCCESS" ? "succeeded" : "failed"), " ", a.statusCode ? String(a.statusCode) : "", " ", a.latencyMs + " ms"),
      h("td", { class: "hide-sm" }, [a.error, a.responseSnippet].filter(Boolean).join(" — ")),
      h("td", {}, a.status === "SUCCESS" ? "" : h("button", { type: "button", class: "secondary redeliver", "data-attempt": a.id, onclick: async () => {
        const x = await api("POST", "/v1/developer/webhooks/history/" + a.id + "/redeliver");
        say(x.status < 300 ? "Queued for redelivery." : errorText(x));
      } }, "Redeliver"))))
      : [h("tr", {}, h("td", { colspan: 5 }, p.status === 200 ? "No deliveries yet." : errorText(p)))]));
  });
}

async function keysPage() {
  const tbody = h("tbody", { id: "keys-body" });
  const out = h("div", { id: "key-result" });
  const tokens = h("tbody", { id: "tokens-body" });
  main.replaceChildren(h("h1", {}, "Keys"),
    h("section", { class: "card" }, h("h2", {}, "API keys"),
      h("p", { class: "hint" }, "At most two are active at once, so one can replace the other. Revoking the key you signed in with signs you out."),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Key"), h("th", { class: "hide-sm" }, "Created"), h("th", {}, "State"), h("th", {}, ""))), tbody),
      h("button", { type: "button", id: "create-key", onclick: async () => {
        const r = await api("POST", "/v1/developer/keys");
        out.replaceChildren(r.status === 201 ? secretBox("new-key", "New API key", r.body.data.apiKey) : h("p", { class: "error", role: "alert" }, errorText(r)));
        refresh();
      } }, "Create API key"), out),
    h("section", { class: "card" }, h("h2", {}, "MegaMsg instance tokens"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Device (instance id)"), h("th", {}, ""))), tokens)));
  async function refresh() {
    const r = await api("GET", "/v1/developer/keys");
    const keys = (r.body && r.body.data) || [];
    tbody.replaceChildren(...keys.map((k) => {
      const confirm = h("span", { hidden: true },
        h("button", { type: "button", class: "danger", id: "revoke-yes-" + k.id, onclick: async () => {
          const x = await api("DELETE", "/v1/developer/keys/" + encodeURIComponent(k.id));
          say(x.status < 300 ? "Key revoked." : errorText(x));
          refresh();
        } }, "Yes, revoke"), " ",
        h("button", { type: "button", class: "secondary", onclick: () => { confirm.hidden = true; } }, "Cancel"));
      return h("tr", { "data-key": k.id }, h("td", {}, h("code", {}, k.prefix + "…")), h("td", { class: "hide-sm" }, when(k.createdAt)),
        h("td", {}, k.revokedAt ? "revoked " + when(k.revokedAt) : "active"),
        h("td", {}, k.revokedAt ? "" : [h("button", { type: "button", class: "secondary", id: "revoke-" + k.id, onclick: () => { confirm.hidden = false; } }, "Revoke…"), " ", confirm]));
    }));
  }
  refresh();
  const d = await api("GET", "/v1/developer/devices");
  tokens.replaceChildren(...((d.body && d.body.data) || []).map((dev) => {
    const cell = h("td", {});
    return h("tr", {}, h("td", {}, dev.name, h("br"), h("code", {}, dev.deviceUid)), cell.appendChild(h("button", { type: "button", class: "secondary", onclick: async () => {
      const x = await api("POST", "/v1/developer/devices/" + encodeURIComponent(dev.deviceUid) + "/token");
      cell.replaceChildren(x.status < 300 ? secretBox("token-" + dev.deviceUid, "New instance token", x.body.data.instanceToken) : h("p", { class: "error" }, errorText(x)));
    } }, "Rotate token")) && cell);
  }));
}

// ---- routing ---------------------------------------------------------------------

async function route() {
  generation++;
  for (const t of timers) clearTimeout(t);
  timers = [];
  const hash = window.location.hash || "#/devices";
  const path = hash.slice(1).split("?")[0];
  const parts = path.split("/").filter(Boolean);
  const section = parts[0] || "devices";
  for (const a of document.querySelectorAll(".top nav a")) {
    if (a.getAttribute("href") === "#/" + (section === "device" ? "devices" : section === "message" ? "messages" : section)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  main.replaceChildren(h("p", {}, "Loading…"));
  try {
    if (section === "device" && parts[1]) await devicePage(decodeURIComponent(parts[1]));
    else if (section === "sandbox") await sandboxPage();
    else if (section === "messages") await messagesPage();
    else if (section === "message" && parts[1]) await messagePage(decodeURIComponent(parts[1]));
    else if (section === "webhooks") await webhooksPage();
    else if (section === "keys") await keysPage();
    else await devicesPage();
    document.title = (main.querySelector("h1") || {}).textContent + " · wagate";
  } catch (e) {
    if (e.message !== "signed out") main.replaceChildren(h("p", { class: "error" }, "Something went wrong: " + e.message));
  }
}

window.addEventListener("hashchange", () => { route(); main.focus(); });
route();
