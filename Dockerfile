# syntax=docker/dockerfile:1
# The shipshape controller image: a glibc build of the `shipshape` binary on distroless
# (cc: glibc, libgcc, CA certificates; no shell, no package manager), run as non-root.
# CI has no Docker engine; it runs the same scripts/release-build.sh and checks that the
# binary starts and links only against what distroless/cc-debian12 provides (.ci/run).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits reuse the cached dependency layer.
COPY Cargo.toml Cargo.lock ./
COPY testkit/Cargo.toml testkit/
RUN mkdir -p src benches examples tests testkit/src \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs testkit/src/lib.rs \
 && for b in stack_steady_state release_steady_state; do echo 'fn main() {}' > benches/$b.rs; done \
 && cargo fetch --locked
COPY . .
RUN scripts/release-build.sh && cp target/release/shipshape /shipshape

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /shipshape /usr/local/bin/shipshape
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/shipshape"]
CMD ["controller"]
