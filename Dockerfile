# skein-controller, Skein's control plane (config/manager runs /skein-controller). `make images`
# builds the same image without a Docker daemon (internal/images): keep ENTRYPOINT, USER and the
# labels in step with it; a test compares them.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/skein-controller .

FROM gcr.io/distroless/static:nonroot
LABEL org.opencontainers.image.title="skein-controller" \
      org.opencontainers.image.source="https://github.com/skeinmesh/skein"
COPY --from=build /out/skein-controller /skein-controller
USER 65532:65532
ENTRYPOINT ["/skein-controller"]
