"""Text generation with a Hugging Face causal LM: batched, and in steps.

Batched (`Generator.generate`): every prompt of every body, grouped by the settings
generate() takes per call and sorted by length so padding stays small.

In steps (`Generator.begin` / `step` / `finish`): one prompt, generated a few tokens at
a time; the KV cache is carried from step to step, so the answer is the same as one
call's (greedy: token for token) and costs about the same. Between steps the caller may
let another request use the model: no single request holds a model for longer than one
step, however long its answer (the step-time cap of docs/security.md).

Both stop at the next token once their `stop` flag is set, and then raise rather than
return a cut-short answer.
"""

from __future__ import annotations

import functools
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slackwater.domain.batch import Endpoint
from slackwater.domain.errors import EngineError
from slackwater.domain.model import Model
from slackwater.domain.request import Outcome, Usage
from slackwater.engines import responses
from slackwater.engines.baton import Baton

Loaded = tuple[Any, Any, Any]  # torch, tokenizer, network


@dataclass
class Steps:
    """A generation in progress: the sequence so far and the cache that covers it."""

    body: dict[str, Any]
    ids: Any  # 1 x n token tensor: the prompt and what is written so far
    prompt_tokens: int
    limit: int
    sampling: dict[str, Any]
    rng: Any | None  # the random state a seeded sampling resumes from
    cache: Any = None
    done: bool = False

    @property
    def written(self) -> int:
        return int(self.ids.shape[1]) - self.prompt_tokens


class Generator:
    def __init__(self, model: Model, default_max_tokens: int, step_tokens: int) -> None:
        self.model = model
        self.default_max_tokens = default_max_tokens
        self.step_tokens = step_tokens

    # -- batched -----------------------------------------------------------------------

    def generate(
        self,
        loaded: Loaded,
        endpoint: str,
        bodies: list[dict[str, Any]],
        stop: threading.Event | None = None,
        pause: Callable[[], None] | None = None,
    ) -> list[Outcome]:
        """`pause` is called between tokens (`pauser`: realtime calls may go first)."""
        torch, tokenizer, network = loaded
        jobs: dict[tuple[Any, ...], list[tuple[int, int, str]]] = defaultdict(list)
        for index, body in enumerate(bodies):
            key = self.sampling_key(endpoint, body)
            for choice, prompt in enumerate(prompts(tokenizer, endpoint, body)):
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
                if pause is not None:
                    pause()
                output = network.generate(
                    **encoded,
                    max_new_tokens=limit,
                    pad_token_id=tokenizer.pad_token_id,
                    stopping_criteria=_stopping(stop, pause),
                    **sampling(temperature, top_p),
                )
                _check(stop)
                prompt_len = encoded["input_ids"].shape[1]
                prompt_tokens = encoded["attention_mask"].sum(1).tolist()
                for row, (index, choice, _) in enumerate(chunk):
                    text, finish, written = answer(
                        tokenizer, output[row, prompt_len:].tolist(), limit, bodies[index]
                    )
                    texts[(index, choice)] = (text, finish, int(prompt_tokens[row]), written)
        return [
            self.outcome(endpoint, sorted((c, v) for (i, c), v in texts.items() if i == index))
            for index in range(len(bodies))
        ]

    # -- in steps ----------------------------------------------------------------------

    @staticmethod
    def steppable(endpoint: str, body: dict[str, Any]) -> bool:
        """One prompt (not a list of completions prompts), text out."""
        return endpoint != Endpoint.EMBEDDINGS and not isinstance(body.get("prompt"), list)

    def begin(self, loaded: Loaded, endpoint: str, body: dict[str, Any]) -> Steps:
        torch, tokenizer, network = loaded
        [prompt] = prompts(tokenizer, endpoint, body)
        limit, temperature, top_p, seed = self.sampling_key(endpoint, body)
        encoded = tokenizer(
            [prompt], return_tensors="pt", add_special_tokens=endpoint != Endpoint.CHAT
        ).to(network.device)
        rng = None
        if seed is not None:
            torch.manual_seed(int(seed))
            rng = _rng_state(torch)
        ids = encoded["input_ids"]
        return Steps(body, ids, int(ids.shape[1]), limit, sampling(temperature, top_p), rng)

    def step(self, loaded: Loaded, steps: Steps, stop: threading.Event | None = None) -> None:
        """Write up to `step_tokens` more tokens; `steps.done` once the answer is whole."""
        torch, tokenizer, network = loaded
        if steps.rng is not None:
            _set_rng_state(torch, steps.rng)
        before = int(steps.ids.shape[1])
        carried = {_cache_argument(): steps.cache} if steps.cache is not None else {}
        output = network.generate(
            input_ids=steps.ids,
            attention_mask=torch.ones_like(steps.ids),
            max_new_tokens=min(self.step_tokens, steps.limit - steps.written),
            pad_token_id=tokenizer.pad_token_id,
            stopping_criteria=_stopping(stop),
            return_dict_in_generate=True,
            **carried,
            **steps.sampling,
        )
        _check(stop)
        steps.ids = output.sequences
        steps.cache = output.get("cache", output.get("past_key_values"))
        if steps.rng is not None:
            steps.rng = _rng_state(torch)
        new = steps.ids[0, before:].tolist()
        eos = tokenizer.eos_token_id
        steps.done = steps.written >= steps.limit or not new or (eos is not None and eos in new)

    def text_so_far(self, loaded: Loaded, steps: Steps) -> str:
        """The answer so far, as a stream may send it: cut at a stop sequence, and
        without a last character still being decoded (one token may be part of one)."""
        _, tokenizer, _ = loaded
        new = steps.ids[0, steps.prompt_tokens :].tolist()
        eos = tokenizer.eos_token_id
        if eos is not None and eos in new:
            new = new[: new.index(eos)]
        text = tokenizer.decode(new, skip_special_tokens=True).rstrip("\ufffd")
        return responses.apply_stop(text, steps.body.get("stop"))[0]

    def finish(self, loaded: Loaded, endpoint: str, steps: Steps) -> Outcome:
        _, tokenizer, _ = loaded
        new = steps.ids[0, steps.prompt_tokens :].tolist()
        text, finish, written = answer(tokenizer, new, steps.limit, steps.body)
        steps.cache = None  # the KV cache is the large part: free it now
        return self.outcome(endpoint, [(0, (text, finish, steps.prompt_tokens, written))])

    # -- shared ------------------------------------------------------------------------

    def sampling_key(self, endpoint: str, body: dict[str, Any]) -> tuple[Any, ...]:
        """(max new tokens, temperature, top_p, seed): what generate() takes per call."""
        limit = (
            body.get("max_completion_tokens")
            or body.get("max_tokens")
            or (16 if endpoint == Endpoint.COMPLETIONS else self.default_max_tokens)
        )
        temperature = body.get("temperature")
        temperature = 1.0 if temperature is None else float(temperature)
        return int(limit), temperature, float(body.get("top_p") or 1.0), body.get("seed")

    def outcome(
        self, endpoint: str, choices: list[tuple[int, tuple[str, str, int, int]]]
    ) -> Outcome:
        """One body's answer from its choices' (text, finish reason, prompt and new tokens)."""
        usage = Usage(sum(v[2] for _, v in choices), sum(v[3] for _, v in choices))
        text, finish = choices[0][1][0], choices[0][1][1]
        if endpoint == Endpoint.CHAT:
            return responses.chat_completion(self.model.name, text, finish, usage)
        outcome = responses.completion(self.model.name, text, finish, usage)
        outcome.body["choices"] = [
            {"index": c, "text": v[0], "logprobs": None, "finish_reason": v[1]} for c, v in choices
        ]
        return outcome


