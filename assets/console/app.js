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
  callId: null,
  lastCallId: null,
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
  const text = {
    offered: "Ringing you — accept to hear a short whisper brief, then the caller.",
    whisper: "Whisper brief playing — only you hear it; the caller is on hold.",
    "in-call": "Connected to the caller.",
  }[phase] || "";
  $("call-state").textContent = text;
  $("offer-title").textContent = phase === "offered" ? "Incoming call" : "Call";
}

function list(id, items) {
  const ul = $(id);
  ul.replaceChildren(...(items.length ? items : ["—"]).map((t) => {
    const li = document.createElement("li");
    li.textContent = t;
    return li;
  }));
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

function drawSentiment(points) {
  const svg = $("sentiment");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const axis = document.createElementNS(ns, "line");
  Object.entries({ x1: 0, y1: 30, x2: 200, y2: 30, stroke: "#d5d8dc" }).forEach(([k, v]) => axis.setAttribute(k, v));
  svg.append(axis);
  if (!points.length) return;
  const step = points.length > 1 ? 190 / (points.length - 1) : 0;
  const xy = points.map((p, i) => [5 + i * step, 30 - Math.max(-1, Math.min(1, p.score)) * 25]);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", xy.map((p) => p.join(",")).join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", points[points.length - 1].score < 0 ? "#cb4335" : "#1e8449");
  line.setAttribute("stroke-width", "2");
  svg.append(line);
  for (const [x, y] of xy) {
    const dot = document.createElementNS(ns, "circle");
    Object.entries({ cx: x, cy: y, r: 3, fill: y > 30 ? "#cb4335" : "#1e8449" }).forEach(([k, v]) => dot.setAttribute(k, v));
    svg.append(dot);
  }
  svg.setAttribute("aria-label", "Sentiment over the call: " + points.map((p) => p.score.toFixed(2)).join(", "));
}

function renderContext(callId, urgency, ctx) {
  const customer = ctx.customer || {};
  const intent = ctx.intent || {};
  const reason = ctx.escalationReason || {};
  $("urgency").textContent = urgency;
  $("urgency").className = "badge " + urgency;
  $("c-name").textContent = customer.name || "Unknown caller";
  $("c-verification").textContent = customer.verificationStatus || "unverified";
  $("c-channel").textContent = customer.channel || "voice";
  $("reason-trigger").textContent = (reason.trigger || "—").replace(/_/g, " ");
  $("reason-text").textContent = reason.description || "";
  $("intent").textContent = intent.primary || "unknown";
  $("next-action").textContent = ctx.suggestedNextAction || "—";
  list("resolved", intent.resolvedItems || []);
  list("unresolved", intent.unresolvedItems || []);
  list("tools", (ctx.toolsUsed || []).map(toolLine));
  list("attempts", ctx.attemptedResolutions || []);
  $("summary").textContent = ctx.summary || "";
  $("transcript").replaceChildren(...(ctx.transcript || []).map((t) => {
    const li = document.createElement("li");
    const ai = t.role === "agent";
    li.className = ai ? "ai" : "caller";
    li.textContent = `${ai ? "AI" : "Caller"}: ${t.content}`;
    return li;
  }));
  drawSentiment(ctx.sentimentArc || []);
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
  if (mic) mic.getAudioTracks().forEach((t) => pc.addTrack(t, mic));
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
      setPhase("idle");
      startAudio();
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
      renderContext(msg.callId, msg.urgency, msg.context || {});
      $("offer-title").textContent = msg.kind === "callback" ? "Callback to make" : "Incoming call";
      setPhase("offered");
      $("accept").focus();
      break;
    case "offer_withdrawn":
      if (state.callId === msg.callId && state.phase === "offered") {
        state.callId = null;
        setPhase("idle");
        $("idle-text").textContent = "The offered call was taken elsewhere or ended (" + msg.reason + ").";
      }
      break;
    case "call_started":
      state.callId = msg.callId;
      setPhase("whisper");
      break;
    case "mark":
      if (msg.mark && msg.mark.name === "whisper-end") setPhase("in-call");
      break;
    case "media":
      break; // audio comes over WebRTC; media messages only until it is up
    case "stop":
      state.lastCallId = state.callId || msg.callId;
      state.callId = null;
      setPhase("wrapup");
      break;
    case "callback_assigned":
      state.callId = null;
      setPhase("idle");
      $("idle-text").textContent = "Callback assigned to you: call " + msg.number + " back (context above). Waiting for the next call.";
      break;
    case "wrapup_saved":
      setPhase("idle");
      $("idle-text").textContent = "Wrap-up saved. Waiting for the next call.";
      break;
    case "error":
      showError(msg.message);
      break;
  }
}

function signIn(agent, token) {
  const before = state.errors.length;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${proto}//${location.host}/v1/agents/${encodeURIComponent(agent)}/ws?token=${encodeURIComponent(token)}`);
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
    if (pc) pc.close();
    pc = null;
  };
}

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  signIn($("agent-id").value.trim(), $("agent-token").value);
});
$("available").addEventListener("change", (e) => {
  send({ event: "status", status: e.target.checked ? "available" : "offline" });
  $("availability-label").textContent = e.target.checked ? "Available" : "Offline";
});
$("accept").addEventListener("click", () => send({ event: "accept", callId: state.callId }));
$("decline").addEventListener("click", () => {
  send({ event: "decline", callId: state.callId });
  state.callId = null;
  setPhase("idle");
});
$("skip").addEventListener("click", () => send({ event: "skip" }));
$("hangup").addEventListener("click", () => send({ event: "hangup" }));
$("mute").addEventListener("click", (e) => {
  const muted = e.target.getAttribute("aria-pressed") !== "true";
  if (mic) mic.getAudioTracks().forEach((t) => { t.enabled = !muted; });
  e.target.setAttribute("aria-pressed", String(muted));
  e.target.textContent = muted ? "Unmute" : "Mute";
});
$("wrapup-form").addEventListener("submit", (e) => {
  e.preventDefault();
  send({
    event: "wrapup",
    callId: state.lastCallId,
    resolved: $("w-resolved").checked,
    callerRepeated: $("w-repeated").checked,
    contextAccurate: $("w-accurate").checked,
    notes: $("w-notes").value,
  });
});

// ?agent=…&token=… pre-fills the form (a deep link from the contact-centre UI).
const params = new URLSearchParams(location.search);
if (params.get("agent")) $("agent-id").value = params.get("agent");
if (params.get("token")) $("agent-token").value = params.get("token");
