# llama-relay: slim runtime image, non-root, SQLite on a volume.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    BOT_DATABASE=/data/llama-relay.db BOT_OPS_HOST=0.0.0.0 BOT_OPS_PORT=8080
RUN useradd --create-home --uid 10001 relay && mkdir /data && chown relay /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER relay
WORKDIR /home/relay
VOLUME ["/data"]
EXPOSE 3000 8080
# Liveness, not readiness: a platform reconnecting must not mark the container unhealthy
# (orchestrators that route traffic use /healthz as their readiness probe).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"BOT_OPS_PORT\", \"8080\")}/livez', timeout=4)"
ENTRYPOINT ["llama-relay"]
CMD ["serve"]
