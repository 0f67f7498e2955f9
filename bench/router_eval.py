"""How well does the learned router trade cost for quality, on subjects it never saw?

Data: a folder of CSVs (one per subject), columns `prompt`, then one True/False column
per model saying whether it answered correctly; the first model column is the weak
(cheap) model, the second the strong one (RouteLLM's MMLU format, ../shared/data/routing).
Prompts are embedded with the local MiniLM; the router is the one live routing serves
(slackwater.policy.quality.LearnedRouter), fitted on the training prompts only, and
prompts are ranked as `max_quality_drop` ranks them: by the strong model's predicted
quality less the weak one's. Evaluation is grouped k-fold over subjects: every prompt is
scored by a router trained only on other subjects.

Printed per policy (also `min_quality` alone, thresholding the weak model's own
prediction): APGR (average performance gap recovered over the strong-call share),
CPT(50%) and CPT(80%) (strong-call share needed to recover that much of the gap), the
strong-call share and cost saving at 95% of the strong model's quality, beside random
routing, always-weak, always-strong and an oracle. Also the router's overhead per request.

    python bench/router_eval.py [--data DIR] [--folds 5] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slackwater.app import router_dtype
from slackwater.config import Settings
from slackwater.domain.errors import ConfigError
from slackwater.engines.transformers import TransformersEngine, embed_texts
from slackwater.policy.quality import LearnedRouter
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


def held_out_predictions(
    vectors: NDArray[np.float32],
    prompts: list[str],
    subjects: list[str],
    outcomes: NDArray[np.float32],
    models: list[str],
    folds: int,
    seed: int,
) -> NDArray[np.float64]:
    """Every prompt's per-model P(success) from a router fitted without its subject."""
    names = sorted(set(subjects))
    np.random.default_rng(seed).shuffle(names)
    fold_of = {name: i % folds for i, name in enumerate(names)}
    fold = np.asarray([fold_of[s] for s in subjects])
    predicted = np.zeros((len(prompts), len(models)))
    for k in range(folds):
        train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        router = LearnedRouter.fit(
            models, vectors[train], [prompts[i] for i in train], outcomes[train]
        )
        predicted[test] = router.predict(vectors[test], [prompts[i] for i in test])
    return predicted


