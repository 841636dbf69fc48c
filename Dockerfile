# One slim image for every worker and the sandbox: the command selects which.
#   docker build -t m2e-sync .
#   docker run m2e-sync run variant-sync
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY shared ./shared
COPY services ./services
# The versions the test suite passed with, not whatever PyPI has today.
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt .

FROM python:3.11-slim
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin m2e
COPY --from=build /install /usr/local
USER 10001
ENV PYTHONUNBUFFERED=1 HTTP_PORT=8000
EXPOSE 8000
ENTRYPOINT ["m2e-sync"]
CMD ["--help"]
