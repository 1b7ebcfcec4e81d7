"""A model whose outputs are NaN for some instances: a 422 naming each of them (never a 500,
never NaN in a response), and the same app answers the next request."""

from __future__ import annotations

from pathlib import Path

from tests.api.conftest import AppFactory
from tests.helpers import UNSTABLE, NanAboveThree, write_unstable_model

FINITE = [0.1, 0.2, 0.3, 0.1]
NAN = [2.0, 2.0, 0.0, 0.0]  # sums to more than 3


def test_instances_with_non_finite_outputs_are_named(make_app: AppFactory, tmp_path: Path) -> None:
    write_unstable_model(tmp_path / "repo", NanAboveThree())
    client = make_app(model_repo=tmp_path / "repo").test_client()
    instances = [FINITE, NAN, FINITE, NAN]
    for action, extra in (("explain", {"methods": ["saliency"]}), ("predict", {})):
        response = client.post(
            f"/v1/models/{UNSTABLE}/{action}", json={"instances": instances, **extra}
        )
        assert response.status_code == 422, action
        problem = response.get_json()
        assert problem["title"] == "Model output not finite"
        assert "for 2 of the 4 instances" in problem["detail"]
        assert [item["loc"] for item in problem["errors"]] == [["instances", 1], ["instances", 3]]
    body = {"instances": [FINITE], "methods": ["saliency"]}
    assert client.post(f"/v1/models/{UNSTABLE}/explain", json=body).status_code == 200
