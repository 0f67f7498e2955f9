"""The transformers engine: a local Hugging Face model directory on CPU or GPU.

Embeddings: batched encoding, mean pooling over the attention mask, L2-normalised (the
sentence-transformers recipe of MiniLM and most embedding models). Chat and completions:
batched generation with left padding, requests grouped by sampling settings and sorted
by prompt length so padding stays small.

Options: `path` (a model directory; `package:NAME/SUB` for one shipped inside a Python
package; `{data_dir}` is replaced by the data directory), `device` (auto, cpu, cuda),
`dtype` (auto: the checkpoint's own; float32, bfloat16, float16), `normalize`
(embeddings, default true), `default_max_tokens` (default 64).
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files as package_files
from pathlib import Path
from typing import Any

from slackwater.domain.batch import Endpoint
from slackwater.domain.errors import EngineError, ModelUnavailable, OutOfMemory
from slackwater.domain.model import Model
from slackwater.domain.request import Outcome, Usage
from slackwater.engines import responses
from slackwater.policy.admission import CHARS_PER_TOKEN_AT_MOST


def resolve_path(spec: str, data_dir: str | Path = ".") -> Path:
    if spec.startswith("package:"):
        package, _, sub = spec.removeprefix("package:").partition("/")
        try:
            return Path(str(package_files(package))) / sub
        except ModuleNotFoundError:
            raise ModelUnavailable(
                f"model package {package!r} is not installed (pip install 'slackwater[local]')"
            ) from None
    return Path(spec.replace("{data_dir}", str(data_dir))).expanduser()


class TransformersEngine:
    serial = True  # one thread owns the model

    def __init__(self, model: Model) -> None:
        self.model = model
        options = model.options
        self.path = resolve_path(str(options.get("path", "")), options.get("data_dir", "."))
        self.device_option = str(options.get("device", "auto"))
        self.dtype_option = str(options.get("dtype", "auto"))
        self.normalize = bool(options.get("normalize", True))
        self.default_max_tokens = int(options.get("default_max_tokens", 64))
        self.generative = not model.serves(Endpoint.EMBEDDINGS)
        # One thread owns the model: torch releases the GIL while it computes, and one
        # model is never run from two threads at once.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"engine-{model.name}")
        self._loaded: tuple[Any, Any, Any] | None = None
        self._load_lock = threading.Lock()
        # One flag per call in flight: set, it stops that call's generation at the next
        # token (its caller went away, or the engine is closing).
        self._stops: set[threading.Event] = set()

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    async def close(self) -> None:
        for stop in list(self._stops):
            stop.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._loaded = None

    async def run(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        """Run in the model's thread; cancelled, the generation stops at its next token."""
        stop = threading.Event()
        self._stops.add(stop)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self.run_sync, endpoint, list(bodies), stop
            )
        except asyncio.CancelledError:
            stop.set()
            raise
        finally:
            self._stops.discard(stop)

    # -- loading -----------------------------------------------------------------------

    def _load(self) -> tuple[Any, Any, Any]:
        with self._load_lock:
            if self._loaded is not None:
                return self._loaded
            if not self.path.is_dir():
                raise ModelUnavailable(
                    f"model {self.model.name!r}: directory {self.path} does not exist "
                    "(set options.path to a Hugging Face model directory)"
                )
            try:
                import torch
                from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
                from transformers.utils import logging as hf_logging
            except ImportError:
                raise ModelUnavailable(
                    "the transformers engine needs the 'local' extra: "
                    "pip install 'slackwater[local]'"
                ) from None
            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            device = self.device_option
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype: Any = (
                "auto" if self.dtype_option == "auto" else getattr(torch, self.dtype_option)
            )
            try:
                tokenizer = AutoTokenizer.from_pretrained(self.path)
                loader: Any = AutoModelForCausalLM if self.generative else AutoModel
                network = loader.from_pretrained(self.path, dtype=dtype).to(device).eval()
            except (OSError, ValueError) as exc:
                raise ModelUnavailable(
                    f"model {self.model.name!r}: cannot load {self.path}: {exc}"
                ) from None
            if self.generative:
                tokenizer.padding_side = "left"
                if tokenizer.pad_token is None:
                    tokenizer.pad_token = tokenizer.eos_token
            self._loaded = (torch, tokenizer, network)
            return self._loaded

    # -- running -----------------------------------------------------------------------

    def run_sync(
        self, endpoint: str, bodies: list[dict[str, Any]], stop: threading.Event | None = None
    ) -> list[Outcome]:
        torch, tokenizer, network = self._load()
        try:
            with torch.inference_mode():
                if endpoint == Endpoint.EMBEDDINGS:
                    return self._embed(torch, tokenizer, network, bodies)
                return self._generate(torch, tokenizer, network, endpoint, bodies, stop)
        except torch.OutOfMemoryError as exc:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise OutOfMemory(f"{len(bodies)} requests did not fit in memory: {exc}") from None

    def _embed(
        self, torch: Any, tokenizer: Any, network: Any, bodies: list[dict[str, Any]]
    ) -> list[Outcome]:
        texts: list[str] = []
        owners: list[int] = []
        for index, body in enumerate(bodies):
            for item in responses.inputs_of(body):
                texts.append(item if isinstance(item, str) else tokenizer.decode(item))
                owners.append(index)
        limit = self.model.context_window or tokenizer.model_max_length
        # Inputs are cut to the context; a tokenizer shown more would count it all first.
        shown = (limit + 1) * CHARS_PER_TOKEN_AT_MOST
        texts = [text[:shown] for text in texts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        tokens = [0] * len(texts)
        step = max(1, self.model.max_batch_size)
        for start in range(0, len(order), step):
            chunk = order[start : start + step]
            encoded = tokenizer(
                [texts[i] for i in chunk],
                padding=True,
                truncation=True,
                max_length=limit,
                return_tensors="pt",
            ).to(network.device)
            hidden = network(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            counts = encoded["attention_mask"].sum(1).tolist()
            rows = pooled.float().cpu().tolist()
            for row, i in enumerate(chunk):
                vectors[i] = rows[row]
                tokens[i] = int(counts[row])
        outcomes = []
        for index, body in enumerate(bodies):
            mine = [i for i, owner in enumerate(owners) if owner == index]
            wanted = body.get("dimensions")
            picked = [vectors[i][:wanted] if wanted else vectors[i] for i in mine]
            outcomes.append(
                responses.embeddings(
                    self.model.name,
                    picked,
                    sum(tokens[i] for i in mine),
                    body.get("encoding_format"),
                )
            )
        return outcomes

    def _prompts(self, tokenizer: Any, endpoint: str, body: dict[str, Any]) -> list[str]:
        if endpoint == Endpoint.CHAT:
            messages = [
                {"role": m["role"], "content": _text(m.get("content"))} for m in body["messages"]
            ]
            if tokenizer.chat_template:
                return [
                    tokenizer.apply_chat_template(
                        messages, tokenize=False, add_generation_prompt=True
                    )
                ]
            lines = [f"{m['role']}: {m['content']}" for m in messages]
            return ["\n".join([*lines, "assistant:"])]
        prompt = body["prompt"]
        return [prompt] if isinstance(prompt, str) else list(prompt)

    def _generate(
        self,
        torch: Any,
        tokenizer: Any,
        network: Any,
        endpoint: str,
        bodies: list[dict[str, Any]],
        stop: threading.Event | None = None,
    ) -> list[Outcome]:
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Stopped(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop is not None and stop.is_set()

        stopping = StoppingCriteriaList([_Stopped()])
        # Every prompt of every body, grouped by the settings generate() takes per call.
        jobs: dict[tuple[Any, ...], list[tuple[int, int, str]]] = defaultdict(list)
        for index, body in enumerate(bodies):
            limit = (
                body.get("max_completion_tokens")
                or body.get("max_tokens")
                or (16 if endpoint == Endpoint.COMPLETIONS else self.default_max_tokens)
            )
            temperature = body.get("temperature")
            temperature = 1.0 if temperature is None else float(temperature)
            key = (int(limit), temperature, float(body.get("top_p") or 1.0), body.get("seed"))
            for choice, prompt in enumerate(self._prompts(tokenizer, endpoint, body)):
                jobs[key].append((index, choice, prompt))

        texts: dict[tuple[int, int], tuple[str, str, int, int]] = {}
        for (limit, temperature, top_p, seed), items in jobs.items():
            items.sort(key=lambda item: len(item[2]))
            if seed is not None:
                torch.manual_seed(int(seed))
            for start in range(0, len(items), max(1, self.model.max_batch_size)):
                chunk = items[start : start + self.model.max_batch_size]
                encoded = tokenizer(
                    [prompt for _, _, prompt in chunk],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=endpoint != Endpoint.CHAT,
                ).to(network.device)
                sampling: dict[str, Any] = (
                    {"do_sample": True, "temperature": temperature, "top_p": top_p}
                    if temperature > 0
                    else {"do_sample": False}
                )
                output = network.generate(
                    **encoded,
                    max_new_tokens=limit,
                    pad_token_id=tokenizer.pad_token_id,
                    stopping_criteria=stopping,
                    **sampling,
                )
                if stop is not None and stop.is_set():
                    # Cut short: these answers are not the model's; nothing is recorded.
                    raise EngineError("the call was stopped", retryable=True, status_code=503)
                prompt_len = encoded["input_ids"].shape[1]
                prompt_tokens = encoded["attention_mask"].sum(1).tolist()
                for row, (index, choice, _) in enumerate(chunk):
                    new = output[row, prompt_len:].tolist()
                    eos = tokenizer.eos_token_id
                    stopped = eos is not None and eos in new
                    if stopped:
                        new = new[: new.index(eos)]
                    while new and new[-1] == tokenizer.pad_token_id:
                        new.pop()
                    text = tokenizer.decode(new, skip_special_tokens=True)
                    text, hit_stop = responses.apply_stop(text, bodies[index].get("stop"))
                    finish = "stop" if stopped or hit_stop or len(new) < limit else "length"
                    texts[(index, choice)] = (text, finish, int(prompt_tokens[row]), len(new))

        outcomes = []
        for index, _body in enumerate(bodies):
            mine = sorted((c, v) for (i, c), v in texts.items() if i == index)
            usage = Usage(sum(v[2] for _, v in mine), sum(v[3] for _, v in mine))
            if endpoint == Endpoint.CHAT:
                text, finish = mine[0][1][0], mine[0][1][1]
                outcomes.append(responses.chat_completion(self.model.name, text, finish, usage))
            else:
                outcome = responses.completion(self.model.name, mine[0][1][0], mine[0][1][1], usage)
                outcome.body["choices"] = [
                    {"index": c, "text": v[0], "logprobs": None, "finish_reason": v[1]}
                    for c, v in mine
                ]
                outcomes.append(outcome)
        return outcomes


def _text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def token_counter(model: Model, data_dir: str | Path = ".") -> Callable[[str], int] | None:
    """Count tokens with the model's own tokenizer (no weights loaded); None if it has none."""
    path = resolve_path(str(model.options.get("path", "")), data_dir)
    if not path.is_dir():
        return None
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError):
        return None

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=True)["input_ids"])

    return count


def native_bfloat16() -> bool:
    """Whether bfloat16 runs at full speed here: a CUDA device that supports it, or a CPU
    with AVX512-BF16 or AMX (where oneDNN computes bfloat16 natively; elsewhere it is
    emulated and slower than float32)."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    # Private probes, so a torch without them falls back to float32.
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def embed_texts(engine: TransformersEngine, texts: Sequence[str]) -> Any:
    """Embeddings of `texts` as a float32 matrix (one row per text), synchronously."""
    import numpy as np

    vectors = []
    for start in range(0, len(texts), engine.model.max_batch_size):
        bodies = [
            {"model": engine.model.name, "input": t}
            for t in texts[start : start + engine.model.max_batch_size]
        ]
        for outcome in engine.run_sync(Endpoint.EMBEDDINGS.value, bodies):
            if not outcome.ok:
                raise ModelUnavailable(f"embedding failed: {outcome.body}")
            vectors.append(outcome.body["data"][0]["embedding"])
    return np.asarray(vectors, dtype=np.float32)
