FROM alpine AS base
ARG VERSION=$foo
