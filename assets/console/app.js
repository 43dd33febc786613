// warmline agent console: signs in over the console WebSocket, shows the
// screen-pop (the caller's handoff context) the moment a call is queued, and
// carries the agent's headset audio over WebRTC (Opus) to the gateway.
// Protocol: docs/agent-protocol.md, "Human agent console". No build step.

import { meter, SOUND } from "/console/meter.js";

const $ = (id) => document.getElementById(id);

/** What the page is doing, readable by tests and by anyone in devtools. */
const state = {
  agent: null,
  phase: "signed-out", // signed-out | idle | offered | whisper | in-call | wrapup
  presence: null,      // the gateway's word: available | ringing | busy | wrap_up | break | not_ready | offline
  callId: null,
  lastCallId: null,
  withdrawn: [],       // {callId, reason} of every offer taken back
  wrapup: null,        // the call owed a wrap-up: {callId, name, number, started, ended}
  events: [],          // every console event name received, in order
  audioConnected: false,
  // 50 ms windows of sound heard per phase, and the loudest RMS per phase.
  heard: { whisper: 0, "in-call": 0, other: 0 },
  peak: { whisper: 0, "in-call": 0, other: 0 },
  errors: [],
};
window.warmline = state;

let ws = null;
let pc = null;
let mic = null;

const PRESENCE = {
  available: "Available", ringing: "Ringing", busy: "On call", wrap_up: "Wrap-up",
  break: "On a break", not_ready: "Not ready", offline: "Offline",
};
const WITHDRAWN = {
  ring_timeout: "You did not answer in time, so the call went on to the next agent. You are Not ready until you set yourself Available.",
  declined: "You declined the call.",
  caller_hangup: "The caller hung up before you answered.",
  callback_chosen: "The caller chose a callback instead of waiting.",
  agent_gone: "The offer ended when your console disconnected.",
  call_lost: "The call was lost on its gateway node; it is saved as a callback.",
};
const TITLE = document.title;

// Every timer on screen (ring countdown, call, wrap-up) ticks from here.
const clock = { ringEnds: 0, callStarted: 0, wrapupEnds: 0, holdStarted: 0 };
function mmss(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}
function tickClock() {
  const now = Date.now();
  if (state.phase === "offered" && clock.ringEnds) {
    const left = (clock.ringEnds - now) / 1000;
    $("ring-countdown").textContent = left > 0 ? `Answer within ${mmss(left)}` : "Moving to the next agent…";
    document.title = (Math.floor(now / 700) % 2 ? "📞 Incoming call · " : "☎ Answer · ") + TITLE;
  }
  if ((state.phase === "whisper" || state.phase === "in-call") && clock.callStarted) {
    $("call-timer").textContent = mmss((now - clock.callStarted) / 1000);
  }
  if (clock.holdStarted) $("hold-timer").textContent = `On hold ${mmss((now - clock.holdStarted) / 1000)}`;
  if (state.presence === "wrap_up" && clock.wrapupEnds) {
    $("wrapup-left").textContent = `Wrap-up time left: ${mmss((clock.wrapupEnds - now) / 1000)} (no calls are offered to you until you save or it ends).`;
  }
}
setInterval(tickClock, 250);

// A ring tone (two tones, 1 s on, 2 s off) while an offer waits.
let ringer = null;
function startRinging() {
  stopRinging();
  try {
    const ctx = new AudioContext();
    const gain = ctx.createGain();
    gain.gain.value = 0;
    gain.connect(ctx.destination);
    for (const f of [440, 480]) {
      const o = ctx.createOscillator();
      o.frequency.value = f;
      o.connect(gain);
      o.start();
    }
    const t0 = ctx.currentTime;
    for (let k = 0; k < 20; k++) {
      gain.gain.setValueAtTime(0.08, t0 + k * 3);
      gain.gain.setValueAtTime(0, t0 + k * 3 + 1);
    }
    ringer = ctx;
  } catch (e) { /* no audio output: the title and countdown still show it */ }
}
function stopRinging() {
  if (ringer) ringer.close().catch(() => {});
  ringer = null;
  document.title = TITLE;
  clock.ringEnds = 0;
}

function notify(text) {
  if (!("Notification" in window) || Notification.permission !== "granted" || !document.hidden) return;
  try { new Notification("warmline", { body: text, tag: "warmline-offer" }); } catch (e) { /* not allowed */ }
}

