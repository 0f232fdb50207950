# The notifier as a static binary on a minimal, non-root image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
	-ldflags "-s -w -X github.com/barfinex/notifier.Version=${VERSION}" \
	-o /out/notifier ./cmd/notifier
# The data directory, owned by the image's non-root user, so that a fresh
# volume mounted there is writable.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/notifier /usr/local/bin/notifier
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
ENV NOTIFIER_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/notifier"]
CMD ["serve"]
