#!/usr/bin/env python3
"""Checks a policy corpus directory (docs/POLICY.md) or utterance bank: format, labels, counts.
Usage: check_policy_corpus.py DIR_OR_FILE..."""
import json, sys, pathlib, collections

CALLER = {"asks_person", "accepts_offer", "declines_offer", "legal_threat", "fraud_emergency",
          "cancel_request", "complaint_request", "regulated_advice", "contradicts", "frustrated",
          "repeat_yourself"}
AGENT = {"hedge", "not_understood", "cannot", "records_conflict", "offers_person", "repeats"}
TRIGGERS = {"authority_limit", "customer_request", "complexity", "policy", "repeated_failure"}
URGENCY = {"standard", "elevated", "critical"}
KINDS = {"turn", "tool", "intent", "customer", "dtmf", "escalate"}

def fail(where, msg):
    print(f"{where}: {msg}"); fail.n += 1
fail.n = 0

def check_turn_labels(where, role, labels):
    allowed = CALLER if role == "user" else AGENT
    for l in labels:
        if l not in allowed:
            fail(where, f"label {l!r} not allowed on a {role} turn")

def check_conv(where, c, stats, ids):
    for k in ("id", "expect", "events"):
        if k not in c: return fail(where, f"missing {k}")
    if c["id"] in ids: fail(where, f"duplicate id {c['id']}")
    ids.add(c["id"])
    e, ev = c["expect"], c["events"]
    if not isinstance(ev, list) or not ev: return fail(where, "events must be a non-empty list")
    for i, x in enumerate(ev):
        k = x.get("event")
        if k not in KINDS: fail(where, f"event {i}: kind {k!r}"); continue
        if k not in x: fail(where, f"event {i}: no {k!r} body")
        if k == "turn":
            t = x["turn"]
            if t.get("role") not in ("user", "agent") or not isinstance(t.get("content"), str):
                fail(where, f"event {i}: turn needs role user|agent and content")
            if "confidence" in t and not (0 <= t["confidence"] <= 1): fail(where, f"event {i}: confidence")
            check_turn_labels(f"{where} event {i}", t.get("role"), x.get("labels", []))
        if k == "dtmf" and not isinstance(x["dtmf"].get("digit"), str): fail(where, f"event {i}: dtmf.digit")
        if k == "escalate":
            b = x["escalate"]
            if b.get("trigger") not in TRIGGERS or b.get("urgency") not in URGENCY: fail(where, f"event {i}: escalate body")
    if not isinstance(e.get("escalate"), bool): return fail(where, "expect.escalate must be bool")
    if e["escalate"]:
        if e.get("trigger") not in TRIGGERS: fail(where, f"expect.trigger {e.get('trigger')!r}")
        if e.get("urgency") not in URGENCY: fail(where, f"expect.urgency {e.get('urgency')!r}")
        at = e.get("at")
        if not isinstance(at, int) or not (0 <= at < len(ev)): fail(where, f"expect.at {at!r} out of range")
        stats[e.get("trigger")] += 1
        stats["urgency:" + str(e.get("urgency"))] += 1
    else:
        stats["no_escalation"] += 1

def check_utt(where, u, stats):
    if u.get("role") not in ("user", "agent") or not isinstance(u.get("content"), str):
        return fail(where, "needs role user|agent and content")
    check_turn_labels(where, u["role"], u.get("labels", []))
    for l in u.get("labels", []) or ["(none)"]:
        stats[u["role"] + ":" + l] += 1

def main():
    stats, ids = collections.Counter(), set()
    for arg in sys.argv[1:]:
        p = pathlib.Path(arg)
        files = sorted(p.glob("*.jsonl")) + sorted(p.glob("*.json")) if p.is_dir() else [p]
        for f in files:
            lines = f.read_text().splitlines() if f.suffix == ".jsonl" else [f.read_text()]
            for n, line in enumerate(lines, 1):
                if not line.strip(): continue
                where = f"{f}:{n}"
                try: obj = json.loads(line)
                except Exception as ex: fail(where, f"bad JSON: {ex}"); continue
                if "events" in obj or "expect" in obj: check_conv(where, obj, stats, ids); stats["conversations"] += 1
                else: check_utt(where, obj, stats); stats["utterances"] += 1
    for k, v in sorted(stats.items()): print(f"{k:30} {v}")
    print("errors:", fail.n)
    sys.exit(1 if fail.n else 0)

main()