function showPresence(status, wrapUp) {
  state.presence = status;
  const pill = $("presence-status");
  pill.textContent = PRESENCE[status] || status;
  pill.className = "pill state " + status;
  if (["available", "break", "offline"].includes(status)) $("presence-choice").value = status;
  if (status === "not_ready") $("presence-choice").value = "";
  if (wrapUp) {
    clock.wrapupEnds = wrapUp.secondsLeft === undefined ? 0 : Date.now() + wrapUp.secondsLeft * 1000;
    if (!state.wrapup || state.wrapup.callId !== wrapUp.callId) {
      state.wrapup = loadWrapup(wrapUp.callId) || { callId: wrapUp.callId };
    }
    if (wrapUp.secondsLeft === undefined) $("wrapup-left").textContent = "No calls are offered to you until you save the wrap-up.";
    if (state.phase === "idle") setPhase("wrapup");
  } else {
    clock.wrapupEnds = 0;
    $("wrapup-left").textContent = "";
  }
}

// Wrap-up drafts live in local storage until saved: a reload or a crash loses nothing.
const draftKey = (callId) => `warmline.wrapup.${state.agent}.${callId}`;
function saveDraft() {
  if (!state.wrapup) return;
  const draft = {
    ...state.wrapup,
    resolved: $("w-resolved").checked,
    callerRepeated: $("w-repeated").checked,
    contextAccurate: $("w-accurate").checked,
    notes: $("w-notes").value,
    disposition: $("w-disposition").value,
  };
  state.wrapup = draft;
  try { localStorage.setItem(draftKey(draft.callId), JSON.stringify(draft)); } catch (e) { /* storage full or off */ }
}
function loadWrapup(callId) {
  try { return JSON.parse(localStorage.getItem(draftKey(callId)) || "null"); } catch (e) { return null; }
}
function showWrapup() {
  const w = state.wrapup;
  if (!w) return;
  const who = [w.name, w.number].filter(Boolean).join(" · ");
  const took = w.started && w.ended ? ` · ${mmss((w.ended - w.started) / 1000)}` : "";
  $("wrapup-call").textContent = `${who || "Caller"} · call ${w.callId}${took}`;
  $("w-resolved").checked = !!w.resolved;
  $("w-repeated").checked = !!w.callerRepeated;
  $("w-accurate").checked = w.contextAccurate !== false;
  $("w-notes").value = w.notes || "";
  $("w-disposition").value = w.disposition || "";
}

function showError(message) {
  state.errors.push(message);
  const box = $("errors");
  box.textContent = message;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { box.textContent = ""; }, 8000);
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function setPhase(phase) {
  state.phase = phase;
  $("idle").hidden = phase !== "idle";
  $("offer").hidden = !["offered", "whisper", "in-call"].includes(phase);
  $("offer-actions").hidden = phase !== "offered";
  $("whisper-actions").hidden = phase !== "whisper";
  $("call-actions").hidden = !["whisper", "in-call"].includes(phase);
  $("wrapup").hidden = phase !== "wrapup";
  $("call-notes-box").hidden = !["whisper", "in-call"].includes(phase);
  $("ring-countdown").hidden = phase !== "offered";
  if (phase !== "offered") stopRinging();
  if (phase === "wrapup") showWrapup();
  const text = {
    offered: "Ringing you — accept to hear a short whisper brief, then the caller.",
    whisper: "Whisper brief playing — only you hear it; the caller is on hold.",
    "in-call": "Connected to the caller.",
  }[phase] || "";
  $("call-state").textContent = text;
  $("offer-title").textContent = phase === "offered" ? "Incoming call" : "Call";
}

// A list, and its box hidden when there is nothing to show (no empty cards).
function list(id, items) {
  const ul = $(id);
  ul.replaceChildren(...items.map((t) => {
    const li = document.createElement("li");
    li.textContent = t;
    return li;
  }));
  const box = $(id + "-box");
  if (box) box.hidden = items.length === 0;
}

