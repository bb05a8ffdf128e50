// Live feedback, step changes, receipt updates, spoken prompts. The pages work without it.
(function () {
  "use strict";
  const body = document.body;
  const strings = JSON.parse(document.getElementById("strings").textContent || "{}");
  const s = (k, fallback) => strings[k] || fallback || k;
  const step = body.dataset.step, session = body.dataset.session;
  const live = document.getElementById("live");
  const score = document.getElementById("live-score");
  const banner = document.getElementById("device-banner");

  // A form that starts a capture: disable its button and say we are working.
  document.querySelectorAll("form.busy-form").forEach((f) => f.addEventListener("submit", () => {
    const b = f.querySelector("button"); setTimeout(() => { b.disabled = true; }, 0);
    if (live) live.textContent = s("live.working", "…");
  }));

  // Live device events (server-sent events from the device daemon).
  if (window.EventSource && step !== "welcome") {
    const es = new EventSource("/events");
    es.addEventListener("device", (e) => {
      const ev = JSON.parse(e.data);
      if (ev.topic === "face.feedback" && live) {
        const code = (ev.codes || [])[0] || "hold_still";
        live.textContent = s("feedback." + code, code);
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
    try {
      const r = await fetch("/state", { cache: "no-store" });
      const st = await r.json();
      if (st.step !== step || st.session_id !== session) { location.href = "/"; return; }
      const bad = !st.daemon_alive || st.devices_lost.length > 0;
      banner.classList.toggle("hidden", !bad);
    } catch (e) { banner.classList.remove("hidden"); }
  }
  if (!body.classList.contains("printable")) setInterval(poll, 2000);

  // The receipt follows the registry's decision while it is on screen.
  const receipt = document.getElementById("receipt");
  if (receipt && receipt.dataset.final !== "yes") {
    const id = receipt.dataset.packet;
    const timer = setInterval(async () => {
      try {
        const r = await fetch("/receipt/" + id + "/status", { cache: "no-store" });
        if (!r.ok) return;
        const st = await r.json();
        document.getElementById("receipt-status").textContent = st.message;
        document.getElementById("receipt-status").dataset.status = st.status || st.state;
        document.getElementById("idcs").textContent = st.idcs || "—";
        document.getElementById("qr").innerHTML = st.qr;
        if (st.state === "final") clearInterval(timer);
      } catch (e) { /* offline: keep the last state */ }
    }, 2000);
  }

  // Spoken prompts for people who do not read easily (when the browser can speak).
  const prompt = document.querySelector(".speak");
  if (prompt && window.speechSynthesis && step !== "welcome") {
    const btn = document.createElement("button");
    btn.type = "button"; btn.className = "btn ghost"; btn.textContent = "🔊";
    btn.setAttribute("aria-label", s("live.listen", "listen"));
    btn.addEventListener("click", () => {
      const u = new SpeechSynthesisUtterance(prompt.textContent);
      u.lang = document.documentElement.lang === "zgh" ? "fr" : document.documentElement.lang;
      speechSynthesis.cancel(); speechSynthesis.speak(u);
    });
    prompt.appendChild(btn);
  }
})();
