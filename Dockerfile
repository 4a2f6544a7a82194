# ssed from source, on a machine that can pull images: a static build in
# the Rust image, then the binary alone in an image FROM scratch, run as
# nobody. (`make image` makes the same image without pulling anything.)
#   docker build -t ssed:latest .
FROM rust:1-slim AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu

FROM scratch
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/ssed /ssed
USER 65534:65534
EXPOSE 8000
ENTRYPOINT ["/ssed"]
CMD ["--addr", "0.0.0.0:8000"]