const TRIGGERS = {
  customer_request: "Caller asked for a person",
  authority_limit: "Beyond what the AI may approve",
  complexity: "Too complex for the AI",
  policy: "Policy needs a person",
  repeated_failure: "The AI kept failing",
};
// `order_status` → "Order status" (intents are the AI's codes).
const plain = (code) => {
  const s = String(code || "").replace(/[_-]+/g, " ").trim();
  return s ? s[0].toUpperCase() + s.slice(1) : "";
};
// "0:42" into the call for an RFC 3339 time, from the call's start.
function offset(at, start) {
  const t = Date.parse(at), s = Date.parse(start);
  return Number.isFinite(t) && Number.isFinite(s) ? mmss((t - s) / 1000) : "";
}
const sentimentColour = (score) => (score <= -0.2 ? "#a93226" : score >= 0.2 ? "#1e8449" : "#7b7d7d");
function describeSentiment(points) {
  if (!points.length) return "No sentiment measured yet.";
  const word = (x) => (x <= -0.5 ? "upset" : x <= -0.2 ? "negative" : x >= 0.5 ? "happy" : x >= 0.2 ? "positive" : "neutral");
  const first = points[0].score, last = points[points.length - 1].score;
  const low = Math.min(...points.map((p) => p.score));
  const trend = last - first <= -0.2 ? "falling" : last - first >= 0.2 ? "rising" : "steady";
  const dip = low < Math.min(first, last) - 0.2 ? `, dipped to ${low.toFixed(1)}` : "";
  return `Caller started ${word(first)}${dip}, now ${word(last)} (${last.toFixed(1)}, ${trend}).`;
}

// "order_lookup(orderId: 8821) → status: shipped" — failed calls marked.
function toolLine(t) {
  const brief = (v) => {
    if (v === null || v === undefined) return "";
    if (typeof v !== "object") return String(v);
    return Object.entries(v).map(([k, x]) => `${k}: ${typeof x === "object" ? JSON.stringify(x) : x}`).join(", ");
  };
  const failed = t.ok === false ? "FAILED: " : "";
  const result = brief(t.result);
  return `${failed}${t.tool}(${brief(t.args)})${result ? " → " + result : ""}`.slice(0, 300);
}

// The caller's sentiment per turn on a −1…+1 axis; each point coloured by its
// own score (a fall then a rise is not painted green), with a tooltip each.
function drawSentiment(points, start) {
  const svg = $("sentiment");
  const ns = "http://www.w3.org/2000/svg";
  const el = (name, attrs, text) => {
    const e = document.createElementNS(ns, name);
    Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, v));
    if (text) e.textContent = text;
    return e;
  };
  const y = (score) => 35 - Math.max(-1, Math.min(1, score)) * 28;
  svg.replaceChildren(
    el("line", { x1: 22, y1: y(0), x2: 218, y2: y(0), stroke: "#aab7b8", "stroke-dasharray": "3 3" }),
    el("line", { x1: 22, y1: y(1), x2: 22, y2: y(-1), stroke: "#aab7b8" }),
    el("text", { x: 0, y: y(1) + 4, "font-size": 9, fill: "#5d6d7e" }, "+1"),
    el("text", { x: 6, y: y(0) + 3, "font-size": 9, fill: "#5d6d7e" }, "0"),
    el("text", { x: 2, y: y(-1) + 2, "font-size": 9, fill: "#5d6d7e" }, "−1"),
  );
  $("sentiment-text").textContent = describeSentiment(points);
  svg.setAttribute("aria-label", describeSentiment(points));
  if (!points.length) return;
  const step = points.length > 1 ? 186 / (points.length - 1) : 0;
  const xy = points.map((p, i) => [28 + i * step, y(p.score)]);
  svg.append(el("polyline", { points: xy.map((p) => p.join(",")).join(" "), fill: "none", stroke: "#85929e", "stroke-width": 1.5 }));
  points.forEach((p, i) => {
    const dot = el("circle", { cx: xy[i][0], cy: xy[i][1], r: 3.5, fill: sentimentColour(p.score) });
    dot.append(el("title", {}, `${offset(p.at, start) || "turn " + (i + 1)}: ${p.score.toFixed(2)}`));
    svg.append(dot);
  });
}

