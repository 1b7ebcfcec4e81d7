"""Parity: our results equal captum, shap and lime called directly with the same settings."""

from __future__ import annotations

import numpy as np
import pytest
import shap
import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
from lime.lime_image import LimeImageExplainer
from lime.lime_tabular import LimeTabularExplainer

from explainer import Engine, ExplainOptions, explain
from explainer.segmentation import segment_image
from models import ModelHandle
from tests.conftest import LOGISTIC_FEATURES
from tests.helpers import square_images

X = torch.tensor([[1.0, 0.8, -0.5, 0.3, -1.2, 0.7], [-0.3, 0.1, 2.0, -1.0, 0.4, 0.0]])


def _images() -> torch.Tensor:
    return torch.from_numpy(square_images(2, seed=5)[0])


def test_integrated_gradients_equal_captum(known_models: dict[str, ModelHandle]) -> None:
    handle = known_models["squares"]
    images = _images()
    options = ExplainOptions(integrated_gradients={"n_steps": 32, "baseline": "zeros"})
    ours = explain(handle, images, ["integrated_gradients"], target=1, options=options)
    direct = IntegratedGradients(handle.forward).attribute(
        images, baselines=torch.zeros_like(images), target=1, n_steps=32
    )
    for result, expected in zip(ours, direct.detach().numpy().sum(axis=1), strict=True):
        np.testing.assert_allclose(
            result.methods["integrated_gradients"].attributions, expected, rtol=1e-4, atol=1e-6
        )


@pytest.mark.parametrize("name", ["squares", "logistic"])
def test_smoothgrad_equals_captums_noise_tunnel(
    known_models: dict[str, ModelHandle], name: str
) -> None:
    """Ours draws the noise itself (once, so the chunk cannot change it) and averages the
    saliency of the noisy copies: the numbers of captum's NoiseTunnel over Saliency, seeded
    with the request's seed, its samples in one batch. Tabular noise is scaled per feature
    (the background's standard deviation), so captum runs on the inputs in those units."""
    handle = known_models[name]
    inputs = _images() if handle.is_image else X
    scale = torch.ones(()) if handle.is_image else handle.background.std(dim=0)  # type: ignore[union-attr]
    options = ExplainOptions(smoothgrad={"nt_samples": 16, "stdev": 0.15})
    ours = explain(handle, inputs, ["smoothgrad"], target=1, options=options, seed=7)
    tunnel = NoiseTunnel(Saliency(lambda z: handle.forward(z * scale)))
    for row, result in zip(inputs, ours, strict=True):
        torch.manual_seed(7)
        direct = tunnel.attribute(
            row[None] / scale, nt_type="smoothgrad", nt_samples=16, stdevs=0.15, target=1, abs=True
        )
        expected = (direct / scale).detach().numpy()[0]
        expected = expected.sum(axis=0) if handle.is_image else expected
        np.testing.assert_allclose(
            result.methods["smoothgrad"].attributions, expected, rtol=1e-5, atol=1e-7
        )


