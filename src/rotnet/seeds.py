"""Seeds for every random stream, each a pure function of its position.

Each stream has its own domain word. Without one, numpy's SeedSequence pads short entropy with zeros, so
(seed, epoch) and (seed, epoch, 0) gave the same seed: an epoch's shuffle and its first step's augmentation drew
from the same stream.
"""

from __future__ import annotations

import numpy as np
import torch

# Bumped by any change that alters a random draw or a step's math: derive_seed, the order or shape of draws, the
# init, the augmentation, the loss. Recorded in every run and checkpoint; resume and verify refuse another version.
# tests/test_seeds.py pins the streams and fails with "the stream changed: bump STREAM_VERSION".
STREAM_VERSION = 1

# The streams; a new stream gets a new word, never a reused one.
DOMAINS = ("init", "shuffle", "augment", "subset", "holdout", "probe-init", "probe-shuffle")


def derive_seed(domain: str, *parts: int) -> int:
    """A 63-bit seed from a domain word and integers (seed, epoch, step, ...)."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown random stream {domain!r}")
    word = int.from_bytes(domain.encode(), "little")
    entropy = [word, len(parts), *(int(p) for p in parts)]  # the length: (s, e) and (s, e, 0) differ as well
    return int(np.random.SeedSequence(entropy).generate_state(2, np.uint64)[0] >> np.uint64(1))


def generator(device: torch.device | str, domain: str, *parts: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(domain, *parts))


def stream_contract(device: torch.device | str) -> dict:
    """What a run's random streams and arithmetic depend on besides its configuration: rotnet's stream version, the
    device type and the torch version. A run continues, or is re-checked, only under the same contract."""
    return {"version": STREAM_VERSION, "device": torch.device(device).type, "torch": torch.__version__}


def contract_diff(recorded, current: dict) -> list[str]:
    """'key: recorded -> now' for each part of the contract that differs (a record without one: every part)."""
    recorded = recorded if isinstance(recorded, dict) else {}
    return [f"{k} {recorded.get(k, 'unrecorded')} -> {v}" for k, v in current.items() if recorded.get(k) != v]