function renderContext(callId, urgency, ctx) {
  const customer = ctx.customer || {};
  const intent = ctx.intent || {};
  const reason = ctx.escalationReason || {};
  $("urgency").textContent = urgency;
  $("urgency").className = "badge " + urgency;
  $("c-name").textContent = customer.name || "Unknown caller";
  $("c-verification").textContent = plain(customer.verificationStatus || "unverified");
  $("c-channel").textContent = plain(customer.channel || "voice");
  // One line to read at a glance: who, verified, number, customer id, waiting since.
  const waited = ctx.escalatedAt ? Math.max(0, (Date.now() - Date.parse(ctx.escalatedAt)) / 1000) : null;
  $("caller-line").textContent = [
    customer.name || "Unknown caller",
    customer.verificationStatus === "verified" ? "verified" : "not verified",
    customer.contactInfo || "",
    customer.id ? "customer " + customer.id : "",
    waited !== null && Number.isFinite(waited) ? "waited " + mmss(waited) + " for a person" : "",
  ].filter(Boolean).join(" · ");
  $("reason-trigger").textContent = TRIGGERS[reason.trigger] || plain(reason.trigger) || "—";
  $("reason-text").textContent = reason.description || "";
  $("intent").textContent = plain(intent.primary) || "Not known yet";
  $("next-action").textContent = ctx.suggestedNextAction || "—";
  list("resolved", intent.resolvedItems || []);
  list("unresolved", intent.unresolvedItems || []);
  list("tools", (ctx.toolsUsed || []).map(toolLine));
  list("attempts", ctx.attemptedResolutions || []);
  $("progress-card").hidden = $("resolved-box").hidden && $("unresolved-box").hidden;
  $("summary").textContent = ctx.summary || "";
  $("transcript").replaceChildren(...(ctx.transcript || []).map((t) => {
    const li = document.createElement("li");
    const ai = t.role === "agent";
    li.className = ai ? "ai" : "caller";
    const when = offset(t.timestamp, ctx.startedAt);
    if (when) {
      const time = document.createElement("time");
      time.dateTime = t.timestamp;
      time.textContent = when;
      li.append(time);
    }
    li.append(`${ai ? "AI" : "Caller"}: ${t.content}`);
    return li;
  }));
  drawSentiment(ctx.sentimentArc || [], ctx.startedAt);
}

// What the headset receives, booked to the phase it arrived in.
function onLevel(rms) {
  const bucket = state.phase === "whisper" || state.phase === "in-call" ? state.phase : "other";
  if (rms > SOUND) state.heard[bucket] += 1;
  state.peak[bucket] = Math.max(state.peak[bucket], rms);
  $("whisper-indicator").classList.toggle("quiet", state.phase === "whisper" && rms <= SOUND);
}

async function startAudio() {
  try {
    // ?processing=off: the headset does its own echo cancellation and gain
    // (many contact-centre headsets do), so the browser leaves the voice alone.
    const processing = new URLSearchParams(location.search).get("processing") !== "off";
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing },
    });
  } catch (e) {
    showError("No microphone: " + e.message + ". You can take calls but the caller will not hear you.");
  }
  pc = new RTCPeerConnection();
  if (mic) {
    mic.getAudioTracks().forEach((t) => pc.addTrack(t, mic));
    // The agent sees their own level (and that nothing leaves while muted).
    meter(mic, (rms) => {
      const muted = $("mute").getAttribute("aria-pressed") === "true";
      $("mic-level").value = muted ? 0 : Math.min(1, rms * 8);
    });
  }
  else pc.addTransceiver("audio", { direction: "recvonly" });
  pc.ontrack = (e) => {
    const stream = e.streams[0] || new MediaStream([e.track]);
    $("remote-audio").srcObject = stream;
    meter(stream, onLevel);
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed") showError("Headset audio failed (ICE). Reconnect or check the network.");
  };
  await pc.setLocalDescription(await pc.createOffer());
  // All host candidates in the offer: the gateway answers with its own.
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);
  });
  send({ event: "webrtc_offer", sdp: pc.localDescription.sdp });
}

