"""What the scale benchmarks share: idgate's memory as they count it, and host B's nginx."""
from pathlib import Path

from peers import Proc, wait_listening


def rss_kib(pid):
    """RSS of idgate's worker (the child of the main process), else of the process itself."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    target = children[0] if children else pid
    for line in Path(f"/proc/{target}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


NGINX = """
worker_processes 1;
worker_rlimit_nofile {files};
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-tmp;
  proxy_temp_path {work}/nginx-tmp;
  fastcgi_temp_path {work}/nginx-tmp;
  uwsgi_temp_path {work}/nginx-tmp;
  scgi_temp_path {work}/nginx-tmp;
  keepalive_timeout 600s;
  keepalive_requests 1000000;
  server {{
{listens}
    location / {{ default_type text/plain; return 200 "hello from host B\\n"; }}
  }}
}}
"""


def start_nginx(host, work: Path, addresses, connections=8192):
    """One nginx worker in `host` answering every GET on each "addr:port" with 18 bytes; its
    files under `work`. Returns the process once every port listens."""
    (work / "nginx-tmp").mkdir(parents=True, exist_ok=True)
    listens = "\n".join(f"    listen {a} reuseport backlog=4096;" for a in addresses)
    conf = work / "nginx.conf"
    conf.write_text(NGINX.format(work=work, listens=listens, connections=connections, files=2 * connections))
    proc = Proc(host, ["nginx", "-c", conf, "-g", "daemon off;"], work / "nginx.log")
    wait_listening(host, sorted({int(a.rsplit(":", 1)[1]) for a in addresses}), [proc])
    return proc
