from rotnet.seeds import DOMAINS, derive_seed


def test_streams_do_not_share_seeds():
    """The epoch's shuffle seed once equalled step 0's augmentation seed (SeedSequence pads with zeros)."""
    assert derive_seed("shuffle", 0, 5) != derive_seed("augment", 0, 5, 0)
    assert derive_seed("augment", 0, 5) != derive_seed("augment", 0, 5, 0)
    seen = {derive_seed(d, 0, 1) for d in DOMAINS}
    assert len(seen) == len(DOMAINS)


def test_seeds_are_pure_and_63_bit():
    assert derive_seed("init", 3) == derive_seed("init", 3)
    assert all(0 <= derive_seed("augment", s, e, t) < 2**63 for s in range(3) for e in range(3) for t in range(3))