function onEvent(msg) {
  state.events.push(msg.event);
  switch (msg.event) {
    case "connected":
      state.agent = msg.agentId;
      $("signin").hidden = true;
      $("presence").hidden = false;
      $("agent-name").textContent = msg.agentId;
      $("w-disposition").replaceChildren(new Option("Choose…", ""), ...(msg.dispositions || []).map((d) => new Option(d, d)));
      setPhase("idle");
      showPresence(msg.status, msg.wrapUp);
      state.supervisor = !!msg.supervisor;
      $("supervision").hidden = !state.supervisor;
      startAudio();
      break;
    case "presence":
      showPresence(msg.status, msg.wrapUp);
      break;
    case "team":
      showTeam(msg.team || {});
      break;
    case "callbacks":
      showCallbacks(msg.callbacks || []);
      break;
    case "calls":
      showBoard(msg.calls || []);
      break;
    case "monitoring": {
      state.monitoring = { callId: msg.callId, mode: msg.mode };
      const MODE = { listen: "Listening to", coach: "Coaching the agent on", barge: "Barged into" };
      $("monitor-text").textContent = `${MODE[msg.mode] || "On"} call ${String(msg.callId).slice(-8)}`;
      for (const m of ["listen", "coach", "barge"]) $("monitor-" + m).setAttribute("aria-pressed", String(m === msg.mode));
      $("monitor-bar").hidden = false;
      break;
    }
    case "monitor_ended":
      state.monitoring = null;
      $("monitor-bar").hidden = true;
      break;
    case "hint_sent":
      $("hint-text").value = "";
      $("hint-form").hidden = true;
      $("announce").textContent = "Hint sent to the AI on call " + String(msg.callId).slice(-8) + ".";
      break;
    case "taking_over":
      $("idle-text").textContent = "Taking the call over: the caller is told a person is coming, and the call rings you next.";
      break;
    case "hold":
      showHold(msg.on);
      break;
    case "call_resumed":
      state.callId = msg.callId;
      showHold(!!msg.onHold);
      if (msg.context) renderContext(msg.callId, msg.urgency || "standard", msg.context);
      state.offered = offerFacts(msg.context || {});
      clock.callStarted = Date.now();
      setPhase(msg.merged ? "in-call" : "whisper");
      $("call-state").textContent = "Back on the call: the caller heard hold music while you were away.";
      $("hangup").focus();
      break;
    case "webrtc_answer":
      pc.setRemoteDescription({ type: "answer", sdp: msg.sdp }).catch((e) => showError("Bad answer from the gateway: " + e.message));
      break;
    case "webrtc_connected":
      state.audioConnected = true;
      $("audio-status").textContent = "Headset: connected";
      $("audio-status").classList.add("ok");
      break;
    case "webrtc_closed":
      state.audioConnected = false;
      $("audio-status").textContent = "Headset: disconnected";
      $("audio-status").classList.remove("ok");
      showError("Headset audio disconnected: " + msg.reason);
      break;
    case "offer":
      state.callId = msg.callId;
      state.offered = offerFacts(msg.context || {});
      renderContext(msg.callId, msg.urgency, msg.context || {});
      setPhase("offered");
      $("offer-title").textContent = msg.kind === "callback" ? "Callback to make" : "Incoming call";
      startRinging();
      $("announce").textContent = `Incoming ${msg.urgency || ""} call from ${state.offered.name || "a caller"}. Alt+A to accept, Alt+D to decline.`;
      clock.ringEnds = Date.now() + (msg.ringSeconds || 20) * 1000;
      tickClock();
      notify(`Incoming ${msg.urgency || ""} call: ${(msg.context && msg.context.customer && msg.context.customer.name) || "a caller"}`);
      $("accept").focus();
      break;
    case "offer_withdrawn":
      state.withdrawn.push({ callId: msg.callId, reason: msg.reason });
      if (state.callId === msg.callId && state.phase === "offered") {
        state.callId = null;
        setPhase("idle");
        $("idle-text").textContent = WITHDRAWN[msg.reason] || "The offered call ended (" + msg.reason + ").";
      }
      break;
    case "call_started":
      state.callId = msg.callId;
      clock.callStarted = Date.now();
      $("call-notes").value = "";
      setPhase("whisper");
      $("skip").focus();
      break;
    case "mark":
      if (msg.mark && msg.mark.name === "whisper-end") {
        setPhase("in-call");
        $("mute").focus();
      }
      break;
    case "media":
      break; // audio comes over WebRTC; media messages only until it is up
    case "stop": {
      showHold(false);
      state.lastCallId = state.callId || msg.callId;
      state.callId = null;
      // The wrap-up keeps who it was and starts with the notes typed during the call.
      const facts = state.offered || {};
      state.wrapup = loadWrapup(state.lastCallId) || {
        callId: state.lastCallId, name: facts.name, number: facts.number,
        started: clock.callStarted, ended: Date.now(), notes: $("call-notes").value,
      };
      clock.callStarted = 0;
      setPhase("wrapup");
      saveDraft();
      $("w-notes").focus();
      break;
    }
    case "callback_assigned":
      state.callId = null;
      setPhase("idle");
      $("idle-text").textContent = "Callback assigned to you: call " + msg.number + " back (context above). Waiting for the next call.";
      break;
    case "wrapup_saved":
      try { localStorage.removeItem(draftKey(msg.callId)); } catch (e) { /* storage off */ }
      if (state.wrapup && state.wrapup.callId === msg.callId) state.wrapup = null;
      setPhase("idle");
      $("idle-text").textContent = "Wrap-up saved. Waiting for the next call.";
      break;
    case "error":
      showError(msg.message);
      break;
  }
}

