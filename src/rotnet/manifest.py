"""A run folder's manifest: every file rotnet writes into a run folder listed with its sha256 in manifest.json,
rewritten atomically around every save (`Seal`), and sealed with a sha256 over its own contents. That catches an
edited or half-copied record, not a forger who recomputes every hash: it is tamper-evident, not a signature."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rotnet.errors import RotnetError
from rotnet.files import atomic_write
from rotnet.layout import (
    CHECKPOINTS,
    CONFIG,
    EXAMPLES,
    MANIFEST,
    MANIFEST_FORMAT,
    METRICS,
    RESULT,
    WEIGHTS,
    read_json,
)

FORMAT = MANIFEST_FORMAT
# The files of a run folder that make its record (failed.json, verify.json, logger output and the lock are notes
# about a run or views of it, written by others or rewritten freely, and not part of it).
OWNED = (CONFIG, METRICS, RESULT, WEIGHTS, EXAMPLES)


def seal_of(files: dict[str, str], previous: dict[str, str | None]) -> str:
    doc = {"format": FORMAT, "files": files, "previous": previous}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def sha256_parts(data: bytes | list) -> str:
    h = hashlib.sha256()
    for part in data if isinstance(data, list) else [data]:
        h.update(part)
    return h.hexdigest()


def owned_files(folder: Path) -> list[str]:
    """The files present in folder that belong to its record, as manifest names (checkpoints/NAME)."""
    names = [n for n in OWNED if (folder / n).is_file() or (folder / n).is_symlink()]
    ckpts = sorted(p.name for p in (folder / CHECKPOINTS).glob("e*-s*.safetensors")) if folder.is_dir() else []
    return names + [f"{CHECKPOINTS}/{n}" for n in ckpts]


def read_manifest(folder: Path) -> tuple[dict[str, str], dict[str, str | None]] | None:
    """What a run's manifest lists: (name -> sha256, name -> the sha256 a write under way replaces, None for a
    first write). None when there is no manifest; an error when it is not one rotnet sealed."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    doc = read_json(path)
    files = doc.get("files") if isinstance(doc, dict) else None
    previous = doc.get("previous", {}) if isinstance(doc, dict) else None
    if (
        not isinstance(files, dict)
        or not isinstance(previous, dict)
        or not all(isinstance(v, str) for v in files.values())
    ):
        raise RotnetError(f"{path} is unreadable")
    if doc.get("format") != FORMAT or doc.get("sha256") != seal_of(files, previous):
        raise RotnetError(f"{path} was edited after rotnet sealed it (its sha256 does not match its contents)")
    return files, previous


class Seal:
    """The manifest of one run folder while this process writes it. Each write is two-phase: the manifest first
    lists the new bytes' sha256 beside the one they replace, then the file is written atomically, then the manifest
    forgets the old one. A process killed at any point leaves every file matching its manifest (old or new), and a
    file's sha256 is taken from the bytes written, never re-read from disk (an edit between two saves is not sealed
    in)."""

    def __init__(self, folder: Path, files: dict[str, str] | None = None):
        self.folder, self.files, self.previous = Path(folder), dict(files or {}), {}

    @classmethod
    def resume(cls, folder: Path, record: RunRecord | None) -> Seal:  # noqa: F821 - record.RunRecord, a layer up
        """The seal of a run this process continues: what its manifest listed when `open_run` checked it (None: a
        new run)."""
        return cls(folder, record.listed[0] if record is not None and record.listed else {})

    def write(self, name: str, data: bytes | list) -> None:
        """Write FOLDER/name atomically, sealed as above."""
        self.previous[name] = self.files.get(name)
        self.files[name] = sha256_parts(data)
        self.commit()
        atomic_write(self.folder / name, data, base=self.folder.parent)  # through no link
        del self.previous[name]
        self.commit()

    def write_text(self, name: str, text: str) -> None:
        self.write(name, text.encode())

    def removed(self, paths: list[Path]) -> None:
        for p in paths:
            self.files.pop(str(Path(p).relative_to(self.folder)), None)
        self.commit()

    def commit(self) -> None:
        files = {k: self.files[k] for k in sorted(self.files)}
        doc = {"format": FORMAT, "files": files, "previous": self.previous, "sha256": seal_of(files, self.previous)}
        atomic_write(self.folder / MANIFEST, (json.dumps(doc, indent=2) + "\n").encode(), base=self.folder.parent)
