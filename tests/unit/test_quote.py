from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from slackwater.config import ModelConfig
from slackwater.domain.bodies import prompt_text
from slackwater.domain.model import Catalog
from slackwater.runtime.quote import quote_file

CATALOG = Catalog(
    [
        ModelConfig(
            name="cheap",
            engine="fake",
            endpoints=["/v1/chat/completions"],
            price={"input": "2", "output": "4"},
            batch_price={"input": "1", "output": "2"},
        ).to_model(),
        ModelConfig(
            name="other",
            engine="fake",
            endpoints=["/v1/chat/completions"],
            price={"input": "10", "output": "10"},
        ).to_model(),
    ]
)


def line(i: int, model: str, **body: object) -> str:
    return json.dumps(
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": "a b c"}], **body},
        }
    )


def test_quote_prices_each_model_per_tier_and_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        "\n".join(
            [
                line(1, "cheap", max_tokens=100),
                line(2, "cheap"),  # no max_tokens: the default bound applies
                line(3, "other", max_tokens=10),
                line(4, "missing"),
            ]
        )
        + "\n"
    )
    words = {"cheap": lambda text: len(text.split())}  # a stand-in tokenizer
    quote = quote_file(path, CATALOG, words, default_max_tokens=50)
    assert [(e.line, e.code) for e in quote.errors] == [(4, "model_not_found")]
    cheap, other = sorted(quote.models, key=lambda q: q.model)
    assert (cheap.requests, cheap.prompt_tokens, cheap.output_tokens) == (2, 8, 150)
    assert not cheap.estimated and other.estimated
    assert cheap.cost == {
        "realtime": Decimal(2 * 8 + 4 * 150) / 1_000_000,
        "batch": Decimal(1 * 8 + 2 * 150) / 1_000_000,
    }
    assert other.cost["batch"] == other.cost["realtime"]  # no batch price: realtime applies


def test_prompt_text_of_each_endpoint() -> None:
    assert prompt_text({"messages": [{"role": "user", "content": "hi"}]}) == "user: hi"
    assert prompt_text({"prompt": "once"}) == "once"
    assert prompt_text({"input": ["a", "b"]}) == "a\nb"
