"""The file layer (rotnet.files), table-driven: every kind of file at every reader of a user's file, and a planted
link at every place on the way to a write under a root."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rotnet import files
from rotnet.checkpoint import (
    atomic_write,
    load_tensors,
    save_tensors,
)
from rotnet.config import read_toml
from rotnet.errors import RotnetError
from rotnet.images import open_as_seen
from rotnet.layout import read_json, read_marker
from rotnet.readers import safe_unpickle
from tests.helpers import cli, images, load_folder, no_hang, save


def png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def weights(tmp: Path) -> bytes:
    save_tensors(tmp / "w.safetensors", {"x": torch.ones(2)}, {})
    return (tmp / "w.safetensors").read_bytes()


# Every reader of a file a user names or a folder holds, with what a regular file of its kind holds.
READERS = {
    "an image": (lambda tmp: png(), open_as_seen),
    "a TOML configuration": (lambda tmp: b"epochs = 3\n", read_toml),
    "weights": (weights, load_tensors),
    "a CIFAR batch": (lambda tmp: pickle.dumps({"data": 1}), safe_unpickle),
    "a small JSON marker": (lambda tmp: b"[]", read_marker),
    "a JSON record (read_json)": (lambda tmp: b"{}", read_json),
    "a run's own file, hashed (sha256_file)": (lambda tmp: b"x", files.sha256_file),
}
READABLE = ["a regular file", "a link to a file", "a hard link"]
KINDS = [*READABLE, "a link to a folder", "a dangling link", "a FIFO", "a socket", "a link to a device", "a folder"]


def make(kind: str, path: Path, content: bytes, monkeypatch) -> None:
    real = path.parent / "real"
    real.write_bytes(content)
    if kind == "a regular file":
        path.write_bytes(content)
    elif kind == "a link to a file":
        path.symlink_to(real)
    elif kind == "a hard link":
        os.link(real, path)
    elif kind == "a link to a folder":
        path.symlink_to(path.parent)
    elif kind == "a dangling link":
        path.symlink_to(path.parent / "nowhere")
    elif kind == "a FIFO":
        os.mkfifo(path)
    elif kind == "a socket":
        monkeypatch.chdir(path.parent)  # a socket's path must be short: bind the name, relative to its folder
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path.name)
        monkeypatch.setattr(make, "sock", sock, raising=False)  # kept open for the test
    elif kind == "a link to a device":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", list(READERS))
def test_every_reader_reads_only_regular_files(tmp_path, monkeypatch, reader, kind):
    """Each reader of a user's file opens it through files.open_regular, which checks the kind on the descriptor it
    then reads: a FIFO, a socket, a device or a folder is named, never waited on or read without end."""
    content, read = READERS[reader]
    path = tmp_path / "file"
    make(kind, path, content(tmp_path), monkeypatch)
    with no_hang():
        if reader == "a small JSON marker":  # rotnet's own marker: anything but a regular file is no marker
            assert (read(path) is not None) == (kind in ("a regular file", "a hard link"))  # no link followed
        elif reader.startswith("a run's own file"):  # weights, checkpoints, probes: rotnet writes no link
            if kind in ("a regular file", "a hard link"):
                assert read(path) == hashlib.sha256(b"x").hexdigest()
            else:
                with pytest.raises(RotnetError, match=r"FIFO|socket|device|folder|not found|link"):
                    read(path)
        elif reader == "a JSON record (read_json)":  # None for anything it cannot read as JSON
            assert (read(path) is not None) == (kind in READABLE)
        elif kind in READABLE:
            read(path)
        else:
            with pytest.raises(RotnetError, match=r"FIFO|socket|device|folder|not found|not a regular file|link"):
                read(path)


@pytest.mark.parametrize("kind", KINDS[1:])
def test_the_message_names_the_kind(tmp_path, monkeypatch, kind):
    make(kind, tmp_path / "x.png", png(), monkeypatch)
    expected = {"a link to a folder": "a folder", "a dangling link": "not found", "a link to a device": "a device"}
    with no_hang():
        if kind in READABLE:
            files.read_regular(tmp_path / "x.png")
        else:
            with pytest.raises(RotnetError, match=re.escape(expected.get(kind, kind))):
                files.read_regular(tmp_path / "x.png")


# Every place on the way to a file written under a root: a link planted there.
PLACES = ["the run folder", "a folder inside it", "the file itself"]


@pytest.mark.parametrize("place", PLACES)
def test_a_write_under_a_root_goes_through_no_link(tmp_path, place):
    """A `logs/` link in a runs root received the jobs' logs. A write walks from the root one folder descriptor at
    a time with O_NOFOLLOW: a link on the way is refused; one at the file's own name is replaced, not written
    through."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "run/checkpoints").mkdir(parents=True)
    outside.mkdir()
    (outside / "x.json").write_text("theirs")
    target = root / "run/checkpoints/x.json"
    planted = {
        "the run folder": root / "run",
        "a folder inside it": root / "run/checkpoints",
        "the file itself": target,
    }
    link = planted[place]
    if link.is_dir():
        os.rename(link, tmp_path / "moved")
    link.symlink_to(outside if link.name != "x.json" else outside / "x.json")
    if place == "the file itself":
        files.atomic_write(target, b"ours", base=root)
        assert not target.is_symlink() and target.read_bytes() == b"ours"
    else:
        with pytest.raises(RotnetError, match="is a link rotnet did not make"):
            files.atomic_write(target, b"ours", base=root)
    assert (outside / "x.json").read_text() == "theirs" and sorted(p.name for p in outside.iterdir()) == ["x.json"]


