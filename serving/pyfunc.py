"""The encoder as an MLflow pyfunc model, so MLflow's own tools serve and load the champion:

    mlflow.pyfunc.load_model("models:/lensflow-encoder@champion").predict(pd.DataFrame({"text": ["red dress"]}))
    mlflow models serve -m models:/lensflow-encoder@champion --env-manager local

Input: a DataFrame with an `image` column (the photo's bytes; base64 in a JSON request) and/or a `text` column,
one query per row (a row gives one of them). Output, per row, `embeddings`: the vectors lensflow searches with,
exactly as `lensflow search` and the API compute them: one for a text; for a photo the R views of the located
product (models.localize), a catalog product scoring its best over them (tasks.index.best_of).

The registered version's folder is the pyfunc model; the self-contained encoder directory (config, weights,
tokenizer) sits inside it at artifacts/encoder, and lensflow itself loads that (lensflow.core.champion.model_dir).
The model is logged as code (MLflow's "models from code"): this file is copied into the model folder and run
when the model loads, which needs lensflow installed (`--env-manager local`). tasks.tracking writes it."""

from __future__ import annotations

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd

ENCODER = "encoder"  # the artifact name of the encoder directory inside the pyfunc model


def present(value) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and len(value) > 0


class EncoderModel(mlflow.pyfunc.PythonModel):
    """lensflow's dual encoder behind MLflow's predict()."""

    def load_context(self, context) -> None:
        from lensflow.core.settings import Settings
        from lensflow.models.encoder import load_encoder

        self.encoder = load_encoder(context.artifacts[ENCODER])
        self.limits = Settings.model_fields  # the service's photo limits, from their one home

    def embed(self, image: bytes | None, text: str | None) -> list[list[float]]:
        import torch

        from lensflow.serving.search import decode_image, photo_side

        with torch.inference_mode():
            if present(image):
                f = self.limits
                side = photo_side(self.encoder)
                im = decode_image(bytes(image), f["max_image_pixels"].default, f["max_image_side"].default, side)
                return self.encoder.encode_photos([im], [None])[0].cpu().numpy().tolist()
            if present(text):
                return self.encoder.encode_texts([str(text)]).cpu().numpy().tolist()
        raise ValueError("each row needs an `image` (bytes) or a `text`")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        rows = model_input.to_dict("records")
        return pd.DataFrame({"embeddings": [self.embed(r.get("image"), r.get("text")) for r in rows]})


# MLflow "models from code": this file is copied into the model and run at load time; it names the model here.
mlflow.models.set_model(EncoderModel())
