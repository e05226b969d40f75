"""Pure torch/transformers encoders: towers, projection heads, loss, training loop.

Nothing here imports Prefect, MLflow or LanceDB.
"""

from lensflow.models.encoder import DualEncoder, build_encoder, load_encoder, load_preset

__all__ = ["DualEncoder", "build_encoder", "load_encoder", "load_preset"]
