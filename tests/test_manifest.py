"""A run's manifest (rotnet.manifest): every write sealed two-phase, so a process killed at any point leaves a sealed
record."""

import pytest

from rotnet.record import inspect
from tests.helpers import RUN


@pytest.mark.parametrize("name", ["metrics.jsonl", "result.json", "checkpoints/e0009-s000000.safetensors"])
def test_a_process_killed_mid_write_leaves_a_sealed_record(copy, monkeypatch, name):
    """Killed after the manifest listed a file's new sha256 and before the file was replaced (or first written), the
    record is still what rotnet wrote, old or new, never "tampered": a run resumes after any SIGKILL."""
    import rotnet.manifest
    from rotnet.manifest import Seal
    from rotnet.record import read_run

    folder = copy / RUN
    seal = Seal.resume(folder, read_run(folder))

    def killed(path, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(
        rotnet.manifest,
        "atomic_write",
        lambda p, d, **kw: killed(p, d) if p.name != "manifest.json" else real(p, d, **kw),
    )
    real = rotnet.files.atomic_write
    with pytest.raises(KeyboardInterrupt):
        seal.write(name, b"new bytes")
    assert inspect(folder).status == "sealed"