// Calls waiting per skill (longest wait) and who is in which state.
function showTeam(team) {
  state.team = team;
  $("team").hidden = false;
  const queues = team.queues || [];
  $("team-queues").textContent = queues.length
    ? "Waiting: " + queues.map((q) => `${q.skill ? plain(q.skill) : "any skill"} ${q.waiting} (longest ${mmss(q.longestWaitSeconds)})`).join(" · ")
    : "No calls waiting.";
  // The transfer list: the other agents, available ones first.
  const others = (team.agents || []).filter((a) => a.id !== state.agent)
    .sort((a, b) => (a.status === "available" ? 0 : 1) - (b.status === "available" ? 0 : 1));
  const chosen = $("transfer-to").value;
  $("transfer-to").replaceChildren(new Option("Choose an agent…", ""),
    ...others.map((a) => new Option(`${a.name || a.id} (${PRESENCE[a.status] || a.status})`, a.id)));
  $("transfer-to").value = others.some((a) => a.id === chosen) ? chosen : "";
  $("team-agents").replaceChildren(...(team.agents || []).map((a) => {
    const li = document.createElement("li");
    const st = document.createElement("span");
    st.className = "st";
    st.textContent = PRESENCE[a.status] || a.status;
    li.append(`${a.name || a.id} `, st);
    return li;
  }));
}

// Pending callbacks: "Call back" makes one this agent's (one owner).
function showCallbacks(list) {
  state.callbacks = list;
  $("team").hidden = false;
  const ul = $("callbacks");
  if (!list.length) {
    const li = document.createElement("li");
    li.textContent = "None pending.";
    ul.replaceChildren(li);
    return;
  }
  ul.replaceChildren(...list.map((c) => {
    const li = document.createElement("li");
    const when = Date.parse(c.createdAt);
    const ago = Number.isFinite(when) ? ` · ${mmss((Date.now() - when) / 1000)} ago` : "";
    li.append(`${c.name || "Caller"} · ${c.number || "no number"}${ago} · ${c.reason} `);
    const b = document.createElement("button");
    b.textContent = "Call back";
    b.setAttribute("aria-label", `Call back ${c.name || "the caller"} at ${c.number || "no number"}`);
    b.disabled = !c.number;
    b.addEventListener("click", () => send({ event: "claim_callback", callId: c.callId }));
    li.append(b);
    return li;
  }));
}

// A small line of per-turn values (−1…+1 or 0…1), each point coloured by itself.
function spark(values, min, colour) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 90 24");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", values.length ? values.map((v) => v.toFixed(2)).join(", ") : "no turns yet");
  const y = (v) => 22 - ((Math.max(min, Math.min(1, v)) - min) / (1 - min)) * 20;
  const step = values.length > 1 ? 86 / (values.length - 1) : 0;
  values.forEach((v, i) => {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", 2 + i * step);
    dot.setAttribute("cy", y(v));
    dot.setAttribute("r", 2.5);
    dot.setAttribute("fill", colour(v));
    svg.append(dot);
  });
  return svg;
}

