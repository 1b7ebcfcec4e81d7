"""Architectures of the zoo's models (no torchvision, no in-place ops).

`lesion_cnn` is the `factory` of the `lesion-64` model (format "safetensors"); the tabular
modules are exported with TorchScript / torch.export, so loading them needs no code here.
"""

import torch
from torch import nn

# Dotted name of the lesion CNN's last convolution (the model's `gradcam_layer`).
LESION_GRADCAM_LAYER = "features.9"


class LesionCNN(nn.Module):
    """A small CNN for 64x64 RGB input (normalised): four 3x3 convs, global pooling, linear.

    Shapes: (N, 3, 64, 64) -> features (N, 32, 8, 8) -> logits (N, 2).
    """

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),  # 0: (N, 16, 64, 64)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 16, 32, 32)
            nn.Conv2d(16, 16, 3, padding=1),  # 3: (N, 16, 32, 32)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 16, 16, 16)
            nn.Conv2d(16, 32, 3, padding=1),  # 6: (N, 32, 16, 16)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 32, 8, 8)
            nn.Conv2d(32, 32, 3, padding=1),  # 9: (N, 32, 8, 8), the Grad-CAM layer
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def lesion_cnn() -> nn.Module:
    """Factory of the `lesion-64` model: an untrained LesionCNN (weights come from safetensors)."""
    return LesionCNN()


class StandardisedMLP(nn.Module):
    """`breast-cancer`: standardisation inside the model, then a two-hidden-layer MLP.

    Input (N, F) in the features' original units -> logits (N, classes).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int = 2) -> None:
        super().__init__()
        self.register_buffer("mean", mean.clone().float())
        self.register_buffer("std", std.clone().float())
        features = mean.numel()
        self.net = nn.Sequential(
            nn.Linear(features, 32),
            nn.ReLU(),
            nn.Linear(32, 16),
            nn.ReLU(),
            nn.Linear(16, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class MixedTabularMLP(nn.Module):
    """`credit-risk`: numeric and categorical (index-coded) inputs, encoded inside the model.

    Numeric columns `log_columns` are log-transformed (clamped at 1), then every numeric
    column is standardised with `mean`/`std`. Each categorical column with K categories
    becomes a differentiable "hat" one-hot, onehot_k(x) = relu(1 - |x - k|) for k < K: the
    exact one-hot at integer codes, and a linear interpolation between neighbouring
    categories in between, so gradients w.r.t. the code are defined along any path.

    Input (N, F) -> logits (N, classes).
    """

    numeric_columns: torch.Tensor
    is_log: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    hat_columns: torch.Tensor
    hat_codes: torch.Tensor

    def __init__(
        self,
        numeric_columns: list[int],
        log_columns: list[int],
        mean: torch.Tensor,
        std: torch.Tensor,
        categorical_sizes: dict[int, int],
        num_classes: int = 2,
    ) -> None:
        super().__init__()
        is_log = [1.0 if column in log_columns else 0.0 for column in numeric_columns]
        hat_columns = [c for c, size in categorical_sizes.items() for _ in range(size)]
        hat_codes = [float(k) for size in categorical_sizes.values() for k in range(size)]
        self.register_buffer("numeric_columns", torch.tensor(numeric_columns, dtype=torch.long))
        self.register_buffer("is_log", torch.tensor(is_log))
        self.register_buffer("mean", mean.clone().float())
        self.register_buffer("std", std.clone().float())
        self.register_buffer("hat_columns", torch.tensor(hat_columns, dtype=torch.long))
        self.register_buffer("hat_codes", torch.tensor(hat_codes))
        width = len(numeric_columns) + len(hat_codes)
        self.net = nn.Sequential(
            nn.Linear(width, 32),
            nn.ReLU(),
            nn.Linear(32, 16),
            nn.ReLU(),
            nn.Linear(16, num_classes),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, F) raw inputs -> (N, numeric + one-hot width) encoded features."""
        numeric = torch.index_select(x, 1, self.numeric_columns)
        logged = torch.log(torch.clamp(numeric, min=1.0))
        numeric = self.is_log * logged + (1.0 - self.is_log) * numeric
        numeric = (numeric - self.mean) / self.std
        codes = torch.index_select(x, 1, self.hat_columns)
        hats = torch.relu(1.0 - torch.abs(codes - self.hat_codes))
        return torch.cat([numeric, hats], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.encode(x))
