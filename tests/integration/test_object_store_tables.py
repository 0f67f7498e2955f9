"""Dataset jobs over tables in an object store: S3's wire protocol, served on loopback by
moto's server (the far side of the network boundary), read by pyarrow's S3 client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract import classical
from tests.integration.conftest import Server
from tests.integration.test_predictions_api import iris, write_table


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> classical.Saved:
    return classical.build(tmp_path_factory.mktemp("classical"))


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    moto = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="tables")
    yield s3
    server.stop()


async def test_a_dataset_job_reads_its_table_from_an_object_store(
    server_factory: Callable[..., Any], saved: classical.Saved, bucket: Any, tmp_path: Path
) -> None:
    ids = write_table(tmp_path / "flowers.csv", saved)
    bucket.upload_file(str(tmp_path / "flowers.csv"), "tables", "daily/flowers.csv")
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    pq.write_table(pcsv.read_csv(tmp_path / "flowers.csv"), tmp_path / "flowers.parquet")
    bucket.upload_file(str(tmp_path / "flowers.parquet"), "tables", "daily/flowers.parquet")
    server: Server = await server_factory(models=[iris(saved)], dataset_uris=["s3://tables/daily/"])
    expected = saved.estimator.predict(saved.rows).tolist()
    for name in ("flowers.csv", "flowers.parquet"):
        made = await server.client.post(
            "/v1/prediction_jobs",
            json={"model": "iris", "dataset": f"s3://tables/daily/{name}", "key": "id",
                  "chunk_rows": 64},
        )  # fmt: skip
        assert made.status_code == 200, made.text
        job = made.json()
        assert job["dataset"] == f"s3://tables/daily/{name}"
        for _ in range(300):
            job = (await server.client.get(f"/v1/prediction_jobs/{job['id']}")).json()
            if job["status"] in {"completed", "failed"}:
                break
            await asyncio.sleep(0.02)
        assert job["status"] == "completed" and job["progress"]["rows"] == 150, job
        assert job["progress"]["chunks"] == 3
    hit = (await server.client.get(f"/v1/predictions/iris/{ids[42]}")).json()
    assert hit["status"] == "present" and hit["prediction"] == expected[42]
    # The API reads objects under the server's dataset_uris only, with no query string
    # (it could point the server's credentials at another endpoint); a missing object
    # is named.
    for dataset, message in [
        ("s3://tables/other/flowers.csv", "not under the server's dataset_uris"),
        ("s3://tables/daily/flowers.csv?endpoint_override=10.0.0.1", "not under"),
        ("s3://tables/daily/../other/flowers.csv", "not under"),
        ("s3://tables/daily/gone.csv", "s3://tables/daily/gone.csv: no such file"),
    ]:
        refused = await server.client.post(
            "/v1/prediction_jobs", json={"model": "iris", "dataset": dataset, "key": "id"}
        )
        assert refused.status_code == 400, (dataset, refused.text)
        assert message in refused.json()["error"]["message"]
        assert refused.json()["error"]["param"] == "dataset"
