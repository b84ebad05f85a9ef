# syntax=docker/dockerfile:1
# Build: a static musl binary, so the runtime image needs no libc.
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# jemalloc (the operator's allocator) on arm64 is built for 64 KiB pages, so that it runs on
# kernels of 4, 16 and 64 KiB pages alike.
RUN if [ "$(uname -m)" = aarch64 ]; then export JEMALLOC_SYS_WITH_LG_PAGE=16; fi \
 && cargo build --release --locked --bin regcred-operator \
 && strip target/release/regcred-operator

# Run: distroless static, non-root (uid 65532), nothing but the binary and CA certificates.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/regcred-operator /usr/local/bin/regcred-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/regcred-operator"]
CMD ["run", "--log-format", "json"]
