FROM alpine AS base
RUN apk add --no-cache git
