"""lightft: lightweight fine-tuning of Transformer encoders for text classification."""

import time as _time

__version__ = "0.1.0"
IMPORTED_AT = _time.perf_counter()  # the start of a run's "start-up" phase (imports, config, checks)
