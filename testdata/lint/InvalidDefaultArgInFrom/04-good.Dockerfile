ARG TAG
FROM alpine:${TAG:-3.14}
