# AER service image: one image for the API (gunicorn), the Celery worker and beat, and the
# migration job. libsndfile (with MP3) comes inside the soundfile wheel: no system packages.
FROM python:3.11-slim

# NUMBA_CACHE_DIR: numba (librosa's kernels and ours use cache=True) cannot write beside the
# root-owned package and the aer user has no home; without it the import itself would fail.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AER_DATA_DIR=/data \
    AER_MODELS_DIR=/app/models \
    NUMBA_CACHE_DIR=/tmp/numba-cache

WORKDIR /app
# Only what the service needs (no tests, no .git): an explicit list instead of a .dockerignore.
COPY pyproject.toml README.md constraints.txt ./
COPY core/ core/
COPY api/ api/
COPY worker/ worker/
COPY migrations/ migrations/
COPY models/ models/
# constraints.txt pins every dependency to the versions the tests ran with
# (python tools/freeze_constraints.py > constraints.txt).
RUN pip install -c constraints.txt . \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin aer \
    && mkdir -p /data \
    && chown aer /data

# A named volume mounted on /data starts with this ownership, so the aer user can write there.
VOLUME ["/data"]
USER aer
EXPOSE 8000
# The API's check (the default command): 200 while the database and the broker answer, also
# when no worker does (status "degraded": jobs wait). docker-compose.yml gives the worker and
# beat containers their own checks, and none to the one-shot migration.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/healthz', timeout=4)"]
# All interfaces inside the container only: publish the port on the host's loopback and put a
# TLS reverse proxy in front (docker-compose.yml, docs/security.md).
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--timeout", "120", "api.web.app:create_app()"]
