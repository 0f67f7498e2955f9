"""What a `worker --ray` leases at a time: a few engine batches, unless told otherwise."""

from __future__ import annotations

from pathlib import Path

from slackwater.app import for_ray, ray_workers
from slackwater.config import ModelConfig, Settings

CHAT = ["/v1/chat/completions"]


def models() -> list[ModelConfig]:
    return [
        ModelConfig(name="a", engine="fake", endpoints=CHAT, max_batch_size=16,
                    ray={"max_actors": 3}),
        ModelConfig(name="b", engine="fake", endpoints=CHAT, max_batch_size=4),
    ]  # fmt: skip


def test_a_ray_worker_leases_two_engine_batches_unless_lease_size_is_set(tmp_path: Path) -> None:
    default = Settings.load(data_dir=tmp_path, models=models())
    assert for_ray(default).lease_size == 32  # two of the widest model's batches
    assert for_ray(default, ["b"]).lease_size == 8
    chosen = Settings.load(data_dir=tmp_path, models=models(), lease_size=100)
    assert for_ray(chosen).lease_size == 100
    assert ray_workers(default) == 4 and ray_workers(default, ["a"]) == 3
