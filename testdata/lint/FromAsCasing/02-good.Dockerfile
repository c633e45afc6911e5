FROM debian:latest AS deb-builder
