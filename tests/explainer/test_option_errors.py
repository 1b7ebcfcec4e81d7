"""Options the schema allows but this model or input cannot use are a 422 naming them."""

from __future__ import annotations

import pytest
import torch

from explainer import Engine, ExplainOptions, explain
from models import ModelHandle, ModelRepository
from models.errors import InvalidInput
from models.repository import ZOO_DIR


@pytest.fixture(scope="module")
def lesion() -> ModelHandle:
    """The zoo's eager CNN (Grad-CAM needs its layers); 64x64 images."""
    return ModelRepository(ZOO_DIR).load("cpu", only=["lesion-64"]).get("lesion-64")


def _refused(handle: ModelHandle, inputs: torch.Tensor, method: str, options: dict) -> list:
    with pytest.raises(InvalidInput) as raised:
        explain(
            handle,
            inputs,
            [method],
            options=ExplainOptions.model_validate(options),
            engine=Engine(),
        )
    return [item.loc for item in raised.value.errors]


@pytest.mark.parametrize(
    ("occlusion", "loc"),
    [({"window": 65}, "window"), ({"window": 8, "stride": 9}, "stride")],
)
def test_an_occlusion_window_that_does_not_fit_is_refused(
    lesion: ModelHandle, occlusion: dict[str, int], loc: str
) -> None:
    assert lesion.background is not None
    images = lesion.background[:1].clone()
    assert _refused(lesion, images, "occlusion", {"occlusion": occlusion}) == [
        ("options", "occlusion", loc)
    ]


def test_a_window_as_large_as_the_image_may_take_any_stride(lesion: ModelHandle) -> None:
    assert lesion.background is not None
    options = ExplainOptions.model_validate({"occlusion": {"window": 64, "stride": 100}})
    result = explain(lesion, lesion.background[:1].clone(), ["occlusion"], options=options)
    assert result[0].methods["occlusion"].attributions.shape == (64, 64)


def test_a_gradcam_layer_without_a_spatial_output_is_refused(lesion: ModelHandle) -> None:
    assert lesion.background is not None
    images = lesion.background[:1].clone()
    locs = _refused(lesion, images, "gradcam", {"gradcam": {"layer": "classifier"}})
    assert locs == [("options", "gradcam", "layer")]


@pytest.mark.parametrize("method", ["lime", "tree"])
def test_a_lime_kernel_too_narrow_for_any_weight_is_refused(
    known_models: dict[str, ModelHandle], method: str
) -> None:
    handle = known_models["logistic"]
    inputs = torch.tensor([[1.0, 0.8, -0.5, 0.3, -1.2, 0.7]])
    locs = _refused(handle, inputs, method, {"lime": {"kernel_width": 0.01}})
    assert locs == [("options", "lime", "kernel_width")]
