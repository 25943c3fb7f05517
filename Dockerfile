# readygate image: `readygate serve | extproc | drain-wait | status` (ENTRYPOINT readygate).
# Multi-stage: the build stage has dev dependencies, TypeScript and the proto sources; the runtime stage
# has only what `node bin/readygate.js` loads (dist/, generated/, bin/, production node_modules, and
# package.json, whose "type": "module" makes Node read dist/ as ES modules). Runs as the unprivileged
# `node` user (uid 1000) of the official image.
# Build: docker build -t readygate:dev .   (kind/scripts/up.sh does, then loads it into kind)
#
# Build args (all optional):
#   NODE_IMAGE           base of both stages. Node 24 (the default) and Node 26 are supported, e.g.
#                        --build-arg NODE_IMAGE=node:26-slim; pin by digest for reproducible builds:
#                        --build-arg NODE_IMAGE=node:24-slim@sha256:...
#   NPM_CONFIG_REGISTRY  the npm registry (or mirror) `npm ci` installs from; the lockfile's
#                        registry.npmjs.org URLs are rewritten to it by npm itself. Build args show in the
#                        image history: give credentials as a BuildKit secret, never here.
#   EXTRA_CA_CERT        PEM text of one more CA to trust while installing (a TLS-intercepting proxy, a
#                        private mirror): --build-arg EXTRA_CA_CERT="$(cat corp-ca.pem)". Used by the
#                        build stage only (as NODE_EXTRA_CA_CERTS, which npm honours next to the public CAs);
#                        at run time, mount a file and set NODE_EXTRA_CA_CERTS if the pod needs it.
ARG NODE_IMAGE=node:24-slim

FROM ${NODE_IMAGE} AS build
# An ARG is in the environment of the RUN steps after it, which is how npm reads the registry.
ARG NPM_CONFIG_REGISTRY=https://registry.npmjs.org/
ARG EXTRA_CA_CERT=
WORKDIR /src
# Written only when given: Node warns about a NODE_EXTRA_CA_CERTS file it cannot read.
RUN if [ -n "$EXTRA_CA_CERT" ]; then printf '%s\n' "$EXTRA_CA_CERT" > /usr/local/share/readygate-extra-ca.pem; fi
# Dependencies first, so source edits reuse this layer. --ignore-scripts: `prepare` (the build) needs the
# sources, which are not copied yet; the build runs explicitly below.
COPY package.json package-lock.json ./
RUN if [ -n "$EXTRA_CA_CERT" ]; then export NODE_EXTRA_CA_CERTS=/usr/local/share/readygate-extra-ca.pem; fi \
  && npm ci --ignore-scripts --no-audit --no-fund
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
