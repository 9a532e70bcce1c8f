#!/bin/sh
# The container's entry point (see Dockerfile): starts redis-server on all interfaces with the
# module loaded, data in /data. Module arguments: every PRESENCE_<NAME>=<value> variable (NAME in
# upper case with _ for -: PRESENCE_MAX_DEVICES=8 is `max-devices 8`), then the container's
# arguments. Server options: REDIS_ARGS.
set -eu
module_args=""
for pair in $(env | grep '^PRESENCE_' | sed 's/^PRESENCE_//'); do
    name=$(printf '%s' "${pair%%=*}" | tr 'A-Z_' 'a-z-')
    module_args="$module_args $name ${pair#*=}"
done
# shellcheck disable=SC2086 # word splitting is the point: names and values are single words
exec redis-server /usr/local/etc/redis/redis.conf \
    --bind 0.0.0.0 --protected-mode no --dir /data ${REDIS_ARGS:-} \
    --loadmodule /usr/local/lib/redis/modules/libpresence.so $module_args "$@"