@functools.cache
def _cache_argument() -> str:
    """generate()'s name for a KV cache to continue from: `cache` since transformers 5."""
    import transformers

    return "cache" if int(transformers.__version__.split(".")[0]) >= 5 else "past_key_values"


def prompts(tokenizer: Any, endpoint: str, body: dict[str, Any]) -> list[str]:
    if endpoint == Endpoint.CHAT:
        messages = [
            {"role": m["role"], "content": _text(m.get("content"))} for m in body["messages"]
        ]
        if tokenizer.chat_template:
            return [
                tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ]
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return ["\n".join([*lines, "assistant:"])]
    prompt = body["prompt"]
    return [prompt] if isinstance(prompt, str) else list(prompt)


def sampling(temperature: float, top_p: float) -> dict[str, Any]:
    if temperature > 0:
        return {"do_sample": True, "temperature": temperature, "top_p": top_p}
    return {"do_sample": False}


def answer(
    tokenizer: Any, new: list[int], limit: int, body: dict[str, Any]
) -> tuple[str, str, int]:
    """(text, finish reason, tokens written) from the tokens a generation added."""
    eos = tokenizer.eos_token_id
    stopped = eos is not None and eos in new
    if stopped:
        new = new[: new.index(eos)]
    while new and new[-1] == tokenizer.pad_token_id:
        new.pop()
    text = tokenizer.decode(new, skip_special_tokens=True)
    text, hit_stop = responses.apply_stop(text, body.get("stop"))
    finish = "stop" if stopped or hit_stop or len(new) < limit else "length"
    return text, finish, len(new)


def _stopping(stop: threading.Event | None, pause: Callable[[], None] | None = None) -> Any:
    """generate()'s per-token hook: `pause` may hold the generation between two tokens;
    a set `stop` ends it."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Stopped(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
            if pause is not None:
                pause()
            return stop is not None and stop.is_set()

    return StoppingCriteriaList([Stopped()])


def pauser(torch: Any, baton: Baton, stop: threading.Event | None) -> Callable[[], None]:
    """What batch work calls where it may hand the model to realtime calls (`Baton`).
    The random state is put back after them, so a seeded sampling writes what it would
    have written alone."""

    def pause() -> None:
        if baton.wanted:
            state = _rng_state(torch)
            baton.yield_to_urgent(stop)
            _set_rng_state(torch, state)

    return pause


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        # Cut short: these answers are not the model's; nothing is recorded.
        raise EngineError("the call was stopped", retryable=True, status_code=503)


def _rng_state(torch: Any) -> tuple[Any, Any]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(torch: Any, state: tuple[Any, Any]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def _text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
