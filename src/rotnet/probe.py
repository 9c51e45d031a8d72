"""`rotnet probe RUN`: what each stage of a pretrained network learned, measured by a classifier on frozen features.

The protocol of RotNet's Table 1 (Gidaris et al., ICLR 2018): features of each block, frozen, no augmentation,
a linear (or small MLP) classifier trained on them for the 10 CIFAR-10 classes; the same for random-init weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from rotnet import checkpoint as ckpt
from rotnet import files
from rotnet.augment import REFERENCE_NORM
from rotnet.config import RunConfig, from_dict, with_defaults
from rotnet.data import Dataset, classes_to_tell, data_diff
from rotnet.errors import RotnetError
from rotnet.evaluate import STAGES, extract, grid, stage_outputs
from rotnet.layout import CONFIG, WEIGHTS, not_a_run, refuse_copied_run, refuse_inside_run
from rotnet.lock import RunLock
from rotnet.manifest import Seal
from rotnet.models import build_model, check_keys, initial_model
from rotnet.record import RunRecord, open_run
from rotnet.runtime import host_memory_available
from rotnet.seeds import derive_seed
from rotnet.stats import wilson


def finished_run(folder: Path) -> tuple[RunConfig, RunRecord]:
    """A finished run's configuration (one with final weights) and its record, read once and checked; or a
    RotnetError saying what is missing or wrong."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise not_a_run(folder, f"no readable {CONFIG}")
    refuse_copied_run(folder)
    record = open_run(folder, "probe", need=(WEIGHTS,))  # says why it is not there: unfinished, or kept without
    if not isinstance(record.config, dict):
        raise not_a_run(folder, f"no readable {CONFIG}")
    return from_dict(with_defaults(record.config["config"]), str(folder / CONFIG)), record


def recorded_norm(record: dict) -> tuple:
    """The normalization a run's weights were trained with (runs before rotnet 0.3 used the reference's constants)."""
    norm = record.get("normalization")
    return (tuple(norm["mean"]), tuple(norm["std"])) if isinstance(norm, dict) else REFERENCE_NORM


def stage_maps(model: nn.Module, data: Dataset) -> dict[str, tuple[int, int, int]]:
    """Each stage's (channels, height, width) on the data's images, from a blank image (eval mode: the weights and
    their statistics unchanged)."""
    with torch.inference_mode():
        blank = torch.zeros(1, 3, *data.train_images.shape[-2:])
        return {s: tuple(v.shape[1:]) for s, v in stage_outputs(model.eval(), blank).items()}


def grids(maps: dict[str, tuple[int, int, int]], pool: int) -> dict[str, str]:
    """Each stage's pooling grid as text ('2x2'): what its features are, recorded with them."""
    return {s: "x".join(map(str, grid(pool, shape))) for s, shape in maps.items()}


def features(
    model: nn.Module, data: Dataset, pool: int, grid_text: dict, norm: tuple, cache: Path | None, digest: str
) -> dict:
    """Train and test features of every stage; with a cache folder, kept there as safetensors keyed by the weights,
    the pooling (each stage's grid: an entry from before grids were capped at a stage's map holds copies) and the
    data (a probe with another head then skips extraction)."""
    if cache is not None:  # before minutes of extraction
        refuse_inside_run(cache, "--feature-cache")
    key = {"weights": digest, "pool": pool, "grids": grid_text, "data": data.fingerprint}
    data_id = hashlib.sha256(json.dumps(data.fingerprint, sort_keys=True).encode()).hexdigest()
    path = cache / f"features-{digest[:16]}-pool{pool}-{data_id[:16]}.safetensors" if cache else None
    if path is not None and path.is_file():
        try:  # rotnet's own entry, checksummed: a damaged or edited one is extracted again, as the image cache does
            tensors, meta = ckpt.load_tensors(path, checksummed=True)
        except RotnetError as e:
            print(f"the feature cache entry does not load ({e}); extracting its features again", flush=True)
        else:
            if all(meta.get(k) == v for k, v in key.items()):
                return tensors
    kw = {"pool": pool, "channels_last": True, "norm": norm}
    tensors = {f"train.{k}": v for k, v in extract(model, data.train_images, **kw, desc="features (train)").items()}
    tensors |= {f"test.{k}": v for k, v in extract(model, data.test_images, **kw, desc="features (test)").items()}
    if path is not None:
        files.make_folder(path.parent)
        ckpt.save_tensors(path, tensors, key)
    return tensors


