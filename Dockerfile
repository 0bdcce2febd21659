# syntax=docker/dockerfile:1
# COGUMI AI Protect: build a wheel, then install it into a slim runtime image
# that runs as an unprivileged user. See docs/deployment.md.

FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir build
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    COGUMI_HOST=0.0.0.0 \
    COGUMI_DATA_DIR=/data
RUN groupadd --system --gid 10001 cogumi \
    && useradd --system --uid 10001 --gid cogumi --home-dir /home/cogumi --create-home cogumi \
    && mkdir -p /data \
    && chown cogumi:cogumi /data
COPY --from=build /dist/ /tmp/dist/
# With the s3 extra, so retention can archive to S3-compatible storage.
RUN pip install --no-cache-dir "$(ls /tmp/dist/*.whl)[s3]" && rm -rf /tmp/dist
COPY docker/entrypoint.sh /usr/local/bin/cogumi-entrypoint
RUN chmod 0755 /usr/local/bin/cogumi-entrypoint
USER cogumi:cogumi
WORKDIR /home/cogumi
VOLUME ["/data"]
EXPOSE 8000
ENTRYPOINT ["cogumi-entrypoint"]
CMD ["cogumi", "serve"]
