"""rotnet: self-supervised rotation-prediction pretraining of torchvision ResNets, and how much it helps downstream.

    import rotnet

    result = rotnet.train("rotation", preset="smoke")           # a run folder under runs/smoke/
    model = rotnet.load_backbone(result.folder)                  # a plain torchvision ResNet
    report = rotnet.reproduce(preset="smoke")                    # the five experiments, then report.md

`import rotnet` stays light: torch loads when one of these is first used.
"""

__version__ = "0.7.0"
__all__ = ["Result", "load_backbone", "metadata", "reproduce", "train"]


def __getattr__(name: str):
    if name in __all__:
        from rotnet import api

        return getattr(api, name)
    raise AttributeError(f"module 'rotnet' has no attribute {name!r}")