// Supervisors: every live call, with a take-over for calls still with the AI.
function showBoard(calls) {
  state.board = calls;
  const STAGE = { assistant: "With the AI", waiting: "Waiting for a person", with_person: "With a person", callback: "Callback" };
  $("board").replaceChildren(...calls.map((c) => {
    const tr = document.createElement("tr");
    const cell = (content) => {
      const td = document.createElement("td");
      td.append(content);
      tr.append(td);
      return td;
    };
    cell(c.callId.slice(-8));
    cell(STAGE[c.stage] + (c.agent ? ` (${c.agent})` : ""));
    cell(mmss(c.durationSeconds));
    cell(c.lastTurn ? `${c.lastTurn.role === "agent" ? "AI" : "Caller"}: ${c.lastTurn.text}` : "—");
    cell(spark(c.sentiment || [], -1, sentimentColour));
    cell(spark(c.confidence || [], 0, (v) => (v < 0.5 ? "#a93226" : "#196f3d")));
    const level = c.risk >= 0.7 ? "high" : c.risk >= 0.4 ? "medium" : "low";
    cell(`${level} (${c.risk.toFixed(2)})`).className = "risk-" + level;
    const action = cell("");
    const listen = document.createElement("button");
    listen.textContent = "Listen";
    listen.setAttribute("aria-label", `Listen to call ${c.callId.slice(-8)}`);
    listen.addEventListener("click", () => send({ event: "monitor", callId: c.callId, mode: "listen" }));
    action.append(listen, " ");
    if (c.stage === "assistant") {
      const b = document.createElement("button");
      b.textContent = "Take over";
      b.setAttribute("aria-label", `Take over call ${c.callId.slice(-8)}`);
      b.addEventListener("click", () => send({ event: "take_over", callId: c.callId }));
      const h = document.createElement("button");
      h.textContent = "Send hint";
      h.setAttribute("aria-label", `Send hint to the AI on call ${c.callId.slice(-8)}`);
      h.addEventListener("click", () => {
        state.hintCall = c.callId;
        $("hint-call").textContent = c.callId.slice(-8);
        $("hint-form").hidden = false;
        $("hint-text").focus();
      });
      action.append(b, " ", h);
    }
    return tr;
  }));
}

function showHold(on) {
  state.onHold = on;
  clock.holdStarted = on ? Date.now() : 0;
  $("hold").setAttribute("aria-pressed", String(on));
  $("hold").textContent = on ? "Resume" : "Hold";
  $("hold-timer").hidden = !on;
  if (state.phase === "in-call") {
    $("call-state").textContent = on ? "The caller is on hold and hears music; they cannot hear you." : "Connected to the caller.";
  }
}

// Who the caller is, for the wrap-up header.
function offerFacts(ctx) {
  const c = ctx.customer || {};
  return { name: c.name, number: typeof c.contactInfo === "string" ? c.contactInfo : "" };
}

