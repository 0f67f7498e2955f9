"""How well does the learned router trade cost for quality, on subjects it never saw?

Data: a folder of CSVs (one per subject), columns `prompt`, then one True/False column
per model saying whether it answered correctly; the first model column is the weak
(cheap) model, the second the strong one (RouteLLM's MMLU format, ../shared/data/routing).
Prompts are embedded with the local MiniLM.

A third of the subjects is held out by a rule fixed before any method was compared on it
(`held_out_subjects`). Methods are chosen by grouped k-fold over the other (development)
subjects only; the headline is each method fitted on every development subject and
judged once on the held-out ones. Methods: the router live routing serves
(slackwater.policy.quality.LearnedRouter, prompts ranked as `max_quality_drop` ranks
them), its weak-model prediction alone (`min_quality`), and what the literature does:
RouteLLM's matrix factorisation, a calibrated success predictor per model, the
neighbours' vote with its width learned, and the prompt's shape alone.

Printed per method: APGR (average performance gap recovered over the strong-call share),
CPT(50%) and CPT(80%) (strong-call share needed to recover that much of the gap), the
strong-call share and cost saving at 95% of the strong model's quality, beside random
routing and an oracle; the held-out APGR when fitted on fewer subjects; the router's
overhead per request.

    python bench/router_eval.py [--data DIR] [--folds 5] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression

from slackwater.app import router_dtype
from slackwater.config import Settings
from slackwater.domain.errors import ConfigError
from slackwater.engines.transformers import TransformersEngine, embed_texts
from slackwater.policy.quality import LearnedRouter, NeighbourQuality, text_shape
from slackwater.runtime.learned import LearnedQuality, read_outcomes

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "routing" / "mmlu"
GRID = np.linspace(0, 1, 101)


def load(folder: Path) -> tuple[list[str], list[str], NDArray[np.float32], list[str]]:
    """Prompts, their subject, outcomes (rows x models) and the model names."""
    try:
        labelled = read_outcomes(folder)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    return labelled.prompts, labelled.groups, labelled.outcomes, labelled.models


def contaminated(folder: Path) -> set[str]:
    path = folder.parent / f"{folder.name}-contaminated_prompts.jsonl"
    if not path.exists():
        return set()
    return {
        json.loads(line)["eval_prompt"] for line in path.read_text().splitlines() if line.strip()
    }


def embedding_engine(max_tokens: int, dtype: str) -> TransformersEngine:
    """The router's embedding model, reading the first `max_tokens` of each prompt."""
    model = Settings.load().catalog()[0]
    options = {**model.options, "dtype": dtype}
    return TransformersEngine(replace(model, context_window=max_tokens, options=options))


def embed(prompts: list[str], cache_dir: Path, max_tokens: int, dtype: str) -> NDArray[np.float32]:
    digest = hashlib.sha256("\x00".join(prompts).encode()).hexdigest()[:16]
    cached = cache_dir / f"minilm-{digest}-{max_tokens}-{dtype}.npy"
    if cached.exists():
        return np.load(cached)
    matrix: NDArray[np.float32] = embed_texts(embedding_engine(max_tokens, dtype), prompts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cached, matrix)
    return matrix


