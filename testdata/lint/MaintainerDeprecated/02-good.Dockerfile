LABEL org.opencontainers.image.authors="moby@example.com"
