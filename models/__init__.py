"""Model repository: read `model.toml`, load artifacts safely, decode inputs, run forward."""

from models.errors import InvalidInput, LimitExceeded, NotFound, ServiceError
from models.handle import ModelHandle
from models.repository import ModelRepository
from models.spec import ModelConfigError, ModelSpec, parse_model_toml

__all__ = [
    "InvalidInput",
    "LimitExceeded",
    "ModelConfigError",
    "ModelHandle",
    "ModelRepository",
    "ModelSpec",
    "NotFound",
    "ServiceError",
    "parse_model_toml",
]
