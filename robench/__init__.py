"""robench: train, attack and evaluate image classifiers for adversarial robustness."""

__version__ = "0.1.0.dev0"
