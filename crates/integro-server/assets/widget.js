/* Integro's web chat widget. A website embeds it with
 *   <script src="https://integro.example.com/widget.js" data-account="ACCOUNT_ID" data-key="ipk_…" defer></script>
 * It talks to the web channel's public mode (docs/web-chat.md): a visitor
 * session from the publishable key, the visitor's messages with the visitor
 * token, replies over server-sent events (polling when a stream is refused).
 * Everything lives in a shadow root: the page's styles do not reach it and
 * its styles do not leak out. No third-party assets; text is only ever set
 * as text, never parsed as HTML. Optional: data-title, data-greeting,
 * data-accent (a CSS colour). */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.dataset.account || !script.dataset.key) {
    if (window.console) console.error("Integro widget: set data-account and data-key on its script tag");
    return;
  }
  var account = script.dataset.account;
  var publishableKey = script.dataset.key;
  var title = script.dataset.title || "Chat with us";
  var greeting = script.dataset.greeting || "";
  var accent = script.dataset.accent || "#1f4fb8";
  var base = new URL(script.src, document.baseURI).origin + "/api/v1/web-public/" + encodeURIComponent(account);
  var stored = "integro-visitor:" + account;

  var css =
    ":host{all:initial}" +
    "*{box-sizing:border-box;font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif}" +
    ".toggle{position:fixed;right:20px;bottom:20px;z-index:2147483000;border:0;border-radius:999px;padding:12px 18px;background:var(--accent);color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25)}" +
    ".panel{position:fixed;right:20px;bottom:76px;z-index:2147483000;width:min(360px,calc(100vw - 40px));height:min(480px,calc(100vh - 110px));display:flex;flex-direction:column;background:#fff;color:#1d2433;border:1px solid #c9cfdb;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.2);overflow:hidden}" +
    ".panel[hidden]{display:none}" +
    "h2{margin:0;padding:12px 16px;font-size:16px;font-weight:600;background:var(--accent);color:#fff}" +
    "ol{list-style:none;margin:0;padding:12px;flex:1;overflow-y:auto;display:flex;flex-direction:column;gap:8px}" +
    "li{max-width:80%;padding:8px 12px;border-radius:10px;background:#eef1f6;white-space:pre-wrap;overflow-wrap:anywhere}" +
    "li.mine{align-self:flex-end;background:var(--accent);color:#fff}" +
    "li.note{align-self:center;background:none;color:#4a5366;font-size:13px}" +
    "form{display:flex;gap:8px;padding:10px;border-top:1px solid #e2e6ee}" +
    "label{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}" +
    "input{flex:1;min-width:0;padding:8px 10px;border:1px solid #8a93a6;border-radius:8px;color:#1d2433;background:#fff}" +
    "form button{border:0;border-radius:8px;padding:8px 14px;background:var(--accent);color:#fff;cursor:pointer}" +
    ":focus-visible{outline:3px solid #f2a900;outline-offset:2px}";

  var host = document.createElement("div");
  host.setAttribute("data-integro-widget", account);
  var root = host.attachShadow({ mode: "open" });
  if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet) {
    // A constructed sheet is not an inline style: pages whose CSP forbids
    // those still show the widget styled.
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    root.adoptedStyleSheets = [sheet];
  } else {
    var style = document.createElement("style");
    style.textContent = css;
    root.appendChild(style);
  }
  host.style.setProperty("--accent", accent);

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) node.textContent = text;
    return node;
  }

  var toggle = el("button", { type: "button", class: "toggle", "aria-expanded": "false", "aria-controls": "integro-panel" }, title);
  var panel = el("section", { id: "integro-panel", class: "panel", "aria-label": title });
  panel.hidden = true;
  var heading = el("h2", {}, title);
  var log = el("ol", { "aria-live": "polite", "aria-label": "Conversation" });
  var form = el("form", {});
  var label = el("label", { for: "integro-message" }, "Message");
  var input = el("input", { id: "integro-message", type: "text", maxlength: "4096", autocomplete: "off", required: "" });
  var send = el("button", { type: "submit" }, "Send");
  form.appendChild(label);
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(heading);
  panel.appendChild(log);
  panel.appendChild(form);
  root.appendChild(toggle);
  root.appendChild(panel);

  var token = null;
  var shown = {};
  var cursor = null;
  var stream = null;
  var polling = null;

  // The visitor's own messages are shown as they are sent; the server's
  // copy, read later, is recognised by its text and not shown twice.
  var sentTexts = [];

  function show(message) {
    if (shown[message.id]) return;
    shown[message.id] = true;
    if (message.direction === "inbound") {
      var at = sentTexts.indexOf(message.body);
      if (at !== -1) { sentTexts.splice(at, 1); return; }
    }
    var text = message.body || (message.media && message.media.length ? "(attachment)" : "");
    if (!text) return;
    log.appendChild(el("li", { class: message.direction === "inbound" ? "mine" : "reply" }, text));
    log.scrollTop = log.scrollHeight;
  }

  function note(text) {
    log.appendChild(el("li", { class: "note" }, text));
  }

  function call(method, path, body, extraHeaders) {
    var headers = { "content-type": "application/json" };
    if (token) headers.authorization = "Bearer " + token;
    Object.keys(extraHeaders || {}).forEach(function (k) { headers[k] = extraHeaders[k]; });
    return fetch(base + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined, credentials: "omit" })
      .then(function (res) {
        if (!res.ok) throw new Error(res.status + " " + res.statusText);
        return res.text().then(function (text) { return text ? JSON.parse(text) : null; });
      });
  }

  function startSession() {
    var kept = null;
    try { kept = window.localStorage.getItem(stored); } catch (e) { kept = null; }
    return call("POST", "/sessions", kept ? { visitor_token: kept } : {}, { "x-integro-publishable-key": publishableKey })
      .catch(function () {
        // A kept token that expired: start over as a new visitor.
        return call("POST", "/sessions", {}, { "x-integro-publishable-key": publishableKey });
      })
      .then(function (answer) {
        token = answer.visitor_token;
        try { window.localStorage.setItem(stored, token); } catch (e) { /* private mode */ }
      });
  }

  function readNew() {
    return call("GET", "/messages" + (cursor ? "?cursor=" + encodeURIComponent(cursor) : ""))
      .then(function (page) {
        page.items.forEach(show);
        if (page.next_cursor) cursor = page.next_cursor;
      });
  }

  function poll() {
    if (polling) return;
    polling = window.setInterval(function () { readNew().catch(function () {}); }, 3000);
  }

  function listen() {
    if (!window.EventSource) return poll();
    stream = new EventSource(base + "/events?token=" + encodeURIComponent(token));
    stream.addEventListener("message", function (event) {
      try { show(JSON.parse(event.data)); } catch (e) { /* not ours */ }
    });
    stream.onerror = function () {
      // Refused (too many streams) or closed for good: poll instead.
      if (stream.readyState === EventSource.CLOSED) poll();
    };
  }

  var ready = null;
  function open() {
    if (!ready) {
      if (greeting) note(greeting);
      ready = startSession().then(readNew).then(listen).catch(function () {
        ready = null;
        note("The chat is not available right now. Please try again later.");
      });
    }
    return ready;
  }

  toggle.addEventListener("click", function () {
    var opening = panel.hidden;
    panel.hidden = !opening;
    toggle.setAttribute("aria-expanded", String(opening));
    if (opening) {
      open();
      input.focus();
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    sentTexts.push(text);
    log.appendChild(el("li", { class: "mine" }, text));
    log.scrollTop = log.scrollHeight;
    var id = window.crypto && window.crypto.randomUUID ? window.crypto.randomUUID() : String(Date.now()) + Math.random();
    (open() || Promise.resolve())
      .then(function () { return call("POST", "/messages", { text: text, message_id: id }); })
      .then(function () { return readNew(); })
      .catch(function () { note("Your message could not be sent. Please try again."); input.value = text; });
  });

  function mount() { document.body.appendChild(host); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
