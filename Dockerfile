# One image for every Lamplight service; the service is chosen by argument:
#   docker build -t lamplight:0.1.0 .
#   docker run lamplight:0.1.0 needs              (gateway, needs, volunteers, points, notify)
# Build stage: a virtualenv with the pinned dependency tree. Final stage: the
# virtualenv and the config only — no compiler, no pip cache, a non-root user.

FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/lamplight
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY lamplight ./lamplight
COPY lamplight_tools ./lamplight_tools
COPY services ./services
COPY gateway ./gateway
RUN /opt/lamplight/bin/pip install "pip==24.3.1" \
 && /opt/lamplight/bin/pip install -c constraints.txt . \
 && /opt/lamplight/bin/pip uninstall -y pip setuptools \
 && find /opt/lamplight -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11.11-slim-bookworm
RUN groupadd --system --gid 10001 lamplight \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin lamplight
COPY --from=build /opt/lamplight /opt/lamplight
COPY config.yaml /etc/lamplight/config.yaml
COPY parks /etc/lamplight/parks
ENV PATH=/opt/lamplight/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LAMPLIGHT_CONFIG=/etc/lamplight/config.yaml \
    OBSERVABILITY_ADDRESS=0.0.0.0:9100 \
    WEB_SERVER_ADDRESS=0.0.0.0:8000
USER 10001:10001
EXPOSE 8000 9100
# exec form, and `serve` execs nameko in its place: nameko is PID 1, gets SIGTERM and drains its workers
ENTRYPOINT ["lamplight", "serve"]
CMD ["gateway"]
