"""The frozen-backbone arithmetic every method shares: load a masked or causal LM (`backbone`, `backbone_pool`),
render templates to token ids (`templates`), score label words (`scoring`) with the frozen prefix computed once
(`prefix_cache`), calibrate (`calibration`), train a soft prompt or adapter (`training`, `prompt_encoders`) and
measure (`evaluate`).

May import: the foundations at `core/`'s top and `core.data`. Never a method, a run or the app: a method is built
from these pieces, not the other way round."""
