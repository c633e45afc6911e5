FROM scratch
COPY ./forever/helloworld.txt /helloworld.txt
