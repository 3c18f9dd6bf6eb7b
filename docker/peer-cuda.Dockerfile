# syntax=docker/dockerfile:1
#
# lumiere peer daemon with onnxruntime's CUDA execution provider
# (CUDA 12 + cuDNN 9, linux/amd64 only: onnxruntime-node ships no CUDA EP
# for arm64).
#
#   docker build -f docker/peer-cuda.Dockerfile -t lumiere-mesh/peer-cuda:0.1.0 .
#   docker run -d --init --gpus all --name peer -p 4001:4001/tcp -p 4002:4002/udp \
#     -v lumiere-peer:/data lumiere-mesh/peer-cuda:0.1.0
#
# The host needs an NVIDIA driver for CUDA 12.x and the NVIDIA Container
# Toolkit. Ports, volume and addr file are those of docker/peer.Dockerfile.
#
# onnxruntime-node: ONNXRUNTIME_NODE_INSTALL=cuda12 makes its install script
# download the CUDA EP libraries (libonnxruntime_providers_{shared,cuda,
# tensorrt}.so from the Microsoft.ML.OnnxRuntime.Gpu.Linux NuGet package of
# the same version) into node_modules/onnxruntime-node/bin/napi-v6/linux/x64
# during `npm ci`, so the build needs internet access to api.nuget.org. The
# variable overrides the repository's .npmrc (onnxruntime-node-install=skip).
#
# Node 22: Ubuntu 22.04 packages Node 12, so Node comes from the `node` npm
# package that package-lock.json pins (no NodeSource apt repository): a
# bootstrap stage on the official node:22 image runs `npm ci`, which puts
# that Node binary in node_modules/node/bin; the CUDA runtime stage copies
# node_modules and puts it first on PATH. Its Node version moves with the lock
# file, and the binary is the official glibc build (glibc >= 2.28; 22.04 has
# 2.35). The other native parts (onnxruntime, msgpackr-extract, ffmpeg) are
# prebuilt binaries, not compiled in the bootstrap stage.
# test/docker.test.ts checks this file statically (no Docker engine needed).

# --- dependencies, installed by a bootstrap Node ----------------------------
FROM node:22-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci --omit=dev --no-audit --no-fund \
 && test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so \
 && test -x node_modules/node/bin/node

# --- runtime: CUDA 12 + cuDNN 9 ----------------------------------------------
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04
# uid 1000 like the node user of the CPU images, so volumes shared with them
# (docker/compose.yaml's addr files) have one owner.
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin node
ENV NODE_ENV=production \
    LUMIERE_CACHE=/data \
    PATH=/app/node_modules/node/bin:$PATH
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
# The CLI is TypeScript run by Node's type stripping: Node >= 22.18. This also
# proves the npm-packaged Node runs on this base.
RUN node -e "const [a, b] = process.versions.node.split('.').map(Number); if (a < 22 || (a === 22 && b < 18)) { console.error('lumiere needs Node >= 22.18, node_modules/node has ' + process.version); process.exit(1) }"
# coordinator/cli/main.ts imports every command, so the peer needs the whole
# runtime tree; package.json carries "type": "module".
COPY package.json ./
COPY protocol ./protocol
COPY src ./src
COPY peer ./peer
COPY coordinator ./coordinator
RUN mkdir -p /data/stages && chown -R node:node /data
USER node
VOLUME ["/data"]
EXPOSE 4001/tcp 4002/udp
# Healthy once the TCP listener accepts a connection (see docker/peer.Dockerfile);
# loading the CUDA EP takes longer, hence the longer start period.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "const s = require('node:net').connect(4001, '127.0.0.1'); s.setTimeout(3000, () => process.exit(1)); s.on('connect', () => { s.destroy(); process.exit(0) }); s.on('error', () => process.exit(1))"]
ENTRYPOINT ["node", "coordinator/cli/main.ts"]
# cuda,cpu: CUDA first; a peer whose CUDA EP does not load (no GPU passed in,
# driver too old) still starts, on CPU: its "peer listening" log line lists
# the providers it really has. Use --ep cuda to refuse to start without one.
CMD ["peer", "--listen", "/ip4/0.0.0.0/tcp/4001", "--listen", "/ip4/0.0.0.0/udp/4002/webrtc-direct", "--addr-file", "/data/peer.addrs", "--cache", "/data/stages", "--ep", "cuda,cpu"]
