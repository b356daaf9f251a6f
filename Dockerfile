# EPIX node image. Configuration is only through EPIX_* environment variables (see README).
FROM python:3.11-slim-bookworm AS build
ENV UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never
# gcc builds the one compiled module (epix/permits/mapping.pyx); the runtime image needs none.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY setup.py ./
COPY epix ./epix
COPY schemas ./schemas
COPY keys ./keys
RUN uv sync --frozen --no-dev && .venv/bin/python -m compileall -q epix

FROM python:3.11-slim-bookworm
# The code stays root's (the node cannot rewrite itself); only /data is the node's, owner-only
# like every data directory it creates (a named volume takes this mode when first mounted).
RUN useradd --system --user-group --uid 10001 --home /app epix \
    && install -d -m 0700 -o epix -g epix /data
WORKDIR /app
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH EPIX_DATA_DIR=/data PYTHONUNBUFFERED=1
USER epix
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status == 200 else 1)"
CMD ["epix", "serve", "--host", "0.0.0.0", "--port", "8000"]
