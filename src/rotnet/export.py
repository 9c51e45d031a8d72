"""`rotnet export-images`: a dataset written out as an image folder of PNGs, in the layout rotnet and torchvision's
ImageFolder read. A file's name is its index in the dataset, zero-padded, so the folder's canonical order (by file
name) is the dataset's own order: the exported folder trains exactly as the original does."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rotnet.augment import MEAN, STD
from rotnet.config import DATASETS
from rotnet.data import Dataset, within_folder
from rotnet.errors import RotnetError
from rotnet.files import atomic_write, read_regular, staged_folder
from rotnet.layout import refuse_output_folder
from rotnet.markdown import code
from rotnet.signals import raise_on_stop


def export_images(
    data: Dataset,
    out: Path,
    *,
    labeled: bool = True,
    train_range: tuple[int, int] | None = None,
    test: bool = True,
    test_range: tuple[int, int] | None = None,
) -> int:
    """Write OUT/train[/CLASS]/NNNNN.png (the training images in train_range, default all) and, with test,
    OUT/test[/CLASS]/NNNNN.png (those in test_range, default all). Refuses an OUT that exists and is not empty.
    Returns the number of files."""
    from PIL import Image

    out = Path(out)
    refuse_output_folder(out)
    if within_folder(data, out):  # its next read would take the copies in as images of its own
        raise RotnetError(f"{out} lies inside the image folder {data.root} being exported; name a folder elsewhere")
    if labeled and not data.labeled:
        raise RotnetError(f"{data.name} has no labels; export it with --unlabeled")
    jobs = [("train", data.train_images, data.train_labels, span("train", train_range, len(data.train_images)))]
    if test:
        jobs.append(("test", data.test_images, data.test_labels, span("test", test_range, len(data.test_images))))
    width = len(str(max(len(data.train_images), len(data.test_images)) - 1))
    written = 0
    with staged_export(out) as stage:  # all the images or none: a part of them would read as the whole dataset
        for split, images, labels, indices in jobs:
            folders = [stage / split / c for c in data.class_names] if labeled else [stage / split]
            for i in tqdm(indices, desc=f"writing {split}", unit="img", leave=False, disable=None):
                folder = folders[int(labels[i])] if labeled else folders[0]
                pixels = np.ascontiguousarray(images[i].numpy().transpose(1, 2, 0))  # CHW -> HWC
                png = io.BytesIO()
                Image.fromarray(pixels, "RGB").save(png, "PNG", compress_level=1)
                atomic_write(folder / f"{i:0{width}d}.png", png.getvalue(), base=stage, sync=False)  # through no link
                written += 1
    return written


@contextlib.contextmanager
def staged_export(out: Path) -> Iterator[Path]:
    """Where an export writes: a folder that becomes `out` whole or not at all (files.staged_folder), also when Ctrl-C
    or SIGTERM stops it (SIGTERM had ended the process where it stood, leaving the staged folder)."""
    with raise_on_stop(f"stopped while exporting into {out}; nothing was kept"), staged_folder(out) as stage:
        yield stage


def span(split: str, given: tuple[int, int] | None, n: int) -> range:
    """The indices of a split to export: all n, or A..B-1 of --SPLIT-range A:B, which must lie within 0:n."""
    start, stop = given or (0, n)
    if not 0 <= start < stop <= n:
        raise RotnetError(f"--{split}-range must lie within 0:{n}; got {start}:{stop}")
    return range(start, stop)


def yaml_text(text: str) -> str:
    """Text for the card's YAML front matter, read back as itself: plain where YAML keeps it (`cifar10`), else
    double-quoted, every character YAML may not hold literally escaped (a folder named `#pets: v2` was read as null,
    `a: b` was no YAML at all)."""
    if re.fullmatch(r"[A-Za-z]([A-Za-z0-9._ ()-]*[A-Za-z0-9._()-])?", text) and text.lower() not in YAML_WORDS:
        return text
    escaped = (
        c if c.isprintable() and c not in '"\\' else "\\" + c if c in '"\\' else f"\\U{ord(c):08x}" for c in text
    )
    return '"' + "".join(escaped) + '"'


YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "null"}  # read as booleans or null, unquoted


CARD = """---
library_name: pytorch
tags:
{tags}
{datasets}metrics:
- accuracy
model-index:
- name: {name}
  results:
  - task:
      type: {task_type}
    dataset:
      name: {dataset_name}
      type: {dataset}
    metrics:
    - type: accuracy
      value: {acc:.2f}
---

# {name}

A torchvision `{arch}` ({stem} stem) trained by rotnet {version}:
experiment `{experiment}` ({what}) on {images} of {source}{pretrain}, {epochs} epochs.
Test accuracy: **{acc:.2f}%** on {test_images:,} test images{rotations}.{direction}

Made with:

```bash
{command}
```

`config.json` holds every setting and where the run came from; `result.json` its results; `metrics.jsonl` one line
per epoch.

## Use it with plain torchvision

