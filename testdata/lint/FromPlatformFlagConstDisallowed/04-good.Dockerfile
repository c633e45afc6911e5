FROM --platform=linux/amd64 alpine AS build_amd64

FROM --platform=linux/arm64 alpine AS build_arm64

FROM build_${TARGETARCH} AS build
