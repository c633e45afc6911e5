FROM alpine
ARG foo=bar
