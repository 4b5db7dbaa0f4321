# agentic-cp control plane image.
#   docker build -t agentic-cp:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Numeric UID/GID so Kubernetes can verify runAsNonRoot; the Helm chart uses the same IDs.
RUN groupadd --system --gid 10001 agentic \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/run/agentic-cp --no-create-home \
      --shell /usr/sbin/nologin agentic

WORKDIR /src
COPY . .
# pip compiles the .pyc files at install time, so nothing is written under a read-only root later.
# `pip install .` installs the controlplane package only: the test peers and the demo (tests/support) stay out.
RUN pip install . \
 && cd / && rm -rf /src \
 && install -d -o 10001 -g 10001 /var/run/agentic-cp

WORKDIR /var/run/agentic-cp
USER 10001:10001
EXPOSE 15010 15014
ENTRYPOINT ["agentic-cp"]
CMD ["--help"]