def test_a_write_makes_the_folders_it_needs_and_replaces_atomically(tmp_path):
    target = tmp_path / "a/b/c.json"
    files.atomic_write(target, [b"{", b"}"], base=tmp_path)  # a list of buffers, written in order
    assert json.loads(target.read_text()) == {}
    with pytest.raises(FileExistsError):
        files.atomic_write(target, b"[]", base=tmp_path, replace=False)
    assert target.read_text() == "{}" and [p.name for p in target.parent.iterdir()] == ["c.json"]  # no temp left


def test_no_module_but_the_file_layer_writes_renames_or_makes_temporary_files():
    """The file layer is the only door for writes: a grep keeps it so (the image cache's memory-mapped array, which
    numpy writes by path, is the one exception, made with O_EXCL and renamed in its own folder)."""
    src = Path(__file__).parents[1] / "src/rotnet"
    pattern = re.compile(
        r"os\.replace\(|os\.rename\(|mkstemp\(|\.write_bytes\(|\.write_text\(|shutil\.copy|\bopen\([^)]*[\"'][wax]"
    )  # open(..., "a") too: the jobs' logs were appended to through a planted link
    found = {  # a Seal's write_text is the file layer's atomic_write, sealed
        p.name: sum(len(pattern.findall(line)) for line in p.read_text().splitlines() if "seal" not in line.lower())
        for p in src.glob("*.py")
        if p.name != "files.py"
    }
    assert {k: v for k, v in found.items() if v} == {"imagecache.py": 4, "state.py": 1}


def test_an_image_folders_cache_is_reached_through_no_link(tmp_path):
    """A planted FOLDER/.rotnet-cache link carried the prepared images (and the removal of stale ones) elsewhere."""

    folder, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    save(folder, images(8))
    elsewhere.mkdir()
    (folder / ".rotnet-cache").symlink_to(elsewhere)
    with pytest.raises(RotnetError, match=r"\.rotnet-cache is a link rotnet did not make"):
        load_folder(folder)
    assert not any(elsewhere.iterdir())


@pytest.mark.parametrize("place", ["a folder on the way", "the file itself"])
def test_a_read_under_a_root_goes_through_no_link(tmp_path, place):
    """What rotnet reads back under a run folder (its records, its checkpoints) is reached the same way as a write:
    one folder descriptor at a time, through no link."""
    root, outside = tmp_path / "run", tmp_path / "outside"
    (root / "checkpoints").mkdir(parents=True)
    outside.mkdir()
    (outside / "e.safetensors").write_bytes(b"theirs")
    (root / "checkpoints/e.safetensors").write_bytes(b"ours")
    assert files.read_regular(root / "checkpoints/e.safetensors", base=root) == b"ours"
    if place == "a folder on the way":
        import shutil

        shutil.rmtree(root / "checkpoints")
        (root / "checkpoints").symlink_to(outside)
    else:
        (root / "checkpoints/e.safetensors").unlink()
        (root / "checkpoints/e.safetensors").symlink_to(outside / "e.safetensors")
    with pytest.raises(RotnetError, match="is a link rotnet did not make"):
        files.read_regular(root / "checkpoints/e.safetensors", base=root)


def test_atomic_write_never_follows_a_planted_symlink(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".metrics.jsonl.tmp").symlink_to(outside)
    atomic_write(run / "metrics.jsonl", b"new")
    assert outside.read_text() == "precious" and (run / "metrics.jsonl").read_bytes() == b"new"
    assert (run / ".metrics.jsonl.tmp").is_symlink()  # left alone, not written through
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


def test_a_run_with_planted_links_writes_nothing_outside(tmp_path, fake_root):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "runs" / "resnet18" / "rotation" / "seed0"
    folder.mkdir(parents=True)
    for name in ("metrics.jsonl", "config.json", "model.safetensors", "result.json"):
        (folder / f".{name}.tmp").symlink_to(outside)
    assert cli("train", "rotation", root=tmp_path / "runs", data=fake_root) == 0
    assert outside.read_text() == "precious"


def test_atomic_write_cleanup_failing_still_reports_the_first_error(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    monkeypatch.setattr(os, "unlink", refuse)
    with pytest.raises(RotnetError, match="Read-only file system"):
        atomic_write(tmp_path / "x.json", json.dumps({}).encode())


def test_written_files_get_the_usual_permissions(tmp_path):
    """mkstemp creates files readable by their owner only; a results file is as readable as any the user writes."""
    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write(tmp_path / "result.json", b"{}")
    assert (tmp_path / "result.json").stat().st_mode & 0o777 == 0o666 & ~umask
