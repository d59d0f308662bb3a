"""dltool serve with a run whose first layer is a Backbone (issue 23): raw pixels and uploaded photos in, the
answers `dltool predict` gives. The server listens on 127.0.0.1 only, in a thread, for this one test."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_support import running_server

from dltool.config import load_config

pytestmark = pytest.mark.slow  # a trained run (conftest's backbone_run)


def test_serve_answers_raw_pixels_and_uploaded_photos_as_predict_does(backbone_run):
    from PIL import Image

    from dltool.commands.predict import predict
    from dltool.serving.servable import ServedModel

    photos = sorted(Path(load_config(backbone_run.file("config.yaml")).data.path).rglob("*.png"))[::6]
    offline = json.loads(predict(backbone_run, photos, fmt="json").output)
    expected = np.array([list(record["probabilities"].values()) for record in offline])
    served = ServedModel.open(backbone_run)
    served.warm_up()
    pixels = [np.asarray(Image.open(path).convert("RGB")).tolist() for path in photos]  # 0-255, as in the files
    with running_server(served, max_batch=8, batch_wait_ms=2) as (url, _):
        with httpx.Client(base_url=url, timeout=60) as client:
            answer = client.post(f"/v1/models/{served.name}:predict", json={"instances": pixels})
            uploaded = client.post(
                f"/v1/models/{served.name}:label", files={"file": (photos[0].name, photos[0].read_bytes())}
            )
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=1e-5, atol=1e-6)
    assert uploaded.status_code == 200, uploaded.text
    (labelled,) = uploaded.json()["predictions"]
    assert labelled["label"] == offline[0]["label"]
    np.testing.assert_allclose(list(labelled["probabilities"].values()), expected[0], rtol=1e-5, atol=1e-6)
