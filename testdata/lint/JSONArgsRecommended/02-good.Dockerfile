FROM alpine
ENTRYPOINT ["my-program", "start"]
# entrypoint becomes: my-program start
