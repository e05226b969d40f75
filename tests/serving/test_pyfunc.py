"""The champion as an MLflow model: `mlflow.pyfunc.load_model("models:/lensflow-encoder@champion")` embeds photos
and texts exactly as lensflow's search does, and `mlflow models serve` answers with the same vectors."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import free_port, served_project


@pytest.fixture(scope="module")
def champion(tmp_path_factory, prefect_harness):
    with served_project(tmp_path_factory.mktemp("pyfunc"), {"LENSFLOW_SWAP_POLL_S": "600"}, epochs=2) as served:
        yield served


def photo() -> bytes:
    buf = io.BytesIO()
    im = Image.new("RGB", (64, 48), (235, 235, 235))
    im.paste((40, 60, 210), (16, 10, 44, 40))
    im.save(buf, "PNG")
    return buf.getvalue()


def lensflow_vectors(service, s, text: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """What the running service searches with (serving.search, the served pair)."""
    from lensflow.serving import search as S

    cur = service.app.state.watcher.live
    image = S.decode_image(data, s.max_image_pixels, s.max_image_side, S.photo_side(cur.served.encoder))
    return S.text_vector(cur.served, text), S.image_vector(cur.served, image)


@pytest.mark.service
def test_pyfunc_champion_embeds_exactly_as_lensflow(champion):
    import mlflow
    import mlflow.pyfunc

    service, s, _ = champion
    mlflow.set_tracking_uri(s.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{s.registered_model}@champion")
    sig = model.metadata.signature
    assert [c.name for c in sig.inputs.inputs] == ["image", "text"] and sig.outputs.inputs[0].name == "embeddings"
    data = photo()
    out = model.predict(pd.DataFrame({"image": [data, None], "text": [None, "Blue shoe"]}))
    text_vec, image_vecs = lensflow_vectors(service, s, "Blue shoe", data)
    np.testing.assert_allclose(np.asarray(out["embeddings"][1])[0], text_vec, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out["embeddings"][0]), image_vecs, atol=1e-6)
    with pytest.raises(Exception, match="needs an `image`"):
        model.predict(pd.DataFrame({"text": [""]}))


@pytest.mark.integration
def test_mlflow_models_serve_answers_with_the_same_vectors(champion):
    service, s, _ = champion
    port = free_port()
    venv_bin = str(Path(sys.executable).parent)  # MLflow starts `uvicorn` from PATH, as an activated venv has it
    env = {**os.environ, "MLFLOW_TRACKING_URI": s.tracking_uri, "PATH": venv_bin + os.pathsep + os.environ["PATH"]}
    mlflow_bin = str(Path(venv_bin) / "mlflow")
    cmd = [mlflow_bin, "models", "serve", "-m", f"models:/{s.registered_model}@champion", "--env-manager", "local"]
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline, url = time.monotonic() + 180, f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        if proc.poll() is not None:
            pytest.fail("mlflow models serve exited:\n" + proc.communicate()[0][-3000:])
        data = photo()
        predictions = []
        for records in ([{"text": "Blue shoe"}], [{"image": base64.b64encode(data).decode()}]):  # one column each
            r = httpx.post(f"{url}/invocations", json={"dataframe_records": records}, timeout=60)
            assert r.status_code == 200, r.text
            predictions += r.json()["predictions"]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert len(predictions) == 2, out[-3000:]
    text_vec, image_vecs = lensflow_vectors(service, s, "Blue shoe", data)
    np.testing.assert_allclose(np.asarray(predictions[0]["embeddings"])[0], text_vec, atol=1e-5)
    np.testing.assert_allclose(np.asarray(predictions[1]["embeddings"]), image_vecs, atol=1e-5)
