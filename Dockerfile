# mailarray node image: the static binary alone, run as a non-root user.
# Build the binary first (make build, CGO_ENABLED=0), then:
#   docker build -t mailarray .
FROM scratch
COPY bin/mailarray /mailarray
# An empty data directory owned by the runtime user (scratch has no mkdir).
COPY --chown=65532:65532 deploy/empty/ /data/
USER 65532:65532
VOLUME ["/data"]
EXPOSE 25 110 995 143 993 53/udp 53/tcp 7000 7946/udp 7946/tcp 8080
ENTRYPOINT ["/mailarray"]
CMD ["serve", "--data", "/data"]
