#!/usr/bin/env bash
# Wait until something accepts TCP connections on 127.0.0.1:PORT, at most SECONDS (default 30).
#
#   chapters/scripts/wait-port.sh PORT [SECONDS]
#
# Exits 0 as soon as a connection succeeds, 1 after the deadline. The chapters use it instead
# of `sleep`: a server is ready when its port accepts, however long its start took.
set -euo pipefail
port=${1:?usage: wait-port.sh PORT [SECONDS]}
seconds=${2:-30}
[[ $port =~ ^[0-9]+$ && $seconds =~ ^[0-9]+$ ]] || { echo "wait-port.sh: PORT and SECONDS are numbers" >&2; exit 2; }
deadline=$((SECONDS + seconds))
while ((SECONDS < deadline)); do
    # bash opens a TCP connection for /dev/tcp/HOST/PORT; on loopback it never hangs.
    if (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        exit 0
    fi
    sleep 0.05
done
echo "wait-port.sh: nothing accepts on 127.0.0.1:$port after ${seconds}s" >&2
exit 1
