"""Model factory and model bundle (needs torch and timm when building or loading models).

Importing this package does not import torch: the registry is plain data, and the
factory, weight port and bundle functions import torch/timm/safetensors when called.
"""

from wastenet.models.bundle import (
    bundle_hash,
    count_parameters,
    load_bundle,
    save_bundle,
    unwrap_model,
)
from wastenet.models.registry import (
    SPECS,
    ModelSpec,
    create_model,
    default_config,
    get_spec,
    list_models,
)

__all__ = [
    "SPECS",
    "ModelSpec",
    "bundle_hash",
    "count_parameters",
    "create_model",
    "default_config",
    "get_spec",
    "list_models",
    "load_bundle",
    "save_bundle",
    "unwrap_model",
]
