# Two images from one file:
#   docker build -t m2e-sync .                             the workers (the default, last stage)
#   docker run m2e-sync run variant-sync                   (or tick --every 60, tail, dlq replay)
#   docker build --target sandbox -t m2e-sync-sandbox .    the M2E sandbox, for Compose and CI
# The worker image holds shared/ and services/ only: no sandbox, no developer tools, no
# aiohttp. Both install the versions the test suite passed with (constraints.txt).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt .

FROM ${BASE_IMAGE} AS build-sandbox
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY shared ./shared
COPY services ./services
COPY m2e_sandbox ./m2e_sandbox
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt '.[sandbox]'

FROM ${BASE_IMAGE} AS sandbox
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin m2e
COPY --from=build-sandbox /install /usr/local
USER 10001
ENV PYTHONUNBUFFERED=1
EXPOSE 8765
ENTRYPOINT ["python", "-m", "m2e_sandbox"]
CMD ["--host", "0.0.0.0", "--port", "8765"]

FROM ${BASE_IMAGE} AS workers
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin m2e
COPY --from=build /install /usr/local
USER 10001
ENV PYTHONUNBUFFERED=1 HTTP_PORT=8000
EXPOSE 8000
ENTRYPOINT ["m2e-sync"]
CMD ["--help"]
