"""PTune Studio's engine, in layers that only import downwards (`tests/test_architecture.py` checks it):

    core (the foundations at this top: errors, config, settings, atomic, paths, progress, resources, allocator,
          distributed)
      → data → engine → methods → prompts → compare → runs → app → cli

Knows nothing of Streamlit; driven equally by the pages, the CLI (`python -m core`) and the tests. The map, with
what each package owns and promises, is docs/ARCHITECTURE.md.
"""

from core.allocator import huge_pages_for_torch

huge_pages_for_torch()  # before torch allocates anything: it reads the switch once (core/allocator.py)

__version__ = "0.1.0"
