"""Seeds for every random stream, each a pure function of its position.

Each stream has its own domain word. Without one, numpy's SeedSequence pads short entropy with zeros, so
(seed, epoch) and (seed, epoch, 0) gave the same seed: an epoch's shuffle and its first step's augmentation drew
from the same stream.
"""

from __future__ import annotations

import numpy as np
import torch

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
