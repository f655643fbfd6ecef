#!/bin/sh
# Runs Redis 7.0's own Tcl test suite (not part of this repository) against a running
# `blinkstore serve --tcp HOST:PORT` (or a redis-server, for the reference counts) and prints
# ok/err/skipped/exception per file. docs/protocol.md ("Conformance") says what the local
# harness changes are for and what the remaining failures mean.
#
#   tools/redis-conformance.sh REDIS_TESTS_DIR PORT [FILE...]
#
# REDIS_TESTS_DIR is an unpacked redis-7.0.x source tree (the directory holding tests/); the
# suite runs from a copy of it, REDIS_TESTS_DIR-conform, made and patched on first use.
# FILE defaults to the files docs/protocol.md reports on. Needs tclsh.
set -eu

source_dir=${1:?usage: $0 REDIS_TESTS_DIR PORT [FILE...]}
port=${2:?usage: $0 REDIS_TESTS_DIR PORT [FILE...]}
shift 2
[ $# -gt 0 ] || set -- unit/type/incr unit/type/string unit/type/hash unit/type/set \
    unit/type/list unit/type/zset unit/expire unit/keyspace unit/multi unit/scripting \
    unit/type/stream unit/type/stream-cgroups unit/hyperloglog unit/bitops unit/bitfield \
    unit/functions unit/geo unit/protocol unit/info unit/info-command unit/introspection \
    unit/introspection-2 unit/other unit/dump unit/querybuf unit/pubsub unit/pubsubshard unit/tracking \
    unit/latency-monitor unit/limits unit/auth unit/acl
copy=${source_dir%/}-conform

if [ ! -d "$copy" ]; then
    cp -r "$source_dir" "$copy"
    # CONFIG SET of Redis's encoding thresholds (listpack/intset/quicklist sizes) and of
    #    `save` is a no-op: the store has neither.
    sed -i 's/^    \[srv \$level "client"\] {\*}\$args$/    if {[string equal -nocase [lindex $args 0] config] \&\& [string equal -nocase [lindex $args 1] set] \&\& [regexp {^((hash|set|zset|list|stream)-(max|node|compress)|save$)} [lindex $args 2]]} { catch {[srv $level "client"] {*}$args}; return OK }\n&/' \
        "$copy/tests/test_helper.tcl"
fi

# Tests of what the store does not claim, or that stop the file or the store (see the docs).
skip_unit_type_list=''
skip_unit_protocol='Handle an empty query'
skip_unit_multi='Blocking commands ignores the timeout'
skip_unit_scripting='EVAL - JSON smoke test
/^Script block the time during execution
Script check unpack with massive arguments
Script ACL check
/not enough good replicas
reject script do not cause a Lua stack leak
Consistent eval error reporting
/^LUA redis.(error|status)_reply API'
skip_unit_type_stream_cgroups='XGROUP DESTROY should unblock XREADGROUP with -NOGROUP'
skip_unit_pubsub='PubSub messages with CLIENT REPLY OFF'
skip_unit_introspection='/^CLIENT REPLY'
skip_unit_bitops='BIT pos larger than UINT_MAX'
skip_unit_hyperloglog='HyperLogLog self test passes
Fuzzing dense/sparse encoding: Redis should always detect errors'

log_dir=$(mktemp -d)
printf '%-26s %5s %5s %8s %10s\n' file ok err skipped exception
for file in "$@"; do
    name=$(echo "$file" | tr / _ | tr - _)
    skips=$(eval "printf '%s' \"\${skip_$name:-}\"")
    set --
    if [ -n "$skips" ]; then
        printf '%s\n' "$skips" > "$log_dir/$name.skip"
        set -- --skipfile "$log_dir/$name.skip"
    fi
    log="$log_dir/$name.log"
    (cd "$copy" && timeout 900 tclsh tests/test_helper.tcl --host 127.0.0.1 --port "$port" \
        --single "$file" --clients 1 --singledb --ignore-encoding --ignore-digest \
        --tags -needs:debug --tags -needs:repl --tags -needs:config-maxmemory "$@") \
        2>&1 | sed 's/\x1b\[[0-9;]*m//g' > "$log" || true
    printf '%-26s %5s %5s %8s %10s\n' "$file" "$(grep -c '^\[ok\]' "$log")" \
        "$(grep -c '^\[err\]' "$log")" "$(grep -c '^\[ignore\]\|^\[skip\]' "$log")" \
        "$(grep -c '^\[exception\]' "$log")"
done
echo "logs: $log_dir"
