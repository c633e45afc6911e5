FROM debian:latest as builder
