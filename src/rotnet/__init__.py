"""rotnet: self-supervised rotation-prediction pretraining of ResNets on CIFAR-10, and its transfer."""

__version__ = "0.2.0"
