"""Submit a batch to slackwater with the official openai client and print the results.

    slackwater serve &            # in another terminal
    python examples/openai_client.py

SLACKWATER_BASE_URL (default http://127.0.0.1:8000/v1) and SLACKWATER_API_KEY, if the
server has keys, say where and as whom.
"""

import json
import os
import time
from pathlib import Path

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("SLACKWATER_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("SLACKWATER_API_KEY", "unused-without-keys"),
)

batch_file = client.files.create(
    file=Path(__file__).with_name("batch.jsonl").open("rb"), purpose="batch"
)
batch = client.batches.create(
    input_file_id=batch_file.id,
    endpoint="/v1/embeddings",
    completion_window="24h",
    metadata={"job": "quickstart"},
)
while batch.status not in ("completed", "failed", "expired", "cancelled"):
    time.sleep(1)
    batch = client.batches.retrieve(batch.id)
    print(batch.status, batch.request_counts)

for line in client.files.content(batch.output_file_id).text.splitlines():
    result = json.loads(line)
    vectors = result["response"]["body"]["data"]
    print(result["custom_id"], len(vectors), "vector(s) of", len(vectors[0]["embedding"]))

# The same server answers realtime calls on the same models.
print(client.embeddings.create(model="all-MiniLM-L6-v2", input="hello").data[0].embedding[:4])
