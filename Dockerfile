# mmdemo's web demo in a container (see deploy/README-DOCKER.md).
#   CPU:   docker build -t mmdemo .
#   CUDA:  docker build -t mmdemo:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#   hub models baked in:  --build-arg MODELS="blip-image-captioning-base vit-base-patch16-224"
#   run:   docker run -p 7860:7860 -v mmdemo-data:/data mmdemo      (add --gpus all for the CUDA image)
# The CUDA build needs no CUDA base image: PyTorch's CUDA wheels bring the CUDA runtime, cuBLAS and cuDNN as pip
# packages; the host needs only the NVIDIA driver and the NVIDIA Container Toolkit.
FROM python:3.11-slim

# torch first, from the index of the build wanted (CPU by default), so requirements.txt finds it installed and pulls
# no other build. Same version as requirements.txt.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1
# Serve on every interface (the app reads MMDEMO_HOST first, then Gradio's GRADIO_SERVER_NAME).
ENV GRADIO_SERVER_NAME=0.0.0.0 MMDEMO_HOST=0.0.0.0 MMDEMO_PORT=7860
# The feedback database is /data/feedback.db, on the volume below (MMDEMO_FEEDBACK_DB overrides it). The Hugging Face
# cache stays inside the image: models baked in with MODELS, and those fetched at run time.
ENV MMDEMO_DATA_DIR=/data HF_HOME=/opt/huggingface
# faster-whisper (CTranslate2) finds cuBLAS and cuDNN in torch's CUDA wheels; unused by the CPU build
ENV NVIDIA_WHEELS=/usr/local/lib/python3.11/site-packages/nvidia
ENV LD_LIBRARY_PATH=$NVIDIA_WHEELS/cublas/lib:$NVIDIA_WHEELS/cudnn/lib

# Nothing from apt: every dependency is a wheel that bundles its native libraries (PyAV bundles FFmpeg, psycopg its
# libpq, CTranslate2 and torch their OpenMP). espeak-ng, PostgreSQL and Chromium are needed by the tests only.
RUN useradd --create-home --uid 1000 app \
    && mkdir -p /app /data /opt/huggingface \
    && chown app:app /app /data /opt/huggingface

WORKDIR /app
RUN pip install --index-url "$TORCH_INDEX" "torch==$TORCH_VERSION"
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY --chown=app:app pyproject.toml README.md app.py ./
COPY --chown=app:app mmdemo ./mmdemo
COPY --chown=app:app assets ./assets
# the `mmdemo` command, run from /app (editable: the package finds its assets next to it)
RUN pip install --no-deps -e .

USER app
ARG MODELS=""
RUN if [ -n "$MODELS" ]; then mmdemo download $MODELS; fi

VOLUME ["/data"]
EXPOSE 7860
# liveness; /readyz (200 once the default models are loaded and the feedback store opens) suits a load balancer
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD python -c "import os, urllib.request; \
    urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MMDEMO_PORT', '7860'), timeout=4)" || exit 1
CMD ["python", "app.py"]
