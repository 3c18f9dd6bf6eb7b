# syntax=docker/dockerfile:1
#
# lumiere coordinator CLI (generate, infer, plan, model): CPU onnxruntime for
# the coordinator's own work (text encoder, --local peers), a static ffmpeg
# from npm for MP4 output.
#
#   docker build -f docker/coordinator.Dockerfile -t lumiere-mesh/coordinator:0.1.0 .
#   docker run --rm --init -v lumiere-out:/out -v lumiere-models:/data \
#     lumiere-mesh/coordinator:0.1.0 generate "a red ball bouncing on the beach" \
#     --peers /ip4/192.0.2.10/tcp/4001/p2p/12D3KooW...,/ip4/192.0.2.11/tcp/4001/p2p/12D3KooW... \
#     --out /out/ball.mp4
#
# Write outputs under /out (a volume; the working directory /app is not
# writable by the node user). Built-in models are built on first use into
# /data (LUMIERE_CACHE), a volume, so later runs reuse them. The coordinator
# only dials out (peers answer over the same connections): nothing to EXPOSE.
# Peers found by mDNS (--discover N) need the container on their network
# (docker/compose.yaml); for peers that --join, add --listen and publish its
# port (docker run -p 4001:4001 ... --listen /ip4/0.0.0.0/tcp/4001).
# --init matters with --local K: the coordinator then spawns K peer processes.
# test/docker.test.ts checks this file statically (no Docker engine needed).

# --- dependencies --------------------------------------------------------
FROM node:22-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# CPU only (see docker/peer.Dockerfile); the image's own Node runs the CLI.
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/node node_modules/.bin/node

# --- runtime -------------------------------------------------------------
FROM node:22-bookworm-slim
RUN node -e "const [a, b] = process.versions.node.split('.').map(Number); if (a < 22 || (a === 22 && b < 18)) { console.error('lumiere needs Node >= 22.18, the base image has ' + process.version); process.exit(1) }"
ENV NODE_ENV=production \
    LUMIERE_CACHE=/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY protocol ./protocol
COPY src ./src
COPY peer ./peer
COPY coordinator ./coordinator
COPY web ./web
RUN mkdir -p /data /out && chown -R node:node /data /out
USER node
VOLUME ["/data", "/out"]
ENTRYPOINT ["node", "coordinator/cli/main.ts"]
CMD ["--help"]
