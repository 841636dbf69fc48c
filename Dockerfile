# Two images from one file:
#   docker build -t m2e-sync .                             the workers (the default, last stage)
#   docker run m2e-sync run variant-sync                   (or tick --every 60, tail, dlq replay)
#   docker build --target sandbox -t m2e-sync-sandbox .    the M2E sandbox, for Compose and CI
# The worker image holds shared/ and services/ only: no sandbox, no developer tools, no
# aiohttp. Both install the versions the test suite passed with (constraints.txt).
#
# BASE_IMAGE: any image with python3 (3.11+) and its venv module. The official slim image
# by default; `make test` builds a Debian bookworm base with mmdebstrap (no registry here):
#   podman build --build-arg BASE_IMAGE=localhost/m2e-sync-base:bookworm -t m2e-sync .
ARG BASE_IMAGE=python:3.11-slim

# Dependencies first, in a layer of their own: it is rebuilt only when they change.
# PIP_CERT: a CA bundle for pip where a TLS-inspecting proxy sits between the build and
# PyPI (mount it into the build, e.g. podman build -v /etc/ssl/certs/ca-certificates.crt:/run/ca.crt).
FROM ${BASE_IMAGE} AS deps
ARG PIP_CERT=""
WORKDIR /src
COPY pyproject.toml constraints.txt ./
RUN [ -n "$PIP_CERT" ] || unset PIP_CERT \
 && python3 -m venv /opt/m2e-sync \
 && python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies']))" > requirements.txt \
 && /opt/m2e-sync/bin/pip install --no-cache-dir -q -c constraints.txt -r requirements.txt

FROM deps AS build
ARG PIP_CERT=""
COPY README.md ./
COPY shared ./shared
COPY services ./services
RUN [ -n "$PIP_CERT" ] || unset PIP_CERT \
 && /opt/m2e-sync/bin/pip install --no-cache-dir -q --no-deps . \
 && rm -rf /opt/m2e-sync/lib/python3*/site-packages/pip*

FROM deps AS build-sandbox
ARG PIP_CERT=""
COPY README.md ./
COPY shared ./shared
COPY services ./services
COPY m2e_sandbox ./m2e_sandbox
RUN [ -n "$PIP_CERT" ] || unset PIP_CERT \
 && /opt/m2e-sync/bin/pip install --no-cache-dir -q -c constraints.txt '.[sandbox]'

FROM ${BASE_IMAGE} AS sandbox
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin m2e
COPY --from=build-sandbox /opt/m2e-sync /opt/m2e-sync
USER 10001
ENV PATH=/opt/m2e-sync/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8765
ENTRYPOINT ["python3", "-m", "m2e_sandbox"]
CMD ["--host", "0.0.0.0", "--port", "8765"]

FROM ${BASE_IMAGE} AS workers
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin m2e
COPY --from=build /opt/m2e-sync /opt/m2e-sync
USER 10001
ENV PATH=/opt/m2e-sync/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HTTP_PORT=8000
EXPOSE 8000
ENTRYPOINT ["m2e-sync"]
CMD ["--help"]
