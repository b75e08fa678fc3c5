// Kerbside officers' page: open enforcement alerts, live over server-sent events.
// Signed in by a one-time link (/officer#signin=CODE) or a typed token, traded for a session
// on the server: an HttpOnly cookie this script never sees, ended at sign-out.
"use strict";

(function () {
  const ENFORCEMENT = new Set(["overstay", "unpaid", "expired", "suspended"]);
  const ACTIVE = new Set(["open", "acknowledged"]);
  const BAY_KIND = {
    paid: "Pay bay", resident: "Resident bay", limited: "Limited stay", loading: "Loading bay",
    disabled: "Disabled bay", free: "Free bay",
  };
  const TITLE = "Kerbside alerts";
  const SOUND_KEY = "kerbside.sound";
  const $ = (id) => document.getElementById(id);

  const state = {
    me: null,
    alerts: new Map(),     // alert_id -> record
    loaded: false,         // the first list is in: later arrivals are new
    fresh: new Set(),      // alert_ids that arrived since the officer last looked
    lastId: null,          // last change id received (resumes the stream)
    source: null,
    retryMs: 1000,
    retryTimer: null,
    position: null,        // {lat, lon} when the browser grants it
    watching: false,
    openResolve: null,     // alert_id whose resolve form is open (kept across re-renders)
    sound: false,          // the officer's choice (kept in localStorage)
    audio: null,           // AudioContext, made on a user gesture
  };

  // ---- HTTP ----------------------------------------------------------------------------
  async function api(method, path, body, token) {
    const headers = { "Accept": "application/json" };
    if (token) headers["Authorization"] = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { ok: response.ok, status: response.status, data, headers: response.headers };
  }

  function problem(result) {
    const d = result.data;
    if (d && typeof d.detail === "string") return d.detail;
    if (d && Array.isArray(d.detail) && d.detail.length) return (d.field || "") + ": " + d.detail[0].msg;
    return "Request failed (" + result.status + ")";
  }

  // ---- connection state ----------------------------------------------------------------
  function setConn(live, text) {
    const el = $("conn");
    el.textContent = text;
    el.classList.toggle("conn-live", live);
    el.classList.toggle("conn-off", !live);
  }

  // ---- sign in -------------------------------------------------------------------------
  function linkCode() {
    const match = /^#signin=([A-Za-z0-9_-]+)$/.exec(location.hash);
    return match ? match[1] : null;
  }

  function sentence(text) {
    const t = String(text || "");
    return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
  }

  async function start() {
    const code = linkCode();
    if (code !== null) {
      // Out of the address bar and history at once: the code works once anyway.
      history.replaceState(null, "", location.pathname + location.search);
      const result = await api("POST", "/api/v1/session", { code }).catch(() => null);
      if (!result) { showSignin("Cannot reach the server: open the link again when connected."); return; }
      if (!result.ok) { showSignin(sentence(problem(result)) + " Ask for a new sign-in link."); return; }
      signedIn(result.data);
      return;
    }
    const who = await api("GET", "/api/v1/session").catch(() => null);
    if (!who) { setConn(false, "Offline, reconnecting…"); setTimeout(start, 2000); return; }
    if (!who.ok) { showSignin(); return; }
    signedIn(who.data);
  }

  function showSignin(message) {
    stopStream();
    state.me = null;
    $("work").hidden = true;
    $("signin").hidden = false;
    $("count").textContent = "";
    setConn(false, "Signed out");
    const err = $("signin-error");
    err.hidden = !message;
    err.textContent = message || "";
    if ($("token-signin").open) $("token").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $("token");
    const token = input.value.trim();
    input.value = "";
    const result = await api("POST", "/api/v1/session", undefined, token).catch(() => null);
    if (!result) { showSignin("Cannot reach the server; try again."); return; }
    if (!result.ok) {
      showSignin(result.status === 401 ? "That token is not valid."
        : result.status === 403 ? "That token is not an officer's." : problem(result));
      return;
    }
    signedIn(result.data);
  }

  async function signOut() {
    stopStream();
    await api("DELETE", "/api/v1/session").catch(() => null);
    state.alerts.clear();
    state.fresh.clear();
    state.loaded = false;
    render();
    showSignin();
  }

  function signedIn(me) {
    state.me = me;
    $("officer-name").textContent = me.name;
    $("signed-in-until").textContent = me.expires_at ? " until " + clock(me.expires_at) : "";
    $("signin").hidden = true;
    $("work").hidden = false;
    loadZones();
    reload();
  }

  async function loadZones() {
    const result = await api("GET", "/api/v1/zones").catch(() => null);
    if (!result || !result.ok) return;
    const select = $("zone");
    const chosen = select.value;
    select.replaceChildren(new Option("All zones", ""));
    for (const z of result.data) select.add(new Option(z.name ? z.zone_id + " " + z.name : z.zone_id, z.zone_id));
    select.value = chosen;
  }

  // ---- alerts: snapshot, then the stream -------------------------------------------------
  async function fetchAll(status) {
    const items = [];
    let cursor = null;
    let first = null;
    do {
      const q = new URLSearchParams({ status, limit: "1000" });
      if (cursor) q.set("cursor", cursor);
      const result = await api("GET", "/api/v1/alerts?" + q);
      if (!result.ok) throw result;
      if (first === null) first = Number(result.headers.get("X-Last-Event-ID") || "0");
      items.push(...result.data.items);
      cursor = result.data.next_cursor;
    } while (cursor);
    return { items, lastId: first };
  }

  async function reload() {
    stopStream();
    try {
      const open = await fetchAll("open");
      const acked = await fetchAll("acknowledged");
      const before = new Set(state.alerts.keys());
      state.alerts.clear();
      let arrived = 0;
      for (const a of open.items.concat(acked.items)) {
        if (upsert(a) && state.loaded && !before.has(a.alert_id)) { state.fresh.add(a.alert_id); arrived++; }
      }
      state.loaded = true;
      state.lastId = Math.min(open.lastId, acked.lastId);
      render();
      if (arrived) signal();
      openStream();
    } catch (failure) {
      if (failure && failure.status === 401) { showSignin("Please sign in again."); return; }
      offline();
    }
  }

  function openStream() {
    stopStream();
    const q = state.lastId === null ? "" : "?since=" + state.lastId;
    const source = new EventSource("/api/v1/alerts/stream" + q);
    state.source = source;
    source.onopen = () => { state.retryMs = 1000; setConn(true, "Live"); };
    source.addEventListener("alert", (event) => {
      if (event.lastEventId) state.lastId = Number(event.lastEventId);
      const alert = JSON.parse(event.data);
      const known = state.alerts.has(alert.alert_id);
      if (upsert(alert) && !known && alert.status === "open") {
        state.fresh.add(alert.alert_id);
        signal();
      }
      render();
    });
    source.addEventListener("reset", () => { state.lastId = null; reload(); });
    source.addEventListener("signed-out", () => {
      stopStream();
      state.alerts.clear();
      state.fresh.clear();
      render();
      showSignin("You have been signed out: your sign-in ended or was withdrawn.");
    });
    source.onerror = () => {
      setConn(false, "Offline, reconnecting…");
      // The browser retries by itself after a dropped stream; after a refused or failed
      // response it gives up (CLOSED), so we start again, resuming from the last id.
      if (source.readyState === EventSource.CLOSED) offline();
    };
  }

  function stopStream() {
    if (state.source) { state.source.close(); state.source = null; }
    if (state.retryTimer) { clearTimeout(state.retryTimer); state.retryTimer = null; }
  }

  function offline() {
    stopStream();
    setConn(false, "Offline, reconnecting…");
    state.retryTimer = setTimeout(async () => {
      state.retryTimer = null;
      const who = await api("GET", "/api/v1/session").catch(() => null);
      if (who && who.status === 401) { showSignin("Please sign in again."); return; }
      if (!who || !who.ok) { state.retryMs = Math.min(state.retryMs * 2, 15000); offline(); return; }
      if (state.lastId === null) reload(); else openStream();
    }, state.retryMs);
  }

  // True when the alert is (still) one for the list.
  function upsert(alert) {
    if (!ENFORCEMENT.has(alert.kind) || !ACTIVE.has(alert.status)) {
      state.alerts.delete(alert.alert_id);
      state.fresh.delete(alert.alert_id);
      if (state.openResolve === alert.alert_id) state.openResolve = null;
      return false;
    }
    state.alerts.set(alert.alert_id, alert);
    return true;
  }

  // ---- a new alert: sound and vibration (when the officer turned them on), title count ---
  function signal() {
    showTitle();
    if (!state.sound) return;
    if (navigator.vibrate) navigator.vibrate([200, 100, 200]);
    beep();
  }

  function beep() {
    const ctx = state.audio;
    if (!ctx) return;
    if (ctx.state === "suspended") ctx.resume();
    const t = ctx.currentTime + 0.01;
    for (const [at, hz] of [[0, 880], [0.25, 1175]]) {
      const tone = ctx.createOscillator();
      const gain = ctx.createGain();
      tone.frequency.value = hz;
      gain.gain.setValueAtTime(0.0001, t + at);
      gain.gain.exponentialRampToValueAtTime(0.5, t + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.2);
      tone.connect(gain).connect(ctx.destination);
      tone.start(t + at);
      tone.stop(t + at + 0.22);
    }
  }

  // Browsers let a page make sound only after a gesture: the AudioContext is made in one.
  function ensureAudio() {
    if (!state.sound || state.audio) return;
    const Context = window.AudioContext || window.webkitAudioContext;
    if (Context) state.audio = new Context();
  }

  function setSound(on) {
    state.sound = on;
    $("sound").setAttribute("aria-checked", String(on));
    try { localStorage.setItem(SOUND_KEY, on ? "on" : "off"); } catch (e) { /* private mode */ }
    if (on) { ensureAudio(); beep(); if (navigator.vibrate) navigator.vibrate(100); }
  }

  function showTitle() {
    const n = state.fresh.size;
    document.title = n ? "(" + n + " new) " + TITLE : TITLE;
  }

  // The officer is looking: what arrived is no longer new.
  function seen() {
    ensureAudio();
    if (document.visibilityState !== "visible" || state.fresh.size === 0) return;
    state.fresh.clear();
    showTitle();
    for (const li of $("alerts").querySelectorAll("li.new")) {
      li.classList.remove("new");
      li.querySelector(".new-badge").hidden = true;
    }
  }

  // ---- officer actions -------------------------------------------------------------------
  async function act(alertId, action, body, button) {
    const err = $("action-error");
    err.hidden = true;
    if (button) button.disabled = true;
    const result = await api("POST", "/api/v1/alerts/" + encodeURIComponent(alertId) + "/" + action, body)
      .catch(() => null);
    if (button) button.disabled = false;
    if (!result) { err.textContent = "Offline: not sent. Try again when connected."; err.hidden = false; return; }
    if (!result.ok) {
      if (result.status === 409) { state.alerts.delete(alertId); render(); }
      err.textContent = problem(result);
      err.hidden = false;
      return;
    }
    if (action === "resolve") state.openResolve = null;
    upsert(result.data);
    render();
    if (action === "ack") {
      // The Acknowledge button is gone now: keep the officer's place on the same alert.
      const li = $("alerts").querySelector('li[data-alert-id="' + CSS.escape(alertId) + '"]');
      if (li) li.querySelector(".resolve-open").focus();
    }
  }

  // ---- words -------------------------------------------------------------------------------
  function span(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min";
    const h = Math.floor(m / 60);
    return h + " h " + String(m % 60).padStart(2, "0") + " min";
  }

  function minutes(n) {
    if (n < 60) return n + " min";
    return Math.floor(n / 60) + " h" + (n % 60 ? " " + (n % 60) + " min" : "");
  }

  function clock(iso) {
    const at = new Date(iso);
    const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    if (at.toDateString() === new Date().toDateString()) return time;
    return at.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" }) + " " + time;
  }

  // The alert's name as an officer says it: a resident bay without a permit is "No permit".
  function kindLabel(a) {
    const permit = a.bay_kind === "resident" || a.right_kind === "permit";
    switch (a.kind) {
      case "unpaid": return a.bay_kind === "resident" ? "No permit" : "Unpaid";
      case "expired": return permit ? "Permit expired" : "Expired";
      case "overstay": return "Overstay";
      case "suspended": return "Suspended bay";
      default: return a.kind;
    }
  }

  function bayRules(a) {
    const kind = BAY_KIND[a.bay_kind] || (a.bay_kind ? a.bay_kind + " bay" : "");
    const stay = a.max_stay_minutes ? "max " + minutes(a.max_stay_minutes) : "";
    return [kind, stay].filter(Boolean).join(", ");
  }

  // The payment or permit held during the stay, as the API found it; none said where the bay
  // needs one (an unpaid alert's name says it already).
  function rightHeld(a) {
    if (a.right_until) {
      const word = a.right_kind === "permit" ? "Permit" : "Paid";
      return { text: word + " until " + clock(a.right_until), ended: Date.parse(a.right_until) <= Date.now() };
    }
    if (a.kind === "unpaid") return { text: "", ended: false };
    if (a.bay_kind === "resident") return { text: "No permit", ended: false };
    if (a.bay_kind === "paid") return { text: "No payment", ended: false };
    return { text: "", ended: false };
  }

  function showRight(el, held) {
    el.textContent = held.text;
    el.classList.toggle("ended", held.ended);
    if (held.ended) {
      const said = document.createElement("span");
      said.className = "visually-hidden";
      said.textContent = " (ended)";  // the colour says it on screen
      el.append(said);
    }
  }

  function directions(a) {
    if (!a.location) return null;
    const at = a.location.lat + "," + a.location.lon;
    return "geo:" + at + "?q=" + at + "(" + encodeURIComponent(a.bay_id || "") + ")";
  }

  function metres(a) {
    if (!state.position || !a.location) return null;
    const rad = Math.PI / 180;
    const dLat = (a.location.lat - state.position.lat) * rad;
    const dLon = (a.location.lon - state.position.lon) * rad;
    const x = Math.sin(dLat / 2) ** 2 +
      Math.cos(state.position.lat * rad) * Math.cos(a.location.lat * rad) * Math.sin(dLon / 2) ** 2;
    return 6371000 * 2 * Math.atan2(Math.sqrt(x), Math.sqrt(1 - x));
  }

  function distance(d) {
    if (d === null) return "";
    return d < 1000 ? Math.round(d) + " m" : (d / 1000).toFixed(1) + " km";
  }

  // ---- rendering -------------------------------------------------------------------------
  function nearestFirst() { return $("order").value === "nearest"; }

  function visible() {
    const zone = $("zone").value;
    const kind = $("kind").value;
    const list = [...state.alerts.values()].filter(
      (a) => (!zone || a.zone_id === zone) && (!kind || a.kind === kind));
    const byAge = (a, b) => a.raised_at.localeCompare(b.raised_at) || a.alert_id.localeCompare(b.alert_id);
    if (nearestFirst() && state.position) {
      list.sort((a, b) => ((metres(a) ?? Infinity) - (metres(b) ?? Infinity)) || byAge(a, b));
    } else {
      list.sort(byAge);
    }
    return list;
  }

  function render() {
    const ul = $("alerts");
    const focusedId = document.activeElement && document.activeElement.closest("li")
      ? document.activeElement.closest("li").dataset.alertId : null;
    const focusedClass = focusedId ? document.activeElement.className : null;
    const list = visible();
    const template = $("alert-template");
    const nodes = list.map((a) => {
      const existing = ul.querySelector('li[data-alert-id="' + CSS.escape(a.alert_id) + '"]');
      const li = existing || template.content.firstElementChild.cloneNode(true);
      fill(li, a);
      return li;
    });
    ul.replaceChildren(...nodes);
    if (focusedId) {
      const li = ul.querySelector('li[data-alert-id="' + CSS.escape(focusedId) + '"]');
      const target = li && focusedClass ? li.getElementsByClassName(focusedClass.split(" ")[0])[0] : null;
      if (target) target.focus();
    }
    const n = list.length;
    const all = state.alerts.size;
    const noun = (k) => (k === 1 ? " open alert" : " open alerts");
    $("count").textContent = n === 0 && all === 0 ? "No open alerts."
      : n === all ? n + noun(n) : n + " of " + all + noun(all);
    const filters = Number(Boolean($("zone").value)) + Number(Boolean($("kind").value));
    $("filters-active").textContent = filters ? " (" + filters + ")" : "";
    showTitle();
  }

  function fill(li, a) {
    const fresh = li.dataset.alertId !== a.alert_id;
    li.dataset.alertId = a.alert_id;
    li.classList.toggle("acknowledged", a.status === "acknowledged");
    const isNew = state.fresh.has(a.alert_id);
    li.classList.toggle("new", isNew);
    li.querySelector(".new-badge").hidden = !isNew;
    const titleId = "t-" + a.alert_id.replace(/[^A-Za-z0-9_-]/g, "_");
    const h3 = li.querySelector(".title");
    h3.id = titleId;
    li.querySelector("article").setAttribute("aria-labelledby", titleId);
    const label = kindLabel(a);
    li.querySelector(".kind").textContent = label;
    li.querySelector(".bay").textContent = a.bay_id || "";
    li.querySelector(".street").textContent = [a.street, a.zone_id].filter(Boolean).join(", ");
    li.querySelector(".distance").textContent = distance(metres(a));
    const go = li.querySelector(".directions");
    const href = directions(a);
    go.hidden = href === null;
    if (href) {
      go.href = href;
      go.setAttribute("aria-label", "Directions to bay " + a.bay_id);
    }
    const parked = li.querySelector(".parked");
    if (a.session_start) parked.dataset.since = a.session_start; else delete parked.dataset.since;
    const age = li.querySelector(".age");
    age.dataset.raised = a.raised_at;
    tickCard(li);
    li.querySelector(".bay-kind").textContent = bayRules(a);
    const held = rightHeld(a);
    showRight(li.querySelector(".right"), held);
    li.querySelector(".rules").hidden = !bayRules(a) && !held.text;
    li.querySelector(".state").hidden = a.status !== "acknowledged";
    const ack = li.querySelector(".ack");
    ack.hidden = a.status === "acknowledged";
    ack.setAttribute("aria-label", "Acknowledge " + label + " at bay " + a.bay_id);
    const openBtn = li.querySelector(".resolve-open");
    openBtn.setAttribute("aria-label", "Resolve " + label + " at bay " + a.bay_id);
    const form = li.querySelector("form.resolve");
    form.hidden = state.openResolve !== a.alert_id;
    openBtn.setAttribute("aria-expanded", String(!form.hidden));
    if (fresh) {
      ack.onclick = () => act(a.alert_id, "ack", { officer: state.me.name }, ack);
      openBtn.onclick = () => {
        state.openResolve = state.openResolve === a.alert_id ? null : a.alert_id;
        render();
        const first = li.querySelector('form.resolve input[name="outcome"]');
        if (first && state.openResolve) first.focus();
      };
      li.querySelector(".resolve-cancel").onclick = () => { state.openResolve = null; render(); openBtn.focus(); };
      form.onsubmit = (event) => {
        event.preventDefault();
        const outcome = form.querySelector('input[name="outcome"]:checked');
        if (!outcome) return;
        const note = form.querySelector("textarea").value.trim();
        act(a.alert_id, "resolve", { officer: state.me.name, outcome: outcome.value, note: note || null },
          form.querySelector('button[type="submit"]'));
      };
    }
  }

  function tickCard(li) {
    const now = Date.now();
    const parked = li.querySelector(".parked");
    parked.textContent = parked.dataset.since ? "Parked " + span(now - Date.parse(parked.dataset.since)) : "";
    const age = li.querySelector(".age");
    age.textContent = "raised " + span(now - Date.parse(age.dataset.raised)) + " ago";
  }

  function tick() {
    for (const li of $("alerts").children) tickCard(li);
  }

  // ---- location --------------------------------------------------------------------------
  function watchLocation() {
    const geo = $("geo");
    if (state.watching) return;
    if (!("geolocation" in navigator)) {
      geo.textContent = "This browser cannot give your location: showing oldest first.";
      return;
    }
    state.watching = true;
    navigator.geolocation.watchPosition(
      (pos) => {
        state.position = { lat: pos.coords.latitude, lon: pos.coords.longitude };
        geo.textContent = nearestFirst() ? "Using your location (±" + Math.round(pos.coords.accuracy) + " m)." : "";
        render();
      },
      () => {
        state.position = null;
        state.watching = false;
        geo.textContent = "Location not available: showing oldest first.";
        render();
      },
      { enableHighAccuracy: true, maximumAge: 15000, timeout: 20000 });
  }

  function onOrderChange() {
    if (nearestFirst()) watchLocation(); else $("geo").textContent = "";
    if (nearestFirst() && state.position) $("geo").textContent = "Using your location.";
    render();
  }

  function toggleFilters() {
    const button = $("filters-toggle");
    const open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(open));
    $("filters").hidden = !open;
    if (open) $("zone").focus();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    $("zone").addEventListener("change", render);
    $("kind").addEventListener("change", render);
    $("order").addEventListener("change", onOrderChange);
    $("filters-toggle").addEventListener("click", toggleFilters);
    $("sound").addEventListener("click", () => setSound(!state.sound));
    $("filters").addEventListener("submit", (e) => e.preventDefault());
    try { state.sound = localStorage.getItem(SOUND_KEY) === "on"; } catch (e) { state.sound = false; }
    $("sound").setAttribute("aria-checked", String(state.sound));
    for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, seen, true);
    document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") showTitle(); });
    setInterval(tick, 1000);
    window.addEventListener("online", () => { if (!state.source && state.me) offline(); });
    window.addEventListener("hashchange", () => { if (linkCode() !== null) { stopStream(); start(); } });
    start();
  });
})();
