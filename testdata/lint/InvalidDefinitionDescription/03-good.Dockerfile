# base is a stage for compiling source
FROM scratch AS base
# VERSION This is the version number.
ARG VERSION=1