def refuse_features_beyond_memory(maps: dict[str, tuple[int, int, int]], data: Dataset, pool: int) -> None:
    """The features of every stage are kept in memory (float32), its grid's cells per channel: `--pool 10` on
    CIFAR-10 (some 23 GB before grids were capped at a stage's map) was killed for memory after minutes of
    extraction, and a large grid on large images still can be. Sized from the stages' maps, refused up front when
    more than the host has free, naming the largest --pool that fits."""

    def per_image(p: int) -> int:
        return sum(c * math.prod(grid(p, shape)) for c, *shape in maps.values())

    count = len(data.train_images) + len(data.test_images)
    need, free = count * per_image(pool) * 4, host_memory_available()
    if need <= free:
        return
    largest = next((p for p in range(pool - 1, 0, -1) if count * per_image(p) * 4 <= free), 0)
    fix = f"--pool {largest} or less fits" if largest else "even --pool 1 does not fit; probe on fewer images"
    raise RotnetError(
        f"--pool {pool} keeps {need / 1e9:.3g} GB of features ({per_image(pool):,} an image, {count:,} images), more "
        f"than the {free / 1e9:.3g} GB free here; {fix}"
    )


def make_head(kind: str, dim: int, classes: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(dim, classes)
    return nn.Sequential(nn.Linear(dim, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, classes))


def batches(order: torch.Tensor, size: int) -> list[torch.Tensor]:
    """order in batches of `size`; a lone last sample joins the batch before it, since the MLP head's batch norm
    cannot train on one (the head's batch is rotnet's choice, not the user's, so it is not refused)."""
    parts = list(order.split(size))
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2:] = [torch.cat(parts[-2:])]
    return parts