def held_out_subjects(subjects: list[str]) -> set[str]:
    """The subjects no choice is made on: a third of them, by the SHA-256 of their names.

    Fixed on 2026-11-29, before any method or feature below was compared on this split;
    every choice since is made by cross-validation on the other subjects only.
    """
    names = sorted(set(subjects), key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    return set(names[: len(names) // 3]) if len(names) > 2 else set(names[:1])


@dataclass(frozen=True)
class Data:
    vectors: NDArray[np.float32]
    prompts: list[str]
    subjects: list[str]
    outcomes: NDArray[np.float32]  # rows x (weak, strong)
    models: list[str]


Scorer = Callable[[Data, NDArray[np.int64], NDArray[np.int64]], NDArray[np.float64]]


_SERVED: dict[tuple[int, bytes, bytes], NDArray[np.float64]] = {}


def _served(data: Data, train: NDArray[np.int64], test: NDArray[np.int64]) -> NDArray[np.float64]:
    """The served router fitted on `train`, its (weak, strong) predictions for `test`:
    fitted once per split, as two methods read it."""
    key = (id(data), train.tobytes(), test.tobytes())
    if key not in _SERVED:
        vectors, prompts, outcomes = data.vectors, data.prompts, data.outcomes
        router = LearnedRouter.fit(
            data.models, vectors[train], [prompts[i] for i in train], outcomes[train]
        )
        predicted = router.predict(vectors[test], [prompts[i] for i in test])
        _SERVED[key] = np.asarray(predicted, dtype=np.float64)
    return _SERVED[key]


def learned(data: Data, train: NDArray[np.int64], test: NDArray[np.int64]) -> NDArray[np.float64]:
    """The served router: strong's predicted quality less weak's (`max_quality_drop`)."""
    p = _served(data, train, test)
    return p[:, 1] - p[:, 0]


def min_quality(
    data: Data, train: NDArray[np.int64], test: NDArray[np.int64]
) -> NDArray[np.float64]:
    """The served router's weak-model prediction alone (`min_quality`)."""
    return -_served(data, train, test)[:, 0]


def matrix_factorisation(
    data: Data, train: NDArray[np.int64], test: NDArray[np.int64]
) -> NDArray[np.float64]:
    """RouteLLM's matrix factorisation: P(strong beats weak) = sigmoid(w . (v_strong -
    v_weak) * (W q + b)), trained on the prompts where one model wins. With two models
    that is a logistic regression on the prompt's embedding q, which is what is fitted."""
    vectors, outcomes = data.vectors, data.outcomes
    decided = train[outcomes[train, 0] != outcomes[train, 1]]
    if len(set(outcomes[decided, 1])) < 2:  # one model always wins: nothing to rank by
        return np.zeros(len(test))
    model = LogisticRegression(C=0.1, max_iter=2000).fit(vectors[decided], outcomes[decided, 1])
    return np.asarray(model.predict_proba(vectors[test])[:, 1], dtype=np.float64)


def per_model(data: Data, train: NDArray[np.int64], test: NDArray[np.int64]) -> NDArray[np.float64]:
    """A calibrated success predictor per model (logistic on the embedding), subtracted."""
    vectors, outcomes = data.vectors, data.outcomes

    def chance(m: int) -> NDArray[np.float64]:
        seen = outcomes[train, m]
        if len(set(seen)) < 2:  # always right (or always wrong) here
            return np.full(len(test), float(seen[0]))
        fitted = LogisticRegression(C=0.1, max_iter=2000).fit(vectors[train], seen)
        return np.asarray(fitted.predict_proba(vectors[test])[:, 1], dtype=np.float64)

    return chance(1) - chance(0)


def knn_learned_width(
    data: Data, train: NDArray[np.int64], test: NDArray[np.int64]
) -> NDArray[np.float64]:
    """The neighbours' vote alone, its width (temperature) picked by cross-validation
    over the training subjects."""
    vectors, outcomes, models = data.vectors, data.outcomes, data.models

    def vote(
        temperature: float, fit: NDArray[np.int64], score: NDArray[np.int64]
    ) -> NDArray[np.float64]:
        near = NeighbourQuality(models, temperature=temperature)
        near.observe(vectors[fit], outcomes[fit])
        p = near.predict(vectors[score])
        return np.asarray(p[:, 1] - p[:, 0], dtype=np.float64)

    inner = _folds([data.subjects[i] for i in train], 3, 0)
    best, best_apgr = 0.1, -np.inf
    for temperature in (0.03, 0.1, 0.3) if inner.max() > 0 else ():
        score = np.zeros(len(train))
        for k in range(inner.max() + 1):
            fit, held = np.flatnonzero(inner != k), np.flatnonzero(inner == k)
            score[held] = vote(temperature, train[fit], train[held])
        found = _apgr(curve(score, outcomes[train]), outcomes[train])
        if found > best_apgr:
            best, best_apgr = temperature, found
    return vote(best, train, test)


def shape_alone(
    data: Data, train: NDArray[np.int64], test: NDArray[np.int64]
) -> NDArray[np.float64]:
    """The prompt's shape (`text_shape`) alone, regressed on the gain: no embedding."""
    prompts, outcomes = data.prompts, data.outcomes
    x = np.column_stack([text_shape(prompts), np.ones(len(prompts))])
    gain = outcomes[:, 1].astype(np.float64) - outcomes[:, 0]
    weights = np.linalg.lstsq(x[train], gain[train], rcond=None)[0]
    return np.asarray(x[test] @ weights, dtype=np.float64)


def _folds(subjects: list[str], folds: int, seed: int) -> NDArray[np.int64]:
    """Each prompt's fold, whole subjects to a fold, in a partition drawn by `seed`."""
    names = sorted(set(subjects))
    np.random.default_rng(seed).shuffle(names)
    fold_of = {name: i % min(folds, len(names)) for i, name in enumerate(names)}
    return np.asarray([fold_of[s] for s in subjects], dtype=np.int64)


def cross_validated(scorer: Scorer, data: Data, folds: int, seed: int) -> NDArray[np.float64]:
    """Every prompt's score from a router fitted without its subject."""
    fold = _folds(data.subjects, folds, seed)
    score = np.zeros(len(data.subjects))
    for k in range(fold.max() + 1):
        train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        score[test] = scorer(data, train, test)
    return score


def curve(score: NDArray[np.float64], outcomes: NDArray[np.float32]) -> NDArray[np.float64]:
    """Accuracy when the top `share` of prompts by score go to the strong model."""
    order = np.argsort(-score, kind="stable")
    weak, strong = outcomes[order, 0], outcomes[order, 1]
    # Sending the first n prompts to the strong model: strong's hits on them + weak's rest.
    gain = np.concatenate([[0.0], np.cumsum(strong - weak)])
    base = weak.sum()
    n = np.rint(GRID * len(score)).astype(int)
    return np.asarray((base + gain[n]) / len(score), dtype=np.float64)


def _apgr(accuracy: NDArray[np.float64], outcomes: NDArray[np.float32]) -> float:
    weak, strong = (float(v) for v in outcomes[:, :2].mean(0))
    return float(np.trapezoid((accuracy - weak) / (strong - weak), GRID))


def summarise(
    accuracy: NDArray[np.float64], weak: float, strong: float, prices: tuple[float, float]
) -> dict[str, float | None]:
    pgr = (accuracy - weak) / (strong - weak)
    apgr = float(np.trapezoid(pgr, GRID))

    def first(mask: NDArray[np.bool_]) -> float | None:
        hits = np.flatnonzero(mask)
        return float(GRID[hits[0]]) if len(hits) else None

    share95 = first(accuracy >= 0.95 * strong)
    saving = None
    if share95 is not None:
        cost = share95 * prices[1] + (1 - share95) * prices[0]
        saving = 1 - cost / prices[1]
    return {
        "apgr": round(apgr, 4),
        "cpt50": first(pgr >= 0.5),
        "cpt80": first(pgr >= 0.8),
        "strong_share_at_95": share95,
        "saving_at_95": None if saving is None else round(saving, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--seeds",
        default="0,1,2,3,4,5",
        help="partitions of the subjects into folds; the curve is their mean",
    )
    parser.add_argument(
        "--keep-contaminated",
        action="store_true",
        help="also evaluate on prompts RouteLLM trained on",
    )
    parser.add_argument(
        "--weak-price",
        type=float,
        default=0.24,
        help="USD per million tokens (RouteLLM's Mixtral figure)",
    )
    parser.add_argument(
        "--strong-price",
        type=float,
        default=24.7,
        help="USD per million tokens (RouteLLM's GPT-4 figure)",
    )
    parser.add_argument(
        "--cheap-latency-ms",
        type=float,
        default=2000.0,
        help="a cheap model's time per answer, to express the overhead in",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=Settings.load().router_max_tokens,
        help="embed each prompt from its first N tokens (the router_max_tokens setting)",
    )
    parser.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16"],
        default=Settings.load().router_dtype,
        help="the embedding's number format (the router_dtype setting)",
    )
    parser.add_argument("--cache", type=Path, default=ROOT / ".slackwater" / "cache")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    prompts, subjects, outcomes, models = load(args.data)
    if not args.keep_contaminated:
        skip = contaminated(args.data)
        keep = [i for i, p in enumerate(prompts) if p not in skip]
        prompts = [prompts[i] for i in keep]
        subjects = [subjects[i] for i in keep]
        outcomes = outcomes[keep]
    dtype = router_dtype(args.dtype, Settings.load().catalog()[0].options.get("dtype"))
    vectors = embed(prompts, args.cache, args.max_tokens, dtype)
    data = Data(vectors, prompts, subjects, outcomes, models)
    held = held_out_subjects(subjects)
    is_held = np.asarray([s in held for s in subjects])
    dev_rows, held_rows = np.flatnonzero(~is_held), np.flatnonzero(is_held)
    dev = Data(
        vectors[dev_rows],
        [prompts[i] for i in dev_rows],
        [subjects[i] for i in dev_rows],
        outcomes[dev_rows],
        models,
    )
    prices = (args.weak_price, args.strong_price)
    seeds = [int(x) for x in args.seeds.split(",")]
    rng = np.random.default_rng(seeds[0])

    def baselines(found: NDArray[np.float32]) -> dict[str, NDArray[np.float64]]:
        weak, strong = (float(v) for v in found[:, :2].mean(0))
        oracle = (found[:, 1] - found[:, 0]).astype(np.float64)
        return {
            "random": weak + GRID * (strong - weak),
            "oracle": curve(oracle + 1e-9 * rng.random(len(oracle)), found),
        }

    def table(curves: dict[str, NDArray[np.float64]], found: NDArray[np.float32]) -> dict[str, Any]:
        weak, strong = (float(v) for v in found[:, :2].mean(0))
        return {name: summarise(acc, weak, strong, prices) for name, acc in curves.items()}

    # 1. Choosing: each method by grouped k-fold over the development subjects only (the
    # mean curve of several partitions: one partition moves the saving by several points).
    dev_curves, dev_gaps = {}, []
    for name, scorer in METHODS.items():
        runs = [cross_validated(scorer, dev, args.folds, seed) for seed in seeds]
        if scorer is learned:
            dev_gaps = runs
        dev_curves[name] = np.mean([curve(r, dev.outcomes) for r in runs], axis=0)
    development = table({**dev_curves, **baselines(dev.outcomes)}, dev.outcomes)
    # The max_quality_drop that keeps 95% of the strong model's quality, chosen here too.
    share95 = development[SERVED]["strong_share_at_95"]
    drop95 = None
    if share95 is not None:
        drop95 = round(float(np.mean([np.quantile(g, 1 - share95) for g in dev_gaps])), 4)

    # 2. The headline: fitted on every development subject, judged once on the held-out ones.
    test = outcomes[held_rows]
    held_curves = {
        name: curve(scorer(data, dev_rows, held_rows), test) for name, scorer in METHODS.items()
    }
    held_out = table({**held_curves, **baselines(test)}, test)
    weak_acc, strong_acc = (float(v) for v in test[:, :2].mean(0))
    held_out["always weak"] = {"accuracy": round(weak_acc, 4), "cost_per_mtok": prices[0]}
    held_out["always strong"] = {"accuracy": round(strong_acc, 4), "cost_per_mtok": prices[1]}
    held_out[SERVED]["max_quality_drop_at_95"] = drop95

    # 3. With fewer subjects to learn from: the served router on the held-out subjects,
    # fitted on a random few of the development subjects (mean of three draws).
    dev_names = sorted(set(dev.subjects))
    fewer: dict[str, float] = {}
    for count in sorted({n for n in (3, 6, 12) if n < len(dev_names)}):
        found = []
        for draw in range(3):
            chosen = set(np.random.default_rng(draw).choice(dev_names, count, replace=False))
            rows = np.asarray([i for i in dev_rows if subjects[i] in chosen], dtype=np.int64)
            found.append(_apgr(curve(learned(data, rows, held_rows), test), test))
        fewer[str(count)] = round(float(np.mean(found)), 4)
    fewer[str(len(dev_names))] = held_out[SERVED]["apgr"]

    # Overhead: the live routing path itself (runtime/learned.py), one prompt per call
    # as the realtime API routes, and a batch per call as intake does.
    engine = embedding_engine(args.max_tokens, dtype)
    router = LearnedRouter.fit(models, vectors, prompts, outcomes)
    live = LearnedQuality(lambda: router, partial(embed_texts, engine))
    live(["warm up"])
    samples = prompts[:200]
    start = time.perf_counter()
    for prompt in samples:
        live([prompt])
    one = (time.perf_counter() - start) / len(samples) * 1000
    start = time.perf_counter()
    for i in range(0, len(samples), 64):
        live(samples[i : i + 64])
    batched = (time.perf_counter() - start) / len(samples) * 1000
    mine = held_out[SERVED]
    summary = {
        "apgr": mine["apgr"],
        "cpt50": mine["cpt50"],
        "cpt80": mine["cpt80"],
        "saving_at_95": mine["saving_at_95"],
        "max_quality_drop_at_95": drop95,
        "data": str(args.data),
        "prompts": len(prompts),
        "subjects": len(set(subjects)),
        "held_out_subjects": sorted(held),
        "held_out_prompts": len(held_rows),
        "folds": args.folds,
        "models": {"weak": models[0], "strong": models[1]},
        "policies": held_out,
        "development": development,
        "held_out_apgr_by_training_subjects": fewer,
        "embedding": {"max_tokens": args.max_tokens, "dtype": dtype},
        "router_overhead_ms": {
            "one_at_a_time": round(one, 2),
            "batched": round(batched, 2),
            "share_of_cheap_model_latency": round(batched / args.cheap_latency_ms, 5),
        },
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"{len(prompts)} prompts, {len(set(subjects))} subjects; {len(held)} subjects "
        f"({len(held_rows)} prompts) held out by a split fixed before any choice"
    )
    print(f"weak {models[0]}: {weak_acc:.3f}; strong {models[1]}: {strong_acc:.3f} (held out)")
    print_table(f"held out: fitted on the {len(dev_names)} other subjects, judged once", held_out)
    if drop95 is not None:
        print(f"   at 95%: max_quality_drop = {drop95:.3f} (chosen on the development subjects)")
    print(f"   training subjects -> held-out APGR of {SERVED}: {fewer}")
    print()
    print_table(
        f"development: {args.folds}-fold by subject over the {len(dev_names)} development "
        f"subjects, mean of {len(seeds)} partitions (what choices were made on)",
        development,
    )
    print()
    print(
        f"router overhead per request ({dtype}, first {args.max_tokens} tokens): "
        f"{one:.1f} ms alone, {batched:.2f} ms batched "
        f"({batched / args.cheap_latency_ms:.3%} of a {args.cheap_latency_ms:.0f} ms cheap answer)"
    )
    print("reference: RouteLLM reports ~45% saving at 95% of GPT-4's quality on MMLU")


def print_table(title: str, results: dict[str, Any]) -> None:
    print(title)
    print(
        f"   {'policy':<30}{'APGR':>7}{'CPT50':>8}{'CPT80':>8}{'strong@95%':>12}{'saving@95%':>12}"
    )
    for name in (*METHODS, "random", "oracle"):
        r = results[name]
        cells = [r["apgr"], r["cpt50"], r["cpt80"], r["strong_share_at_95"], r["saving_at_95"]]
        text = [f"{c:.3f}" if isinstance(c, float) else "n/a" for c in cells]
        print(f"   {name:<30}{text[0]:>7}{text[1]:>8}{text[2]:>8}{text[3]:>12}{text[4]:>12}")


SERVED = "slackwater (learned)"
METHODS: dict[str, Scorer] = {
    SERVED: learned,
    "min_quality alone": min_quality,
    "matrix factorisation": matrix_factorisation,
    "per-model logistic": per_model,
    "kNN, width learned": knn_learned_width,
    "prompt shape alone": shape_alone,
}

if __name__ == "__main__":
    main()
