# syntax=docker/dockerfile:1
#
# lumiere peer daemon, CPU execution provider only.
#
# Build from the repository root (the build context; .dockerignore keeps
# node_modules, caches and test output out of it):
#
#   docker build -f docker/peer.Dockerfile -t lumiere-mesh/peer:0.1.0 .
#   docker run -d --init --name peer -p 4001:4001/tcp -p 4002:4002/udp \
#     -v lumiere-peer:/data lumiere-mesh/peer:0.1.0
#   docker exec peer cat /data/peer.addrs
#
# The peer listens on fixed ports, TCP 4001 and UDP 4002 (WebRTC-direct), and
# writes its full multiaddrs (with /p2p/ id) to /data/peer.addrs. Those are the
# container's own interface addresses: a coordinator on another machine dials
# /ip4/<host address>/tcp/4001/p2p/<id> through the published port, or run the
# container with --network host. Stage graphs are cached in the /data volume
# (LUMIERE_CACHE=/data, so --cache /data/stages is also the default).
# The peer's own key is created at start, so its /p2p/ id changes on restart:
# read the addr file again after one.
# test/docker.test.ts checks this file statically (no Docker engine needed).

# --- dependencies --------------------------------------------------------
FROM node:22-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# CPU only: onnxruntime-node must not download its CUDA EP libraries (the
# repository's .npmrc says the same; the variable is explicit and wins).
# The `node` dependency (a second Node 22 for hosts that ship Node 20) is
# dropped: this image's own Node 22 runs the CLI.
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/node node_modules/.bin/node

# --- runtime -------------------------------------------------------------
FROM node:22-bookworm-slim
# The CLI is TypeScript run by Node's type stripping: Node >= 22.18.
RUN node -e "const [a, b] = process.versions.node.split('.').map(Number); if (a < 22 || (a === 22 && b < 18)) { console.error('lumiere needs Node >= 22.18, the base image has ' + process.version); process.exit(1) }"
ENV NODE_ENV=production \
    LUMIERE_CACHE=/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
# coordinator/cli/main.ts imports every command, so the peer needs the whole
# runtime tree; package.json carries "type": "module".
COPY package.json ./
COPY protocol ./protocol
COPY src ./src
COPY peer ./peer
COPY coordinator ./coordinator
# /data: stage cache and addr file (created here so a fresh named volume
# belongs to node).
RUN mkdir -p /data/stages && chown -R node:node /data
USER node
VOLUME ["/data"]
EXPOSE 4001/tcp 4002/udp
# Healthy once the TCP listener accepts a connection: the peer opens it after
# onnxruntime has loaded its execution providers, and writes its addr file
# moments later (after a few-millisecond speed measurement).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const s = require('node:net').connect(4001, '127.0.0.1'); s.setTimeout(3000, () => process.exit(1)); s.on('connect', () => { s.destroy(); process.exit(0) }); s.on('error', () => process.exit(1))"]
ENTRYPOINT ["node", "coordinator/cli/main.ts"]
CMD ["peer", "--listen", "/ip4/0.0.0.0/tcp/4001", "--listen", "/ip4/0.0.0.0/udp/4002/webrtc-direct", "--addr-file", "/data/peer.addrs", "--cache", "/data/stages", "--ep", "cpu"]
