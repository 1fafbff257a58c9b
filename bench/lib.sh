# Shared by bench/run.sh and bench/ref_schema.sh (sourced, not run).

# The Twilio auth token the generator signs with and the servers check.
TOKEN=0123456789abcdef0123456789abcdef

wait_port() { for _ in $(seq 1 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
# A process's CPU time (user + system) in clock ticks.
cpu_ticks() { awk '{print $14+$15}' /proc/$1/stat; }
peak_rss_kib() { awk '/VmHWM/{print $2}' /proc/$1/status; }
# Bytes a process has caused to be written to storage.
written_bytes() { awk '/^write_bytes/{print $2}' /proc/$1/io; }
