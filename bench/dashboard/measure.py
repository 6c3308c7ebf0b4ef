"""Signs in to the control plane and requests dashboard pages, one keep-alive connection, one request
at a time. Prints one JSON line per page: the client's median and p99 (ms) and how many answered 200.
The server's own times come from its request log (see dashboard_http.sh).
Usage: python3 measure.py BASE_URL EMAIL PASSWORD N LABEL=PATH ..."""
import http.client, json, re, statistics, sys, time, urllib.parse

base, email, password, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
u = urllib.parse.urlsplit(base)
conn = http.client.HTTPConnection(u.hostname, u.port)
cookies = {}

def req(method, path, body=None):
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), "Accept": "text/html"}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    for k, v in r.getheaders():
        if k.lower() == "set-cookie":
            name, _, rest = v.partition("=")
            cookies[name] = rest.split(";")[0]
    return r.status, data.decode("utf-8", "replace")

_, page = req("GET", "/login")
csrf = re.search(r'name="csrf" value="([^"]*)"', page).group(1)
status, _ = req("POST", "/login", urllib.parse.urlencode({"email": email, "password": password, "csrf": csrf}))
assert status == 303, f"sign-in answered {status}"

for spec in sys.argv[5:]:
    label, path = spec.split("=", 1)
    status, html = req("GET", path)
    assert status == 200, f"{label} {path}: {status} {html[:300]}"
    times, ok = [], 0
    for _ in range(n):
        t = time.perf_counter()
        status, _ = req("GET", path)
        times.append((time.perf_counter() - t) * 1000)
        ok += status == 200
    times.sort()
    print(json.dumps({"page": label, "path": path, "n": n, "ok": ok,
                      "client_median_ms": round(statistics.median(times), 2),
                      "client_p99_ms": round(times[int(0.99 * (n - 1))], 2),
                      "rows": html.count('href="/dashboard/keys/key_') + html.count("<tr>")}), flush=True)
