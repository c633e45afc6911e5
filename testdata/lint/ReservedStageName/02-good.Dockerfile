FROM alpine AS builder
