#!/usr/bin/env bash
# Regenerates the bundled speech assets (8 kHz mono 16-bit WAV) with espeak-ng + sox.
# The WAVs are committed so that the demo and the tests need no TTS at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { # say OUT.wav VOICE "text"
  local tmp; tmp=$(mktemp --suffix=.wav)
  espeak-ng -v "$2" -s 165 -w "$tmp" "$3"
  sox "$tmp" -r 8000 -c 1 -b 16 -e signed-integer "$1" norm -3
  rm -f "$tmp"
}
say assets/prompts/agent_unavailable.wav en-us "I'm sorry, our assistant is not available right now. Please call again in a few minutes. Goodbye."
say assets/prompts/shutting_down.wav en-us "I'm sorry, we have to end this call now. Your conversation is saved. Please call again in a few minutes. Goodbye."
say assets/prompts/agent_failed.wav en-us "I'm sorry, our assistant has stopped responding. I'm getting a person to help you."
say assets/demo/agent_greeting.wav en-us "Thanks for calling Acme support. This is the virtual assistant. How can I help you today?"
say assets/demo/agent_reply_1.wav en-us "I'm sorry to hear that. Could you tell me your order number?"
say assets/demo/agent_reply_2.wav en-us "Thank you. Order eight eight two one shipped yesterday, and it should arrive tomorrow."
say assets/demo/agent_reply_3.wav en-us "You're welcome. Is there anything else I can help you with?"
# The escalation story: the assistant fails twice, a human agent takes over.
say assets/demo/agent_fail_1.wav en-us "I'm sorry, I'm not sure I can find that. Could you repeat your order number?"
say assets/demo/agent_fail_2.wav en-us "Unfortunately I can't see that order in my system."
say assets/demo/human_agent.wav en-us+f3 "Hi Sarah, this is Alex from Acme. I can see order eight eight two one, and I'm sorry for the trouble. I'll sort it out for you right now."
# The simulated caller: utterances with pauses long enough for the other side to answer.
say /tmp/wl_c1.wav en-gb-x-rp "Hi. I'm calling about my order. It still hasn't arrived."
say /tmp/wl_c2.wav en-gb-x-rp "It's order eight eight two one. I already told you."
say /tmp/wl_c3.wav en-gb-x-rp "Great, thanks a lot."
sox -n -r 8000 -c 1 -b 16 -e signed-integer /tmp/wl_sil.wav trim 0 1
sil() { for _ in $(seq "$1"); do echo /tmp/wl_sil.wav; done; }
# shellcheck disable=SC2046
sox $(sil 7) /tmp/wl_c1.wav $(sil 6) /tmp/wl_c2.wav $(sil 24) /tmp/wl_c3.wav $(sil 5) assets/demo/caller.wav
rm -f /tmp/wl_c?.wav /tmp/wl_sil.wav
