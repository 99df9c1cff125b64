"""PTune Studio engine: data, templates, backbones, scoring, prompt methods, evaluation, store and jobs.

Knows nothing of Streamlit; driven equally by the pages, the CLI (`python -m core`) and the tests.
"""

__version__ = "0.1.0"
