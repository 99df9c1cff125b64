"""PTune Studio's engine, in layers that only import downwards (`tests/test_architecture.py` checks it):

    core (the foundations at this top: errors, config, settings, atomic, paths, progress, resources, distributed)
      → data → engine → methods → prompts → compare → runs → app → cli

Knows nothing of Streamlit; driven equally by the pages, the CLI (`python -m core`) and the tests. The map, with
what each package owns and promises, is docs/ARCHITECTURE.md.
"""

import os

# Big CPU tensors (2 MB and more) in transparent huge pages, by PyTorch's own switch: glibc maps each such block
# afresh and the kernel faults it in 4 KB at a time, 7.4 M page faults and a sixth of AutoPrompt's time on 400 rows
# (benchmarks/bench_autoprompt_after.py). Torch reads it at its first tensor allocation, so it is set on import,
# before any; THP_MEM_ALLOC_ENABLE=0 keeps the default. Nothing changes where the kernel has huge pages off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