def test_lime_tabular_equals_lime(known_models: dict[str, ModelHandle]) -> None:
    handle = known_models["logistic"]
    assert handle.background is not None
    ours = explain(handle, X, ["lime"], target=1, seed=11)
    for row, result in zip(X.numpy(), ours, strict=True):
        explainer = LimeTabularExplainer(
            handle.background.numpy(),
            mode="regression",
            feature_names=LOGISTIC_FEATURES,
            discretize_continuous=True,
            random_state=11,
        )

        def score(rows: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return handle.forward(torch.from_numpy(rows).float())[:, 1].numpy()

        direct = explainer.explain_instance(
            row.astype(np.float64), score, num_features=6, num_samples=1000
        )
        expected = np.zeros(6)
        for feature, weight in direct.local_exp[1]:
            expected[feature] = weight
        np.testing.assert_allclose(result.methods["lime"].attributions, expected, rtol=1e-6)
        # Ours skips lime's feature selection (it keeps all six features anyway), so the
        # ridge fit sees the columns in another order: equal up to float rounding.
        assert result.methods["lime"].base_value == pytest.approx(direct.intercept[1], rel=1e-12)


def test_lime_image_equals_lime(known_models: dict[str, ModelHandle]) -> None:
    handle = known_models["squares"]
    images = _images()
    options = ExplainOptions(lime={"num_samples": 300})
    # The model itself, as lime calls it: the engine's frozen copy is compared with the
    # model in test_optimisations.
    engine = Engine("cpu", cache_entries=0, inference_copies=False)
    ours = explain(handle, images, ["lime"], target=1, seed=4, options=options, engine=engine)
    for image, result in zip(images, ours, strict=True):
        pixels = image.numpy().transpose(1, 2, 0).astype(np.float64)
        segments = segment_image(pixels)

        def classify(batch: np.ndarray) -> np.ndarray:
            tensor = torch.from_numpy(batch.transpose(0, 3, 1, 2)).float()
            with torch.no_grad():
                return handle.forward(tensor)[:, 1:2].numpy()

        direct = LimeImageExplainer(random_state=4).explain_instance(
            pixels,
            classify,
            labels=(0,),
            top_labels=None,
            num_samples=300,
            batch_size=100,
            segmentation_fn=lambda _, fixed=segments: fixed,
            random_seed=0,
        )
        expected = np.zeros(int(segments.max()) + 1)
        for segment, weight in direct.local_exp[0]:
            expected[segment] = weight
        lime = result.methods["lime"]
        assert lime.segments is not None and lime.segment_weights is not None
        np.testing.assert_array_equal(lime.segments, segments)
        np.testing.assert_allclose(lime.segment_weights, expected, rtol=1e-5, atol=1e-7)


def test_shap_tabular_equals_shap(known_models: dict[str, ModelHandle]) -> None:
    handle = known_models["logistic"]
    assert handle.background is not None
    options = ExplainOptions(shap={"background_size": 1000})
    ours = explain(handle, X, ["shap"], target=1, options=options)

    def score(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return handle.forward(torch.from_numpy(rows).float())[:, 1].numpy()

    masker = shap.maskers.Independent(handle.background.numpy(), max_samples=1000)
    direct = shap.Explainer(score, masker, algorithm="exact")(X.numpy())
    for result, expected, base in zip(ours, direct.values, direct.base_values, strict=True):
        np.testing.assert_allclose(result.methods["shap"].attributions, expected, atol=1e-6)
        assert result.methods["shap"].base_value == np.float64(base).item()


def test_shap_image_equals_shap(known_models: dict[str, ModelHandle]) -> None:
    """Our masker blurs each image once; shap's own blurs it per sample: the same values."""
    handle = known_models["squares"]
    images = _images()
    engine = Engine("cpu", cache_entries=0, inference_copies=False)
    ours = explain(handle, images, ["shap"], target=1, engine=engine)
    for image, result in zip(images, ours, strict=True):
        pixels = image.numpy().transpose(1, 2, 0)

        def score(batch: np.ndarray) -> np.ndarray:
            tensor = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
            with torch.no_grad():
                return handle.forward(tensor.float())[:, 1].numpy()

        masker = shap.maskers.Image("blur(16,16)", pixels.shape)
        direct = shap.Explainer(score, masker, algorithm="partition")(
            pixels[None], max_evals=500, batch_size=256, silent=True
        )
        shap_result = result.methods["shap"]
        np.testing.assert_allclose(
            shap_result.attributions, direct.values[0].sum(axis=-1), rtol=1e-5, atol=1e-7
        )
        assert shap_result.base_value == pytest.approx(float(direct.base_values[0]), abs=1e-6)


def test_lime_tabular_equals_lime_on_a_repeated_request(
    known_models: dict[str, ModelHandle],
) -> None:
    """The second request with a seed reuses the first's drawn neighbourhood, exactly."""
    handle = known_models["logistic"]
    engine = Engine("cpu", cache_entries=0)
    first = explain(handle, X, ["lime"], target=1, seed=11, engine=engine)
    again = explain(handle, X.flip(0), ["lime"], target=1, seed=11, engine=engine)
    other_seed = explain(handle, X, ["lime"], target=1, seed=12, engine=engine)
    for a, b, c in zip(first, again[::-1], other_seed, strict=True):
        weights = a.methods["lime"].attributions
        np.testing.assert_array_equal(weights, b.methods["lime"].attributions)
        assert not np.array_equal(weights, c.methods["lime"].attributions)
