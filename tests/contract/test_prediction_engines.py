"""The prediction engines give what the libraries give: scikit-learn's own predict and
predict_proba over iris (the skops file and its ONNX export), a torch network's own
output; and bad model files are refused with the file named."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slackwater.domain.batch import Endpoint
from slackwater.domain.errors import ConfigError
from slackwater.engines import create_engine
from tests.contract import classical
from tests.contract.test_engines import model


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> classical.Saved:
    return classical.build(tmp_path_factory.mktemp("classical"))


def double(x: Any) -> Any:
    return x * 2


async def predict(engine_name: str, path: Path, body: dict[str, Any], **options: Any) -> Any:
    engine = create_engine(
        model("p", engine_name, [Endpoint.PREDICTIONS], path=str(path), **options)
    )
    await engine.start()
    try:
        [outcome] = await engine.run(Endpoint.PREDICTIONS.value, [{"model": "p", **body}])
    finally:
        await engine.close()
    return outcome


async def test_sklearn_gives_the_estimators_own_answers(saved: classical.Saved) -> None:
    rows = saved.rows.tolist()
    labels = await predict("sklearn", saved.skops, {"inputs": rows})
    assert labels.body["predictions"] == saved.estimator.predict(saved.rows).tolist()
    proba = await predict("sklearn", saved.skops, {"inputs": rows, "output": "predict_proba"})
    assert proba.body["classes"] == [0, 1, 2]
    assert proba.body["predictions"] == saved.estimator.predict_proba(saved.rows).tolist()


async def test_onnx_gives_the_exported_estimators_answers(saved: classical.Saved) -> None:
    rows = saved.rows.tolist()
    labels = await predict("onnx", saved.onnx, {"inputs": rows})
    assert labels.body["predictions"] == saved.estimator.predict(saved.rows).tolist()
    proba = await predict("onnx", saved.onnx, {"inputs": rows, "output": "predict_proba"})
    expected = saved.estimator.predict_proba(saved.rows)
    assert np.allclose(proba.body["predictions"], expected, atol=1e-5)  # float32 in ONNX


async def test_torch_gives_the_networks_own_output(saved: classical.Saved) -> None:
    import torch

    with torch.inference_mode():
        out = saved.network(torch.tensor(saved.rows, dtype=torch.float32))
    raw = await predict("torch", saved.torch, {"inputs": saved.rows.tolist()})
    assert np.allclose(raw.body["predictions"], out.numpy(), atol=1e-6)
    labels = await predict(
        "torch", saved.torch, {"inputs": saved.rows.tolist()}, classes=["setosa", "vc", "vg"]
    )
    names = np.array(["setosa", "vc", "vg"])[out.argmax(dim=1).numpy()].tolist()
    assert labels.body["predictions"] == names


@pytest.mark.gpu
async def test_on_the_gpu_the_answers_are_the_cpus(saved: classical.Saved) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    rows = {"inputs": saved.rows.tolist()}
    cpu = await predict("torch", saved.torch, rows, device="cpu")
    gpu = await predict("torch", saved.torch, rows, device="cuda")
    assert np.allclose(gpu.body["predictions"], cpu.body["predictions"], atol=1e-4)
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        labels = await predict("onnx", saved.onnx, rows)
        assert labels.body["predictions"] == saved.estimator.predict(saved.rows).tolist()


async def test_rows_by_feature_name(saved: classical.Saved) -> None:
    named = [dict(zip(saved.features, row, strict=True)) for row in saved.rows[:5].tolist()]
    got = await predict("sklearn", saved.skops, {"inputs": named}, features=saved.features)
    assert got.body["predictions"] == saved.estimator.predict(saved.rows[:5]).tolist()
    named[2].pop("petal width (cm)")
    missing = await predict("sklearn", saved.skops, {"inputs": named}, features=saved.features)
    assert missing.status_code == 400 and missing.body["error"]["param"] == "inputs[2]"
    assert "missing feature 'petal width (cm)'" in missing.body["error"]["message"]
    nan = saved.rows[:3].tolist()
    nan[1][2] = float("nan")
    refused = await predict("sklearn", saved.skops, {"inputs": nan}, features=saved.features)
    assert refused.body["error"]["message"] == ("inputs[1]: feature 'petal length (cm)' is NaN")


async def test_bad_model_files_are_refused_naming_the_file(
    saved: classical.Saved, tmp_path: Path
) -> None:
    garbage = tmp_path / "model.skops"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ConfigError, match=r"model\.skops is not a model"):
        await predict("sklearn", garbage, {"inputs": [[1, 2, 3, 4]]})
    with pytest.raises(ConfigError, match=r"model\.onnx is not a model"):
        await predict("onnx", garbage.rename(tmp_path / "model.onnx"), {"inputs": [[1, 2]]})

    class Payload:  # what an attacker's pickle does when loaded
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("this ran",))

    unsafe = tmp_path / "model.pkl"
    unsafe.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ConfigError, match="is a pickle, which runs code as it loads"):
        await predict("sklearn", unsafe, {"inputs": [[1, 2, 3, 4]]})
    # A file whose types skops does not trust is refused, naming them.
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    odd = tmp_path / "odd.skops"
    skops.io.dump(FunctionTransformer(double), odd)
    untrusted = skops.io.get_untrusted_types(file=odd)
    with pytest.raises(ConfigError, match="holds types not trusted"):
        await predict("sklearn", odd, {"inputs": [[1.0, 4.0]]})
    trusted = await predict("sklearn", odd, {"inputs": [[1.0, 4.0]]}, trusted=untrusted)
    # A transformer has no predict: its output is its transform.
    assert trusted.status_code == 400 and "gives embedding" in trusted.body["error"]["message"]
    assert (await predict("sklearn", odd, {"inputs": [[1.0, 4.0]], "output": "embedding"},
                          trusted=untrusted)).body["predictions"] == [[2.0, 8.0]]  # fmt: skip


async def test_a_vetted_skops_file_loads_from_its_copy_and_trust_is_not_widened(
    saved: classical.Saved, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    from slackwater.engines.sklearn import SklearnEngine

    cache = tmp_path / "cache"
    rows = {"inputs": saved.rows[:3].tolist()}
    first = await predict("sklearn", saved.skops, rows, cache_dir=str(cache))
    [copy] = (cache / "sklearn").glob("*.joblib")
    # Loaded again, the copy is read: skops (its slow vetting) is not asked.
    vetted = SklearnEngine._vet
    monkeypatch.setattr(SklearnEngine, "_vet", lambda self: pytest.fail("vetted again"))
    again = await predict("sklearn", saved.skops, rows, cache_dir=str(cache))
    assert again.body == first.body
    # A file with types not trusted by default: its copy is made under the trusted list
    # it loaded with, so a load without that list is still refused.
    monkeypatch.setattr(SklearnEngine, "_vet", vetted)
    odd = tmp_path / "odd.skops"
    skops.io.dump(FunctionTransformer(double), odd)
    untrusted = skops.io.get_untrusted_types(file=odd)
    body = {"inputs": [[1.0, 4.0]], "output": "embedding"}
    loaded = await predict("sklearn", odd, body, trusted=untrusted, cache_dir=str(cache))
    assert loaded.body["predictions"] == [[2.0, 8.0]]
    assert len(list((cache / "sklearn").glob("*.joblib"))) == 2
    with pytest.raises(ConfigError, match="holds types not trusted"):
        await predict("sklearn", odd, body, cache_dir=str(cache))
    # A copy that does not load (cut short) is dropped and the file vetted again.
    copy.write_bytes(b"cut sh")
    assert (await predict("sklearn", saved.skops, rows, cache_dir=str(cache))).body == first.body
    assert copy.stat().st_size > 6


async def test_neighbors_are_the_nearest_fitted_rows_by_label(
    saved: classical.Saved, tmp_path: Path
) -> None:
    import skops.io
    from sklearn.neighbors import KNeighborsClassifier

    ids = [f"flower-{i}" for i in range(len(saved.rows))]
    with warnings.catch_warnings():  # a label per row is the point here, not a mistake
        warnings.simplefilter("ignore", UserWarning)
        model = KNeighborsClassifier(n_neighbors=3, algorithm="brute").fit(saved.rows, ids)
    skops.io.dump(model, tmp_path / "near.skops")
    got = await predict(
        "sklearn",
        tmp_path / "near.skops",
        {"inputs": saved.rows[:20].tolist(), "output": "neighbors"},
    )
    nearest = model.kneighbors(saved.rows[:20], return_distance=False)
    assert got.body["predictions"] == [[ids[j] for j in row] for row in nearest]