def curve(score: NDArray[np.float64], outcomes: NDArray[np.float32]) -> NDArray[np.float64]:
    """Accuracy when the top `share` of prompts by score go to the strong model."""
    order = np.argsort(-score, kind="stable")
    weak, strong = outcomes[order, 0], outcomes[order, 1]
    # Sending the first n prompts to the strong model: strong's hits on them + weak's rest.
    gain = np.concatenate([[0.0], np.cumsum(strong - weak)])
    base = weak.sum()
    n = np.rint(GRID * len(score)).astype(int)
    return np.asarray((base + gain[n]) / len(score), dtype=np.float64)


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

    # Each partition of the subjects into folds gives one held-out curve; their mean is
    # the figure (one partition's saving at 95% moves by several points).
    # The served decision: the weak model unless the strong one's predicted quality is
    # more than `max_quality_drop` higher, i.e. prompts ranked by the predicted gap.
    # Beside it, `min_quality` alone: the weak model whenever its own prediction is high.
    seeds = [int(x) for x in args.seeds.split(",")]
    learned_curves, absolute_curves, gaps, per_partition = [], [], [], []
    names = sorted(set(subjects))
    for seed in seeds:
        p = held_out_predictions(vectors, prompts, subjects, outcomes, models, args.folds, seed)
        gaps.append(p[:, 1] - p[:, 0])
        learned_curves.append(curve(gaps[-1], outcomes))
        absolute_curves.append(curve(-p[:, 0], outcomes))
    rng = np.random.default_rng(seeds[0])

    weak_acc, strong_acc = (float(v) for v in outcomes[:, :2].mean(0))
    prices = (args.weak_price, args.strong_price)
    oracle = (outcomes[:, 1] - outcomes[:, 0]).astype(np.float64)
    random_curve = weak_acc + GRID * (strong_acc - weak_acc)
    policies = {
        "slackwater (learned)": np.mean(learned_curves, axis=0),
        "min_quality alone": np.mean(absolute_curves, axis=0),
        "random": random_curve,
        "oracle": curve(oracle + 1e-9 * rng.random(len(oracle)), outcomes),
    }
    results: dict[str, Any] = {
        name: summarise(acc, weak_acc, strong_acc, prices) for name, acc in policies.items()
    }
    for seed, one_curve in zip(seeds, learned_curves, strict=True):
        found = summarise(one_curve, weak_acc, strong_acc, prices)
        per_partition.append(
            {"seed": seed, "apgr": found["apgr"], "saving_at_95": found["saving_at_95"]}
        )
    # Calibration: the max_quality_drop that sends that share of prompts to the strong
    # model, so a user can ask for "95% of the strong model's quality" on such data.
    share95 = results["slackwater (learned)"]["strong_share_at_95"]
    drop95 = None
    if share95 is not None:
        drop95 = round(float(np.mean([np.quantile(g, 1 - share95) for g in gaps])), 4)
    results["slackwater (learned)"]["max_quality_drop_at_95"] = drop95
    results["always weak"] = {"accuracy": round(weak_acc, 4), "cost_per_mtok": prices[0]}
    results["always strong"] = {"accuracy": round(strong_acc, 4), "cost_per_mtok": prices[1]}

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
    summary = {
        "data": str(args.data),
        "prompts": len(prompts),
        "subjects": len(names),
        "folds": args.folds,
        "partitions": per_partition,
        "models": {"weak": models[0], "strong": models[1]},
        "policies": results,
        "embedding": {"max_tokens": args.max_tokens, "dtype": dtype},
        "router_overhead_ms": {
            "one_at_a_time": round(one, 2),
            "batched": round(batched, 2),
            "share_of_cheap_model_latency": round(batched / args.cheap_latency_ms, 5),
        },
    }
    if args.json:
        mine = results["slackwater (learned)"]
        print(
            json.dumps(
                {
                    "apgr": mine["apgr"],
                    "cpt50": mine["cpt50"],
                    "cpt80": mine["cpt80"],
                    "saving_at_95": mine["saving_at_95"],
                    "max_quality_drop_at_95": mine["max_quality_drop_at_95"],
                    **summary,
                }
            )
        )
        return
    print(
        f"{len(prompts)} prompts, {len(names)} subjects, {args.folds}-fold by subject "
        f"(scored only by routers that never saw the subject), mean of {len(seeds)} partitions"
    )
    print(f"weak {models[0]}: accuracy {weak_acc:.3f}; strong {models[1]}: {strong_acc:.3f}")
    print(f"{'policy':<22}{'APGR':>7}{'CPT50':>8}{'CPT80':>8}{'strong@95%':>12}{'saving@95%':>12}")
    for name in ("slackwater (learned)", "min_quality alone", "random", "oracle"):
        r = results[name]
        cells = [r["apgr"], r["cpt50"], r["cpt80"], r["strong_share_at_95"], r["saving_at_95"]]
        text = [f"{c:.3f}" if isinstance(c, float) else "n/a" for c in cells]
        print(f"{name:<22}{text[0]:>7}{text[1]:>8}{text[2]:>8}{text[3]:>12}{text[4]:>12}")
    if drop95 is not None:
        print(f"{'':<22}at 95%: max_quality_drop = {drop95:.3f} (held out, mean of partitions)")
    print(f"{'always weak':<22}{'':>7}{'':>8}{'':>8}{'0.000':>12}  accuracy {weak_acc:.3f}")
    print(f"{'always strong':<22}{'':>7}{'':>8}{'':>8}{'1.000':>12}  accuracy {strong_acc:.3f}")
    print(
        f"router overhead per request ({dtype}, first {args.max_tokens} tokens): "
        f"{one:.1f} ms alone, {batched:.2f} ms batched "
        f"({batched / args.cheap_latency_ms:.3%} of a {args.cheap_latency_ms:.0f} ms cheap answer)"
    )
    for row in per_partition:
        print(f"  partition {row['seed']}: APGR {row['apgr']}, saving@95% {row['saving_at_95']}")
    print("reference: RouteLLM reports ~45% saving at 95% of GPT-4's quality on MMLU")


if __name__ == "__main__":
    main()
