# shellcheck shell=bash
# The lab apt repo: a flat repo served by python3's http.server bound ONLY to the bridge IP.

repo_dir() { echo "$LAB_STATE_DIR/repo"; }

repo_python() { if [[ -x /usr/bin/python3 ]]; then echo /usr/bin/python3; else command -v python3; fi; }

repo_start() {
    local brip=$1 port=$2 dir py pid i
    dir=$(repo_dir); py=$(repo_python)
    [[ $port =~ ^[0-9]+$ ]] && (( port > 0 && port < 65536 )) || die "LAB_REPO_PORT must be a TCP port, got '$port'"
    if ss -ltnH "src $brip and sport = :$port" 2>/dev/null | grep -q .; then die "port $brip:$port is taken; set LAB_REPO_PORT"; fi
    ( exec setsid "$py" -m http.server --bind "$brip" --directory "$dir" "$port" ) \
        </dev/null >"$LAB_STATE_DIR/repo.log" 2>&1 9>&- 8>&- 7>&- 6>&- &
    pid=$!
    echo "$pid" >"$LAB_STATE_DIR/repo.pid"
    wait_exec "$pid" "$(basename "$py")" || { tail -n 5 "$LAB_STATE_DIR/repo.log" >&2; die "the repo server exited at start"; }
    for (( i = 0; i < 50; i++ )); do
        [[ -d /proc/$pid ]] || { tail -n 5 "$LAB_STATE_DIR/repo.log" >&2; die "the repo server exited at start"; }
        if timeout 1 bash -c "exec 3<>/dev/tcp/$brip/$port" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "the repo server did not listen on $brip:$port within 5 s"
}

repo_pid() {
    local p
    [[ -f $LAB_STATE_DIR/repo.pid ]] || return 1
    p=$(<"$LAB_STATE_DIR/repo.pid")
    pid_alive "$p" "http.server" || return 1
    echo "$p"
}
