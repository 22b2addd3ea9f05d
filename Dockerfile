# The gatekeeper image: ingest, gate and publish, one per container
# (`gatekeeper serve ingest|gate|publish`), as the Helm chart runs them.
#
# PYTHON_IMAGE is any image with Python 3.11 and its venv module; the default
# is the official slim image. Where no registry is reachable, a base made from
# Debian's own packages works the same (see scripts/image).
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/gatekeeper
# Dependencies first, each pinned, so a code change does not reinstall them.
COPY constraints.txt /src/constraints.txt
RUN /opt/gatekeeper/bin/pip install --no-deps -r /src/constraints.txt
COPY pyproject.toml README.md /src/
COPY schemas /src/schemas
COPY services /src/services
RUN /opt/gatekeeper/bin/pip install --no-deps /src \
 && /opt/gatekeeper/bin/python -m compileall -q /opt/gatekeeper

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/gatekeeper /opt/gatekeeper
# No shell profile, no home: the only writable place is the data volume.
ENV PATH=/opt/gatekeeper/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/gatekeeper \
    GATEKEEPER_DATA_DIR=/var/lib/gatekeeper
RUN mkdir -p /var/lib/gatekeeper && chown 10001:10001 /var/lib/gatekeeper
VOLUME ["/var/lib/gatekeeper"]
USER 10001:10001
EXPOSE 8080 8081 8082
ENTRYPOINT ["/opt/gatekeeper/bin/gatekeeper"]
CMD ["--help"]
