# GPU serving image: CUDA runtime, the `gpu` extra (vllm, faiss-gpu-cu12, deepspeed).
#   docker build -t safework .
#   docker run --gpus all -p 8000:8000 -e SAFEWORK_API_KEYS=sk-alice-key-1:alice,sk-bob-key-2:bob \
#       safework --model /models/ckpt --tensor-parallel-size 2
# The server binds 0.0.0.0, so it needs API keys (SAFEWORK_API_KEYS=KEY[:TENANT],... or
# --api-key KEY[:TENANT]) and refuses to start without them; append --allow-unauthenticated
# only where anyone who reaches the port may use it (the correction memory is then off unless
# --shared-memory is given too). Behind a proxy that forwards its own Host name, add
# --allowed-host NAME to answer only that name (loopback names are always answered, so the
# health check below keeps working).
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SAFEWORK_CACHE=/cache

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv python3.12-dev build-essential git \
    && rm -rf /var/lib/apt/lists/*

RUN python3.12 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
COPY pyproject.toml README.md ./
COPY safework ./safework
COPY engine ./engine
COPY server ./server
COPY value_models ./value_models
COPY search ./search
COPY memory ./memory
COPY training ./training
COPY clients ./clients
RUN pip install --no-cache-dir "./[gpu]"

RUN useradd --create-home --uid 1000 safework && mkdir -p /cache && chown safework /cache
USER 1000
VOLUME ["/cache"]
EXPOSE 8000
# The first start with an empty /cache fetches the model, trains the built-in value models,
# builds the search corpus and fits the calibration (tens of minutes); later starts take ~1 min.
HEALTHCHECK --interval=30s --timeout=5s --start-period=3600s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"]
# 0.0.0.0: give keys (SAFEWORK_API_KEYS) or --allow-unauthenticated, see the top of this file.
ENTRYPOINT ["safework", "serve", "--host", "0.0.0.0", "--port", "8000"]
