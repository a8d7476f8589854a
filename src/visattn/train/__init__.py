"""Training, comparison and ablation runs on real data (resumable, single process or DDP)."""

from .compare import Variant, ablation_variants, compare
from .config import TrainConfig
from .trainer import train

__all__ = ["TrainConfig", "Variant", "ablation_variants", "compare", "train"]
