# a non-descriptive comment
FROM scratch AS base

# another non-descriptive comment
ARG VERSION=1