// The token goes in a header to get a one-time ticket; only the ticket is in
// the WebSocket's URL (URLs end up in proxy logs and browser history).
async function signIn(agent, token) {
  const before = state.errors.length;
  const path = `/v1/agents/${encodeURIComponent(agent)}`;
  let ticket;
  try {
    const reply = await fetch(`${path}/ticket`, { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    const body = await reply.json().catch(() => ({}));
    if (!reply.ok) {
      showError(`Sign-in refused: ${body.error || "HTTP " + reply.status}.`);
      return;
    }
    ticket = body.ticket;
  } catch (e) {
    showError("Cannot reach the gateway: " + e.message);
    return;
  }
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${proto}//${location.host}${path}/ws?ticket=${encodeURIComponent(ticket)}`);
  ws.onmessage = (e) => {
    try { onEvent(JSON.parse(e.data)); } catch (err) { showError("Unreadable message from the gateway: " + err.message); }
  };
  ws.onclose = (e) => {
    // A refusal the gateway explained (e.g. signed in elsewhere) stays on screen.
    if (state.phase === "signed-out") showError(state.errors.length > before ? state.errors[state.errors.length - 1] : "Sign-in refused: check the agent id and token.");
    else showError("Disconnected from the gateway" + (e.reason ? ": " + e.reason : "") + ".");
    state.phase = "signed-out";
    $("signin").hidden = false;
    $("presence").hidden = true;
    $("team").hidden = true;
    $("supervision").hidden = true;
    if (pc) pc.close();
    pc = null;
  };
}

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  // Desktop notifications for offers while the tab is hidden: asked once.
  if ("Notification" in window && Notification.permission === "default") Notification.requestPermission().catch(() => {});
  signIn($("agent-id").value.trim(), $("agent-token").value);
});
// The choice is a request: the pill changes when the gateway says so.
$("presence-choice").addEventListener("change", (e) => {
  if (e.target.value) send({ event: "status", status: e.target.value });
});
// Leaving the page mid-call or with an unsaved wrap-up asks first (the call is
// held for a while if you do, and the draft is kept).
window.addEventListener("beforeunload", (e) => {
  if (["offered", "whisper", "in-call", "wrapup"].includes(state.phase)) {
    e.preventDefault();
    e.returnValue = "";
  }
});
["w-resolved", "w-repeated", "w-accurate", "w-notes"].forEach((id) => $(id).addEventListener("input", saveDraft));
["w-resolved", "w-repeated", "w-accurate", "w-disposition"].forEach((id) => $(id).addEventListener("change", saveDraft));
$("accept").addEventListener("click", () => send({ event: "accept", callId: state.callId }));
$("decline").addEventListener("click", () => {
  send({ event: "decline", callId: state.callId });
  state.callId = null;
  setPhase("idle");
});
$("skip").addEventListener("click", () => send({ event: "skip" }));
// Keyboard: Alt+A accept, Alt+D decline, Alt+S skip, Alt+H hold, Alt+M mute, Alt+X hang up
// (each only while its button is on screen).
const SHORTCUTS = { a: "accept", d: "decline", s: "skip", h: "hold", m: "mute", x: "hangup" };
document.addEventListener("keydown", (e) => {
  if (!e.altKey || e.ctrlKey || e.metaKey) return;
  const id = SHORTCUTS[e.key.toLowerCase()];
  const button = id && $(id);
  if (button && button.offsetParent !== null && !button.disabled) {
    e.preventDefault();
    button.click();
  }
});
$("hold").addEventListener("click", () => send({ event: state.onHold ? "resume" : "hold" }));
$("transfer").addEventListener("click", () => {
  const to = $("transfer-to").value;
  if (!to) return showError("Choose who to transfer the call to.");
  if (state.phase !== "in-call") return showError("You can transfer once the caller is connected.");
  state.transferredTo = to;
  send({ event: "transfer", agent: to });
});
for (const m of ["listen", "coach", "barge"]) {
  $("monitor-" + m).addEventListener("click", () => {
    if (state.monitoring) send({ event: "monitor", callId: state.monitoring.callId, mode: m });
  });
}
$("monitor-stop").addEventListener("click", () => send({ event: "stop_monitor" }));
$("hint-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("hint-text").value.trim();
  if (!state.hintCall || !text) return;
  send({ event: "hint", callId: state.hintCall, text });
});
for (const key of document.querySelectorAll("#keypad button")) {
  key.addEventListener("click", () => {
    if (state.phase !== "in-call") return showError("The keypad works once the caller is connected.");
    send({ event: "dtmf", digit: key.dataset.digit });
  });
}
$("return-to-ai").addEventListener("click", () => {
  if (state.phase !== "in-call") return showError("You can hand the caller back once they are connected.");
  const note = $("ai-note").value.trim();
  send(note ? { event: "return_to_ai", note } : { event: "return_to_ai" });
  $("ai-note").value = "";
});
$("hangup").addEventListener("click", () => {
  if (state.phase === "whisper" && !window.confirm("The caller has not heard you yet. Hang up anyway?")) return;
  send({ event: "hangup" });
});
$("mute").addEventListener("click", (e) => {
  const muted = e.target.getAttribute("aria-pressed") !== "true";
  if (mic) mic.getAudioTracks().forEach((t) => { t.enabled = !muted; });
  e.target.setAttribute("aria-pressed", String(muted));
  e.target.textContent = muted ? "Unmute" : "Mute";
  $("muted-badge").hidden = !muted;
});
$("wrapup-form").addEventListener("submit", (e) => {
  e.preventDefault();
  send({
    event: "wrapup",
    callId: (state.wrapup && state.wrapup.callId) || state.lastCallId,
    resolved: $("w-resolved").checked,
    callerRepeated: $("w-repeated").checked,
    contextAccurate: $("w-accurate").checked,
    notes: $("w-notes").value,
    disposition: $("w-disposition").value,
  });
});

// ?agent=… pre-fills the form (a deep link from the contact-centre UI). A
// token in a link is refused: it would sit in history and proxy logs.
const params = new URLSearchParams(location.search);
if (params.get("agent")) $("agent-id").value = params.get("agent");
if (params.has("token")) {
  params.delete("token");
  history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
  showError("A token in a link is not used (links are logged): type it in to sign in.");
}
