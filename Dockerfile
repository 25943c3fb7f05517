# readygate image: `readygate serve | extproc | drain-wait | status` (ENTRYPOINT readygate).
# Multi-stage: the build stage has dev dependencies, TypeScript and the proto sources; the runtime stage
# has only what `node bin/readygate.js` loads (dist/, generated/, bin/, production node_modules, and
# package.json, whose "type": "module" makes Node read dist/ as ES modules). Runs as the unprivileged
# `node` user (uid 1000) of the official image.
# Build: docker build -t readygate:dev .   (kind/scripts/up.sh does, then loads it into kind)
# Pin by digest for reproducible builds: --build-arg NODE_IMAGE=node:20-slim@sha256:...
ARG NODE_IMAGE=node:20-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
# Dependencies first, so source edits reuse this layer. --ignore-scripts: `prepare` (the build) needs the
# sources, which are not copied yet; the build runs explicitly below.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build-protos.mjs scripts/
COPY proto proto
COPY src src
COPY bin bin
# Envoy's protos come from the @grpc/grpc-js-xds dev dependency; compile them, then drop dev dependencies.
RUN npm run build \
  && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
  && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/generated ./generated
COPY --from=build /src/bin ./bin
# `readygate` on PATH: preStop hooks in the demo app call `readygate drain-wait`.
RUN ln -s /app/bin/readygate.js /usr/local/bin/readygate
USER 1000:1000
# xDS (ADS), ext_proc, admin (/healthz, /readyz, /metrics, /debug/syncz, /drain-wait).
EXPOSE 18000 18001 9102
ENTRYPOINT ["readygate"]
CMD ["serve", "--source=kubernetes", "--xds-address=0.0.0.0:18000", "--admin-address=0.0.0.0:9102"]