def fit_head(train_x, train_y, test_x, test_y, *, kind: str, epochs: int, seed: int, bar=None) -> float:
    """Train a head on standardized features with Adam (lr 1e-3, cosine to 0, batch 256); test accuracy (%)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(derive_seed("probe-init", seed))
    head = make_head(kind, train_x.shape[1], int(train_y.max()) + 1)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    steps = epochs * len(batches(torch.arange(len(train_x)), 256))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(derive_seed("probe-shuffle", seed))
    for _ in range(epochs):
        head.train()
        for idx in batches(torch.randperm(len(train_x), generator=gen), 256):
            loss = nn.functional.cross_entropy(head(train_x[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if bar is not None:
            bar.update()
    head.eval()
    with torch.inference_mode():
        return 100.0 * (head(test_x).argmax(1) == test_y).double().mean().item()


def probe(
    folder: Path,
    data: Dataset,
    device: torch.device,
    *,
    head: str = "linear",
    pool: int = 1,
    epochs: int = 30,
    own_data: bool = True,
    cache: Path | None = None,
    opened: tuple[RunConfig, RunRecord] | None = None,
    log=print,
) -> Path:
    """Probe every stage of the run's weights and of random-init weights on data (the run's own unless own_data is
    False); write probe/NAME (`result_name`: every setting that decides its numbers), so that a probe replaces only
    one made the same way. Features are extracted again each time unless `cache` names a folder to keep them in.
    `opened`: what `finished_run` gave for this folder, when the caller read the record already."""
    if files.is_link(folder):  # a link the user made and named, as `cd` takes one; no link below it is followed
        folder = Path(folder).resolve()
    cfg, record = opened or finished_run(folder)
    weights, _ = ckpt.load_tensors(folder / WEIGHTS)
    out_dir = folder / "probe"
    files.refuse_links(out_dir, Path(folder).parent)
    recorded = record.config.get("dataset")
    other_files = own_data and isinstance(recorded, dict) and bool(data_diff(recorded, data.fingerprint))
    files_id = hashlib.sha256(json.dumps(data.fingerprint, sort_keys=True).encode()).hexdigest()[:8]
    sized = f"{data.name} {data.train_images.shape[-1]}px"
    described = sized + (f" (other files than the run's: {files_id})" if other_files else "")
    results = {
        "run": str(folder),
        "data": described,
        "arch": cfg.arch,
        "experiment": cfg.experiment,
        "head": head,
        "pool": pool,
        "epochs": epochs,
        "stages": list(STAGES),
        "test_images": len(data.test_images),
        "accuracy": {},
    }
    classes_to_tell(data, "a probe")
    n = len(weights["fc.bias"]) if "fc.bias" in weights else 4
    norm = recorded_norm(record.config)
    start = initial_model(cfg.arch, n, cfg.stem, cfg.seed)  # as the run started
    random_init = start.state_dict()
    maps = stage_maps(start, data)
    refuse_features_beyond_memory(maps, data, pool)
    grid_text = results["grids"] = grids(maps, pool)
    whole = [f"{s} {g}" for s, g in grid_text.items() if g != f"{pool}x{pool}"]
    log(
        f"probe: {len(data.train_images):,} train and {len(data.test_images):,} test images of {described}; "
        f"features of {len(STAGES)} stages ({', '.join(STAGES)}), pooled {pool}x{pool}"
        + (f" (a smaller map is kept whole: {', '.join(whole)})" if whole else "")
        + ", from the run's weights and "
        f"from random init; a {head} head on each ({2 * len(STAGES)} heads, {epochs} epoch{'s' * (epochs != 1)} each)"
    )
    for which, state in (("pretrained", weights), ("random", random_init)):
        model = build_model(cfg.arch, n, cfg.stem)
        check_keys(state, model.state_dict(), f"{folder / WEIGHTS}")
        model.load_state_dict(state)
        model.to(device).to(memory_format=torch.channels_last)
        feats = features(model, data, pool, grid_text, norm, cache, ckpt.digest(state))
        accs = {}
        with tqdm(total=len(STAGES) * epochs, desc=f"{which} heads", unit="epoch", leave=False, disable=None) as bar:
            for stage in STAGES:
                train_x, test_x = feats[f"train.{stage}"], feats[f"test.{stage}"]
                labels = data.train_labels, data.test_labels
                accs[stage] = fit_head(
                    train_x, labels[0], test_x, labels[1], kind=head, epochs=epochs, seed=cfg.seed, bar=bar
                )
                bar.write(f"{which} {stage}: {accs[stage]:.2f}% ({train_x.shape[1]} features)")
        results["accuracy"][which] = accs
    other = None if own_data and not other_files else sized + (f" files {files_id}" if other_files else "")
    out = out_dir / result_name(head, pool, epochs, other)
    with RunLock(folder):  # sealed into the run's record, which another command may be sealing too
        sealing = open_run(folder, "probe", need=(WEIGHTS,), held=True)  # again, under the lock: it may have changed
        Seal.resume(folder, sealing).write_text(f"probe/{out.name}", json.dumps(results, indent=2) + "\n")
    log(table(results))
    worse = not_better(results["accuracy"])
    if worse:
        where = "at every stage" if len(worse) == len(STAGES) else f"at {', '.join(worse)}"
        warnings.warn(
            f"the pretrained features are not better than random init {where}: the run learned nothing those stages "
            "can use here (too short, or a protocol problem)",
            stacklevel=2,
        )
    return out


def result_name(head: str, pool: int, epochs: int, other_data: str | None) -> str:
    """A probe result's file name, from every setting that decides its numbers: the head, the pooling, the epochs
    and, for data other than the run's own, which (`probe-linear-pool1-e30.json`, `probe-linear-pool1-e30-cifar100-
    32px.json`, `...-cifar10-32px-files-1a2b3c4d.json` for a copy of the run's dataset with other files). A probe
    with other epochs, or on another copy, had replaced the earlier one's file."""
    tag = "" if other_data is None else "-" + re.sub(r"[^A-Za-z0-9.]+", "-", other_data).strip("-")
    return f"probe-{head}-pool{pool}-e{epochs}{tag}.json"


def not_better(accuracy: dict) -> list[str]:
    """The stages whose pretrained probe is not above the random-init one."""
    return [s for s in STAGES if accuracy["pretrained"][s] <= accuracy["random"][s]]


def interval(acc: float, n: int | None) -> list[float] | None:
    """The 95% Wilson interval of a probe's accuracy on n test images (None for a probe file without its count)."""
    return wilson(round(acc * n / 100), n) if n else None


def table(results: dict) -> str:
    """The probe's table, each accuracy with its 95% Wilson interval on the test images, and the stages whose
    pretrained and random-init intervals overlap: there the test set cannot tell them apart."""
    acc, n = results["accuracy"], results.get("test_images")

    def cell(a: float) -> str:
        ci = interval(a, n)
        return f"{a:.2f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")

    lines = [
        f"{results['head']} probe, pool {results['pool']}, {results['arch']} {results['experiment']}, "
        f"on {results['data']}"
        + (f"; test accuracy (%) on {n:,} images, 95% Wilson interval in brackets" if n else ""),
        "",
        "| stage | " + " | ".join(acc) + " |",
        "|---|" + "---|" * len(acc),
    ]
    for stage in results["stages"]:
        lines.append(f"| {stage} | " + " | ".join(cell(acc[w][stage]) for w in acc) + " |")
    if n and {"pretrained", "random"} <= set(acc):
        ties = [
            s for s in results["stages"] if overlap(interval(acc["pretrained"][s], n), interval(acc["random"][s], n))
        ]
        if ties:
            lines += ["", f"Within the test set's sampling error of each other (intervals overlap): {', '.join(ties)}."]
    return "\n".join(lines)


def overlap(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]