```python
{imports}
from safetensors.torch import load_file
from torchvision import transforms

model = torchvision.models.{arch}(num_classes={classes}){stem_code}
model.load_state_dict(load_file("model.safetensors"))
model.eval()
# inputs: RGB PIL images{inputs}; classes: {class_names}
preprocess = transforms.Compose([{resize}
    transforms.ToTensor(),
    transforms.Normalize(mean={mean}, std={std}),
])
```
"""


def images_text(used, available) -> str:
    """The training images a run used, as the card states them: "2,000 of the 50,000 training images"."""
    if not isinstance(used, int):
        return "the training images"
    if isinstance(available, int) and available != used:
        return f"{used:,} of the {available:,} training images"
    return f"the {used:,} training images"


WHAT = {
    "rotation": "predicting whether an image was rotated by 0, 90, 180 or 270 degrees",
    "classification": "image classification",
}


def export_run(folder: Path, out: Path) -> Path:
    """A finished run as an upload-ready folder: model.safetensors, config.json, result.json, metrics.jsonl and a
    model card (README.md with the usual front matter). Writes only under out, which must be new or empty."""
    from rotnet.checkpoint import load_tensors
    from rotnet.files import atomic_write_text
    from rotnet.layout import CONFIG, METRICS, RESULT, WEIGHTS, not_a_run, refuse_copied_run
    from rotnet.record import open_run

    folder, out = Path(folder), Path(out)
    if not (folder / CONFIG).is_file():  # as verify and probe ask: a missing folder names the runs near it
        raise not_a_run(folder, f"no {CONFIG}")
    refuse_copied_run(folder)
    rec = open_run(folder, "export", need=(RESULT, WEIGHTS))  # only what rotnet wrote leaves the run folder
    refuse_output_folder(out)
    record, result = rec.config or {}, rec.result  # the record as open_run read and checked it
    if not isinstance(result, dict) or not isinstance(result.get("test_acc"), int | float):
        raise RotnetError(f"{folder / RESULT} is unreadable; the model card needs the run's result")
    _, meta = load_tensors(folder / WEIGHTS)  # verifies the checksum before anything is copied
    cfg = meta.get("config") or record.get("config", {})
    norm = meta.get("normalization") or {"mean": list(MEAN), "std": list(STD)}  # older files: the reference's
    classes = meta.get("class_names") or result.get("class_names", [])
    try:
        card = card_text(cfg, result, record, meta, norm, classes)
    except (TypeError, ValueError, KeyError, AttributeError) as e:  # a forged but resealed record; nothing written
        raise RotnetError(
            f"{folder}'s record has a malformed field ({type(e).__name__}: {e}); nothing was exported"
        ) from None
    with staged_export(out) as stage:  # the card is built: only copying is left, and it lands whole or not at all
        for name in (WEIGHTS, CONFIG, RESULT, METRICS):
            if (folder / name).is_file() and not (folder / name).is_symlink():  # a link rotnet did not make: never
                atomic_write(stage / name, read_regular(folder / name, follow=False), base=stage)
        atomic_write_text(stage / "README.md", card)
    return out


def card_text(cfg: dict, result: dict, record: dict, meta: dict, norm: dict, classes: list) -> str:
    """The model card (README.md with the usual front matter) of a run's record."""
    from rotnet import __version__

    name = f"rotnet-{cfg.get('arch')}-{cfg.get('experiment')}-seed{cfg.get('seed')}"
    tags = ["rotnet", "self-supervised", "rotation-prediction", str(cfg.get("arch")), "image-classification"]
    dataset = Path(cfg.get("dataset", "cifar10")).name
    # The front matter names a dataset only for the official files (a hub links the name to that dataset): a copy
    # that differs from its release (by md5) or an image folder is named in words instead.
    named = cfg.get("dataset", "cifar10") in DATASETS
    official = named and record.get("dataset_checksums_match") is True
    source = (
        code(dataset)
        if official
        else f"a copy of {code(dataset)} that differs from its official release (md5)"
        if named
        else f"the image folder {code(dataset)}"
    )
    stem_code = ""
    if cfg.get("stem") == "cifar":
        stem_code = (
            "\nmodel.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # rotnet's CIFAR stem"
            "\nmodel.maxpool = torch.nn.Identity()"
        )
    return CARD.format(
        tags="\n".join(f"- {t}" for t in tags),
        dataset=yaml_text(dataset),
        dataset_name=yaml_text(
            dataset if official else f"{dataset} ({'not the official release' if named else 'image folder'})"
        ),
        datasets=f"datasets:\n- {yaml_text(dataset)}\n" if official else "",
        source=source,
        name=name,
        task_type="image-classification",
        acc=float(result.get("test_acc", 0.0)),
        arch=cfg.get("arch"),
        stem=cfg.get("stem", "imagenet"),
        version=__version__,
        experiment=cfg.get("experiment"),
        what=WHAT.get(cfg.get("task"), cfg.get("task")),
        pretrain=f", from rotation weights pretrained on {code(Path(cfg['pretrain_dataset']).name)}"
        if cfg.get("pretrain_dataset")
        else "",
        epochs=result.get("epochs"),
        images=images_text(result.get("train_images"), (record.get("dataset") or {}).get("train")),
        test_images=int(result.get("test_images", 0)),
        rotations=" (each in all four rotations)" if cfg.get("task") == "rotation" else "",
        command=record.get("command", "(not recorded)"),
        classes=len(classes),
        stem_code=stem_code,
        imports="import torch\nimport torchvision" if stem_code else "import torchvision",
        inputs="" if cfg.get("image_size") else f" of {meta.get('image_size') or 32}x{meta.get('image_size') or 32}",
        resize=(
            f"\n    transforms.Resize({cfg['image_size']}),  # the shorter side, antialiased, as rotnet prepared them"
            f"\n    transforms.CenterCrop({cfg['image_size']}),"
        )
        if cfg.get("image_size")
        else "",
        direction=(
            "\nLabel k means the image was rotated by k x 90 degrees counter-clockwise (`torch.rot90(x, k, dims=(2, "
            "3))` on (N, C, H, W)): 0, 90, 180, 270."
            if cfg.get("task") == "rotation"
            else ""
        ),
        mean=json.dumps(norm["mean"]),
        std=json.dumps(norm["std"]),
        class_names=", ".join(map(str, classes)),
    )
