# syntax=docker/dockerfile:1
# Multi-stage build of the operator image: the release binary, built exactly as CI builds it (scripts/test runs the
# same cargo command), on a minimal non-root runtime image with CA certificates.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The commit in tanium_operator_build_info{git_commit}: docker build --build-arg TANIUM_GIT_COMMIT=$(git rev-parse HEAD)
ARG TANIUM_GIT_COMMIT=""
RUN cargo build --release --locked -p tanium-operator --bin tanium-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tanium-operator /usr/local/bin/tanium-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tanium-operator"]
CMD ["run"]
