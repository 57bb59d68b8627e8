"""The config dataclasses of one run, below every layer that reads them: `ModelConfig` (config/model.py) and
`TrainConfig` (config/train.py). Each field is declared once with `validate.setting`: default, check (type and
bounds) and doc. The dataclasses check themselves from it, the spec reader takes its keys, checks and defaults
from it, and `scale sweep --help-spec` prints it, so the three cannot drift apart. No torch here.
"""

from scaling_cli.config.model import ModelConfig
from scaling_cli.config.train import TrainConfig

__all__ = ["ModelConfig", "TrainConfig"]
