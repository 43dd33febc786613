#!/usr/bin/env python3
"""Writes the whisper test corpus: 36 varied HandoffContext JSON files.

Short and long, every trigger and urgency, missing fields, long and unicode
names, odd number formats, empty transcripts. Run from this folder.
"""
import json, itertools, os

names = ["Sarah Chen", "", "Bob", "Maximilian Alexander von Hohenzollern-Sigmaringen the Third",
         "José Ñúñez-García", "李小龙", "O'Brien", "Dr. Amara Okonkwo-Adeyemi"]
triggers = ["authority_limit", "customer_request", "complexity", "policy", "repeated_failure"]
urgencies = ["standard", "elevated", "critical"]
intents = [("billing_dispute", ["refund of $45 for order 8821"]),
           ("order_status", ["order 104273 not delivered"]),
           ("", []),
           ("account_closure", ["close account 5521-9988"]),
           ("technical_support", ["router keeps rebooting", "no internet since Tuesday"]),
           ("refund", ["refund of $1,250.50 for invoice 7781"])]
descriptions = {
    "authority_limit": "A refund of 120.00 is above the assistant's limit of 50.00.",
    "customer_request": "The caller asked for a person (\"real person\").",
    "complexity": "The assistant's confidence was below 0.5 on 2 turns.",
    "policy": "The caller raised \"lawyer\", which policy reserves for a human.",
    "repeated_failure": "The assistant gave 2 unhelpful answers in a row.",
}
long_turn = ("I have called three times already this week and every single time I get told "
             "something different about my refund and I am honestly at the end of my patience here")

def context(i):
    name = names[i % len(names)]
    trig = triggers[i % len(triggers)]
    urg = urgencies[(i // 5) % len(urgencies)]
    primary, unresolved = intents[i % len(intents)]
    rich = i % 3 != 2
    transcript = []
    if i % 4 != 3:
        transcript = [
            {"role": "agent", "content": "Thanks for calling. How can I help?", "timestamp": "2026-11-25T10:00:00.000Z"},
            {"role": "user", "content": long_turn if i % 2 else "My order 8821 never arrived and I want my money back.",
             "timestamp": "2026-11-25T10:00:05.000Z", "sentiment": -0.4},
        ]
        if rich:
            transcript += [
                {"role": "agent", "content": "I'm not sure I can help with that.", "timestamp": "2026-11-25T10:00:09.000Z", "confidence": 0.4},
                {"role": "user", "content": "Then get me someone who can.", "timestamp": "2026-11-25T10:00:12.000Z", "sentiment": -0.3},
            ]
    ctx = {
        "conversationId": f"CAcorpus{i:02d}",
        "startedAt": "2026-11-25T10:00:00.000Z",
        "escalationReason": {"trigger": trig, "description": descriptions[trig], "urgency": urg},
    }
    if name:
        ctx["customer"] = {"name": name, "verificationStatus": ["verified", "partial", "unverified"][i % 3],
                           "channel": "voice", "contactInfo": {"phone": "+1 (555) 010-0%02d" % i}}
    if primary or unresolved:
        ctx["intent"] = {"primary": primary, "resolvedItems": ["address confirmed"] if rich else [],
                         "unresolvedItems": unresolved}
        if i % 5 == 0:
            ctx["intent"]["secondary"] = ["update email address", "loyalty points"]
    if transcript:
        ctx["transcript"] = transcript
        ctx["sentimentArc"] = [{"at": t["timestamp"], "score": t["sentiment"]} for t in transcript if "sentiment" in t]
    if rich:
        ctx["toolsUsed"] = [{"tool": "order_lookup", "args": {"order": "8821"}, "result": {"ok": True}, "calledAt": "2026-11-25T10:00:06.000Z"},
                            {"tool": "refund_request", "args": {"amount": 45}, "result": {"ok": i % 2 == 0}, "calledAt": "2026-11-25T10:00:08.000Z"}]
        ctx["attemptedResolutions"] = ["Used refund_request (failed: over limit)"]
        ctx["suggestedNextAction"] = "Review the refund and decide; the assistant was not allowed to."
        ctx["summary"] = "The caller wants a refund that the assistant could not issue."
    if i == 35:
        ctx = {"escalationReason": {"trigger": "policy"}}  # almost nothing
    return ctx

os.makedirs("contexts", exist_ok=True)
for i in range(36):
    with open(f"contexts/context_{i:02d}.json", "w") as f:
        json.dump(context(i), f, indent=1, ensure_ascii=False)
