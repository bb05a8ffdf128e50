// Live feedback, spoken guidance, idle warning, step changes, receipt updates.
// Every page works without this script; it only adds what a person should not have to ask for.
(function () {
  "use strict";
  const body = document.body;
  const strings = JSON.parse(document.getElementById("strings").textContent || "{}");
  const s = (k, fallback) => strings[k] || fallback || k;
  const step = body.dataset.step, session = body.dataset.session, csrf = body.dataset.csrf;
  const voiceBase = body.dataset.voiceBase || "";
  const live = document.getElementById("live");
  const score = document.getElementById("live-score");
  const banner = document.getElementById("device-banner");
  const preview = document.getElementById("preview");
  const printable = body.classList.contains("printable");

  // ---- spoken guidance: pre-rendered audio of every step, problem and live instruction
  const player = new Audio();
  let queue = [];
  function say(url) {
    if (!url) return;
    queue.push(url);
    if (player.paused || player.ended) next();
  }
  function next() {
    const url = queue.shift();
    if (!url) return;
    player.src = url;
    player.play().catch(() => { queue = []; });
  }
  player.addEventListener("ended", next);
  player.addEventListener("error", next);
  window.kioskVoice = { played: [] };  // what was spoken (the browser tests read it)
  player.addEventListener("play", () => window.kioskVoice.played.push(player.src));
  if (!printable) {
    say(body.dataset.voice);
    document.querySelectorAll("#error[data-voice], #finger-prompt[data-voice], #receipt[data-voice]")
      .forEach((el) => say(el.dataset.voice));
    const h1 = document.querySelector("main h1");
    if (h1 && body.dataset.voice) {
      const b = document.createElement("button");
      b.type = "button"; b.className = "btn ghost listen"; b.id = "listen"; b.textContent = "🔊";
      b.setAttribute("aria-label", s("live.listen", "listen"));
      b.addEventListener("click", () => { queue = []; player.pause(); say(body.dataset.voice); });
      h1.appendChild(b);
    }
  }

  // ---- live instructions: at most one change a second, each one spoken once
  let shown = null, pending = null, lastChange = 0, timer = null;
  function instruct(code, text) {
    pending = { code, text };
    const wait = Math.max(0, 1000 - (Date.now() - lastChange));
    if (!timer) timer = setTimeout(flush, wait);
  }
  function flush() {
    timer = null;
    if (!pending || !live) return;
    if (pending.code !== shown) {
      live.textContent = pending.text;
      live.dataset.code = pending.code;
      shown = pending.code; lastChange = Date.now();
      say(voiceBase + pending.code + ".wav");
    }
    pending = null;
  }

  // A form that starts a capture: sent in the background, so the page stays alive with its
  // live preview and instructions while the device works; then the next page is shown.
  let leaving = false;  // a device is working: only its answer moves the page on
  document.querySelectorAll("form.busy-form").forEach((f) => f.addEventListener("submit", (e) => {
    e.preventDefault();
    if (leaving) return;
    leaving = true;
    const b = f.querySelector("button"); b.disabled = true;
    if (live) live.textContent = s("live.working", "…");
    fetch(f.action, { method: "POST", body: new FormData(f), redirect: "manual" })
      .catch(() => {})
      .then(() => { location.href = f.dataset.then || "/"; });
  }));

  // Live device events (server-sent events from the device daemon).
  if (window.EventSource && (step !== "welcome" || body.dataset.desk) && !printable) {
    const es = new EventSource("/events");
    es.addEventListener("device", (e) => {
      const ev = JSON.parse(e.data);
      if (ev.topic === "face.preview" && preview) {
        // the mirror: shown while the camera runs, never stored (replaced frame by frame)
        preview.src = "data:image/jpeg;base64," + ev.jpeg;
        preview.classList.remove("hidden");
      } else if (ev.topic === "face.feedback" && live) {
        const code = (ev.codes || [])[0] || "hold_still";
        instruct("feedback." + code, s("feedback." + code, code));
        if (score) score.style.width = Math.max(0, Math.min(100, ev.score || 0)) + "%";
      } else if (ev.topic === "finger.progress" && live) {
        live.textContent = s("live.finger_" + ev.state, ev.state);
      } else if (ev.topic === "device.lost" || ev.topic === "device.connected") {
        poll();
      }
    });
  }

  // Step / session changes made elsewhere (timeout, another tab) and device health.
  async function poll() {
    if (leaving) return;
    try {
      const r = await fetch("/state", { cache: "no-store" });
      const st = await r.json();
      if (leaving) return;
      if (st.step !== step || st.session_id !== session) { location.href = "/"; return; }
      const bad = !st.daemon_alive || st.devices_lost.length > 0;
      banner.classList.toggle("hidden", !bad);
    } catch (e) { banner.classList.remove("hidden"); }
  }
  if (!printable) setInterval(poll, 2000);

  // ---- "are you still there?" before the idle timeout; typing or touching resets it
  const warning = document.getElementById("idle-warning");
  const timeout = parseFloat(body.dataset.timeout || "0") * 1000;
  let idleSince = Date.now(), lastTouch = 0;
  function touched() {
    idleSince = Date.now();
    if (warning) warning.classList.add("hidden");
    if (Date.now() - lastTouch > 5000) {
      lastTouch = Date.now();
      const fd = new FormData(); fd.append("csrf", csrf);
      fetch("/touch", { method: "POST", body: fd }).catch(() => {});
    }
  }
  if (warning && timeout > 0) {
    ["input", "keydown", "pointerdown"].forEach((t) => document.addEventListener(t, touched, true));
    document.getElementById("still-here").addEventListener("click", () => { lastTouch = 0; touched(); });
    const lead = Math.min(30000, timeout / 3);
    setInterval(() => {
      if (Date.now() - idleSince > timeout - lead && warning.classList.contains("hidden")) {
        warning.classList.remove("hidden");
        say(voiceBase + "idle.warning.wav");
      }
    }, 500);
  }

  // ---- Cancel asks first: "No, continue" closes the question
  const cancelNo = document.getElementById("cancel-no");
  if (cancelNo) cancelNo.addEventListener("click", () => { document.getElementById("cancel-box").open = false; });

  // ---- printing goes straight to the printer (Chromium --kiosk-printing); no new tab
  const printButton = document.getElementById("print");
  if (printButton) printButton.addEventListener("click", () => window.print());

  // The receipt follows the registry's decision while it is on screen.
  const receipt = document.getElementById("receipt");
  if (receipt && receipt.dataset.final !== "yes" && !printable) {
    const id = receipt.dataset.packet;
    const timer2 = setInterval(async () => {
      try {
        const r = await fetch("/receipt/" + id + "/status", { cache: "no-store" });
        if (!r.ok) return;
        const st = await r.json();
        const box = document.getElementById("receipt-status");
        const before = box.dataset.status;
        document.getElementById("status-text").textContent = st.message;
        document.getElementById("status-icon").textContent = st.icon;
        box.dataset.status = st.status_key;
        receipt.className = "receipt status-" + st.status_key;
        document.getElementById("idcs").textContent = st.idcs || "—";
        const forDesk = document.getElementById("household-idcs");
        if (forDesk) forDesk.value = st.idcs || "";
        document.getElementById("qr").innerHTML = st.qr;
        if (before !== st.status_key) say(voiceBase + "receipt." + st.status_key + ".wav");
        if (st.state === "final") clearInterval(timer2);
      } catch (e) { /* offline: keep the last state */ }
    }, 2000);
  }
})();
