#!/usr/bin/env bash
# Sets slackwater up on a fresh machine and runs the main job on the embedded defaults:
# SQLite under ./.slackwater, the real MiniLM embedding model and a tiny local Llama.
# It starts the server, submits two example batches, prints their results and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-8000}

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[local]'
export PATH="$PWD/.venv/bin:$PATH"
export SLACKWATER_BASE_URL="http://127.0.0.1:$port/v1"

slackwater models make-tiny
slackwater serve --port "$port" > .slackwater/server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 $server 2>/dev/null || { cat .slackwater/server.log; exit 1; }
  sleep 0.5
done

slackwater batches create -i examples/batch.jsonl --wait -o .slackwater/embeddings.jsonl
slackwater batches create -i examples/chat.jsonl --wait -o .slackwater/chat.jsonl
echo
echo "== embeddings (first 8 of 384 dimensions) =="
.venv/bin/python - <<'PY'
import json
for name in (".slackwater/embeddings.jsonl", ".slackwater/chat.jsonl"):
    for line in open(name):
        row = json.loads(line)
        body = row["response"]["body"]
        if "data" in body:
            for item in body["data"]:
                print(row["custom_id"], item["index"], [round(v, 4) for v in item["embedding"][:8]])
        else:
            print(row["custom_id"], repr(body["choices"][0]["message"]["content"]))
    if name.endswith("embeddings.jsonl"):
        print("\n== chat completions (tiny random-weight model: expect gibberish) ==")
PY
