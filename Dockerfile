# The application image: producer, scorer, monitor and the dev webhook sink, one image.
# The model is not baked in: the compose service `train` writes it to a named volume (see
# docker-compose.yml), so this image holds code only and builds without the dataset.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODEL_DIR=/models

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY pyproject.toml ./
COPY contract ./contract
COPY producer ./producer
COPY scorer ./scorer
COPY monitor ./monitor
COPY devstack ./devstack
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app app \
    && mkdir -p /models \
    && chown app /models

USER app
CMD ["python", "-m", "scorer", "--help"]
