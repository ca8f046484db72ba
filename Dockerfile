# shmbrokerd container image: a build stage with Debian's -dev packages, and
# a runtime stage with only the shared libraries the two binaries load.
#
#   podman build --format docker -t shmbroker .        # (docker build -t shmbroker .)
#
# BASE_IMAGE: on a normal machine pass --build-arg BASE_IMAGE=debian:bookworm-slim.
# The default is the image tests/deploy/podman_lib.sh makes with debootstrap,
# for hosts that cannot pull from a registry.
# --format docker: OCI images have no HEALTHCHECK; podman drops it without it.
#
# Run (docs/deployment.md has the whole walk-through):
#   podman run -d --name shmbrokerd -v shmbroker-sock:/run/shmbroker \
#     -p 127.0.0.1:9464:9464 shmbroker --capacity=1GiB
#   podman run --rm -v shmbroker-sock:/run/shmbroker --entrypoint shmbroker shmbroker status
ARG BASE_IMAGE=localhost/debian:bookworm

FROM ${BASE_IMAGE} AS build
# What building needs, and nothing for tests or benchmarks (those are off).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake ninja-build g++ pkg-config ccache \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libabsl-dev nlohmann-json3-dev libspdlog-dev prometheus-cpp-dev \
      libsystemd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build reads, so that a change to docs/, tests/ or deploy/
# keeps the cached layers below.
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY common/ common/
COPY proto/ proto/
COPY core/ core/
COPY server/ server/
COPY client/ client/
# The ccache cache mount survives between builds on the same machine (podman
# and BuildKit both keep it), so a source change recompiles only what changed.
RUN --mount=type=cache,target=/root/.ccache \
    cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DSHMBROKER_BUILD_TESTS=OFF -DSHMBROKER_BUILD_BENCH=OFF \
      -DSHMBROKER_BUILD_PYTHON=OFF -DSHMBROKER_DEB_PACKAGES=OFF \
      -DCMAKE_INSTALL_PREFIX=/usr/local \
 && cmake --build /build -j2 \
 && DESTDIR=/out cmake --install /build --strip \
 && rm -rf /out/usr/local/include /out/usr/local/lib/cmake /out/usr/local/lib/pkgconfig

FROM ${BASE_IMAGE}
# The runtime packages of exactly the libraries `ldd` lists for shmbrokerd,
# shmbroker and libshmbroker.so (their own dependencies come along).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 \
      libspdlog1.10 libfmt9 libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 \
      libsystemd0 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
# A fixed uid/gid: workers in other containers connect as this uid, or with
# this gid as a supplementary group (socket 0660, directory 0750).
RUN groupadd --gid 10001 shmbroker \
 && useradd --uid 10001 --gid shmbroker --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin shmbroker \
 && install -d -o shmbroker -g shmbroker -m 0750 /run/shmbroker
COPY --from=build /out/usr/local/ /usr/local/
# Fail the build, not the first container, if a library is missing.
RUN ldconfig \
 && if ldd /usr/local/bin/shmbrokerd /usr/local/bin/shmbroker | grep 'not found'; then exit 1; fi

# Both the daemon and the CLI default to $SHMBROKER_SOCKET: change the path
# here (or with -e) and the health check follows.
ENV SHMBROKER_SOCKET=/run/shmbroker/broker.sock
# A new named volume is filled from the image: owned by shmbroker, mode 0750.
VOLUME ["/run/shmbroker"]
EXPOSE 9464
USER 10001:10001
# exit 0 iff the daemon answers SERVING.
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/shmbroker", "health"]
# Metrics on every interface of the container's network namespace, so that a
# published port or a Prometheus in the cluster can scrape them. Arguments
# after the image name are added (later flags win), e.g. --capacity=1GiB.
ENTRYPOINT ["/usr/local/bin/shmbrokerd", "--metrics_address=0.0.0.0:9464"]
