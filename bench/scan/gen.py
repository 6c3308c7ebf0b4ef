"""Generates the inputs of bench/scan.sh: a tree of mixed text with planted Gatehouse credentials, and
a git repository (via `git fast-import`) with many commits, some planting, moving and deleting keys.

  python3 gen.py tree DIR SIZE_MB      -> DIR/..., DIR.planted (one "path<TAB>line<TAB>key" per line)
  python3 gen.py repo DIR COMMITS      -> a repository in DIR, DIR.planted ("path<TAB>line<TAB>key")

Besides the real keys, the inputs hold look-alikes that must not be reported: keys with a wrong
checksum, prefixes with a short or malformed tail, and random base62/base64 runs.
"""
import base64
import os
import random
import subprocess
import sys
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
rng = random.Random(20261202)


def base62_fixed(value, n):
    out = []
    for _ in range(n):
        out.append(ALPHABET[value % 62])
        value //= 62
    return "".join(reversed(out))


def api_key(kind=None, env=None):
    kind = kind or rng.choice(["sk", "rk"])
    env = env or rng.choice(["live", "test"])
    random_part = "".join(rng.choice(ALPHABET) for _ in range(30))
    checksum = base62_fixed(zlib.crc32(random_part.encode()), 6)
    return f"gth_{kind}_{env}_{random_part}{checksum}"


def look_alike():
    k = api_key()
    choice = rng.randrange(4)
    if choice == 0:  # wrong checksum
        last = k[-1]
        return k[:-1] + ("A" if last != "A" else "B")
    if choice == 1:  # one short
        return k[:-1] + " "
    if choice == 2:  # wrong environment
        return k.replace("_live_", "_prod_").replace("_test_", "_dev_")
    return "gth_sk_live_" + "".join(rng.choice(ALPHABET) for _ in range(36))  # random tail: checksum fails


WORDS = ("the of and to in is that for it as with was on be by this are or from at an which have not has "
         "config server client request response token user session cache error value return self function "
         "import export const let var def class struct impl pub fn async await match if else while loop").split()


def text_lines():
    """A pool of lines of several flavours: prose, code, JSON, logs, base64 blobs."""
    pool = []
    for _ in range(4000):
        flavour = rng.randrange(6)
        if flavour == 0:
            pool.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))))
        elif flavour == 1:
            pool.append(f"    let {rng.choice(WORDS)}_{rng.randint(0, 999)} = {rng.choice(WORDS)}({rng.randint(0, 10**6)});")
        elif flavour == 2:
            pool.append('{"id": %d, "name": "%s", "enabled": %s}' % (rng.randint(0, 10**9), rng.choice(WORDS), rng.choice(["true", "false"])))
        elif flavour == 3:
            pool.append(f"2026-12-02T01:{rng.randint(0,59):02}:{rng.randint(0,59):02}Z INFO request_id={rng.getrandbits(64):016x} path=/v1/{rng.choice(WORDS)} status=200")
        elif flavour == 4:
            pool.append(base64.b64encode(rng.randbytes(rng.randint(24, 60))).decode())
        else:
            pool.append(f"api_key = \"{look_alike()}\"")
    return pool


def write_file(path, size, pool, planted, rel):
    lines = []
    total = 0
    n_keys = 1 if rng.random() < 0.02 else 0
    plant_at = set(rng.randrange(max(1, size // 80)) for _ in range(n_keys))
    i = 0
    while total < size:
        if i in plant_at:
            k = api_key()
            line = f'GATEHOUSE_KEY="{k}"'
            planted.append((rel, i + 1, k))
        else:
            line = pool[rng.randrange(len(pool))]
        lines.append(line)
        total += len(line) + 1
        i += 1
    with open(path, "w") as f:
        f.write("\n".join(lines))
        f.write("\n")


def tree(root, size_mb):
    pool = text_lines()
    planted = []
    target = size_mb << 20
    written = 0
    n = 0
    while written < target:
        d = os.path.join(root, f"d{n // 200:03}", f"s{(n // 20) % 10}")
        os.makedirs(d, exist_ok=True)
        size = int(rng.lognormvariate(11.5, 1.2))  # median ~100 KiB, a few MiB at the top
        size = max(200, min(size, 16 << 20))
        rel = os.path.join(f"d{n // 200:03}", f"s{(n // 20) % 10}", f"f{n:05}.txt")
        write_file(os.path.join(root, rel), size, pool, planted, rel)
        written += size
        n += 1
    with open(root.rstrip("/") + ".planted", "w") as f:
        for rel, line, k in planted:
            f.write(f"{rel}\t{line}\t{k}\n")
    print(f"tree: {n} files, {written >> 20} MiB, {len(planted)} planted keys")


def repo(root, commits):
    """A linear-and-branchy history through fast-import: each commit edits a few files; about one
    in a hundred plants a key (sometimes in a file a later commit deletes or renames)."""
    os.makedirs(root, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", root], check=True)
    pool = text_lines()
    planted = []
    files = {}
    out = []
    mark = 0
    t = 1_700_000_000

    def blob(content):
        nonlocal mark
        mark += 1
        data = content.encode()
        out.append(b"blob\nmark :%d\ndata %d\n" % (mark, len(data)) + data + b"\n")
        return mark

    last_main = None
    for c in range(commits):
        ops = []
        for _ in range(rng.randint(1, 3)):
            path = f"src/m{rng.randrange(400):03}/file{rng.randrange(10)}.txt"
            n = rng.randint(20, 200)
            lines = [pool[rng.randrange(len(pool))] for _ in range(n)]
            if rng.random() < 0.01:
                k = api_key()
                at = rng.randrange(n)
                lines[at] = f"token: {k}"
                planted.append((path, at + 1, k))
            ops.append(("M", path, blob("\n".join(lines) + "\n")))
            files[path] = True
        if c % 97 == 0 and len(files) > 10:
            victim = rng.choice(sorted(files))
            ops.append(("D", victim, None))
            files.pop(victim)
        t += 60
        branch = "refs/heads/main" if c % 50 else f"refs/heads/topic{c // 50}"
        msg = f"commit {c}".encode()
        mark += 1
        head = b"commit %s\nmark :%d\ncommitter Dev <dev@example.com> %d +0000\ndata %d\n%s\n" % (
            branch.encode(), mark, t, len(msg), msg)
        if last_main is not None:
            head += b"from :%d\n" % last_main
        body = b""
        for op, path, m in ops:
            if op == "M":
                body += b"M 100644 :%d %s\n" % (m, path.encode())
            else:
                body += b"D %s\n" % path.encode()
        out.append(head + body + b"\n")
        if branch == "refs/heads/main":
            last_main = mark
    out.append(b"tag v1\nfrom :%d\ntagger Dev <dev@example.com> %d +0000\ndata 2\nv1\n" % (last_main, t))
    subprocess.run(["git", "-C", root, "fast-import", "--quiet"], input=b"".join(out), check=True)
    subprocess.run(["git", "-C", root, "checkout", "-q", "main"], check=True)
    with open(root.rstrip("/") + ".planted", "w") as f:
        for path, line, k in planted:
            f.write(f"{path}\t{line}\t{k}\n")
    print(f"repo: {commits} commits, {len(planted)} planted keys")


if __name__ == "__main__":
    what, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    (tree if what == "tree" else repo)(root, n)
