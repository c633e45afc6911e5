FROM alpine
ENTRYPOINT my-program start
# entrypoint becomes: /bin/sh -c my-program start
