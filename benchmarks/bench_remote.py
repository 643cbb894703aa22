#!/usr/bin/env python3
"""Remote stores: pulling a bubble vs making it, a fleet of fresh runners, and the S3 clients.

    python benchmarks/bench_remote.py [--reps 3] [--json] [--runners 8]
    python benchmarks/bench_remote.py --clients [--objects 300] [--reps 3] [--json]

Default (needs the package index and moto[server] + boto3, the test extra): a moto S3 server
on 127.0.0.1 in its own process, and for ``rich==13.4.2`` per rep, interleaved:

- ``pip install --target`` (the baseline), our cold ``pip-omni install --bubble`` from the
  index, and ``pip-omni install --bubble`` on an empty store with the bubble on the remote
  (s3 and file://): whole commands, wall time;
- then three bubbles (rich 13.4.2, rich 13.5.3, click 8.1.7) pushed twice (the second
  push's object bytes), and ``--runners`` fresh runners (empty stores) pulling all three at
  once: per runner bytes, requests, objects, the most times any key was fetched, time.

Goals (issue 14): pulled bubble <= 0.2x ``pip install --target``; second push 0 object
bytes; each runner fetches each object it lacks exactly once.

``--clients``: the S3 client candidates (boto3 with a thread pool, obstore with asyncio,
s3fs's bulk calls) putting, heading and getting ``--objects`` small objects (0.5-8 KiB, the
size of most files in a bubble) against the same moto server; plus each one's import time.
Clients that are not installed are reported as such. Nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FAKE = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """moto's S3 server in its own process (so it does not share our GIL)."""

    def __enter__(self):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("moto server did not start (is moto[server] installed?)") from None
                time.sleep(0.1)

    def bucket(self) -> str:
        import boto3

        name = "bench-" + uuid.uuid4().hex[:10]
        boto3.client("s3", endpoint_url=self.url, **_creds()).create_bucket(Bucket=name)
        return name

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _creds() -> dict:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def _stats(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


# -- the clients -----------------------------------------------------------------------------


def _payloads(n: int) -> dict[str, bytes]:
    rng = random.Random(14)
    return {f"objects/{i:02x}/{uuid.UUID(int=rng.getrandbits(128)).hex}": rng.randbytes(rng.randint(512, 8192))
            for i in range(n)}


def _boto3(endpoint: str, bucket: str, data: dict) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    import botocore.config

    c = boto3.client("s3", endpoint_url=endpoint, config=botocore.config.Config(max_pool_connections=16), **_creds())
    out = {}
    with ThreadPoolExecutor(16) as pool:
        t = time.perf_counter()
        list(pool.map(lambda kv: c.put_object(Bucket=bucket, Key=kv[0], Body=kv[1], IfNoneMatch="*"), data.items()))
        out["put"] = time.perf_counter() - t
        t = time.perf_counter()
        list(pool.map(lambda k: c.head_object(Bucket=bucket, Key=k), data))
        out["head"] = time.perf_counter() - t
        t = time.perf_counter()
        got = list(pool.map(lambda k: c.get_object(Bucket=bucket, Key=k)["Body"].read(), data))
        out["get"] = time.perf_counter() - t
    assert got == list(data.values())
    return out


def _obstore(endpoint: str, bucket: str, data: dict) -> dict:
    import asyncio

    import obstore
    from obstore.store import S3Store

    store = S3Store(bucket, endpoint=endpoint, region="us-east-1", access_key_id="testing",
                    secret_access_key="testing", virtual_hosted_style_request=False,
                    client_options={"allow_http": True})
    out = {}

    async def run():
        sem = asyncio.Semaphore(16)

        async def bounded(coro):
            async with sem:
                return await coro

        t = time.perf_counter()
        await asyncio.gather(*(bounded(obstore.put_async(store, k, v, mode="create")) for k, v in data.items()))
        out["put"] = time.perf_counter() - t
        t = time.perf_counter()
        await asyncio.gather(*(bounded(obstore.head_async(store, k)) for k in data))
        out["head"] = time.perf_counter() - t
        t = time.perf_counter()

        async def get(k):
            r = await obstore.get_async(store, k)
            return bytes(await r.bytes_async())

        got = await asyncio.gather(*(bounded(get(k)) for k in data))
        out["get"] = time.perf_counter() - t
        assert got == list(data.values())

    asyncio.run(run())
    return out


def _s3fs(endpoint: str, bucket: str, data: dict) -> dict:
    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint, max_concurrency=16,
                           client_kwargs={"region_name": "us-east-1"})
    paths = {f"{bucket}/{k}": v for k, v in data.items()}
    out = {}
    t = time.perf_counter()
    fs.pipe(paths)  # no create-only mode in fsspec's bulk put
    out["put"] = time.perf_counter() - t
    t = time.perf_counter()
    for p in paths:
        fs.info(p, refresh=True)  # fsspec has no bulk head
    out["head"] = time.perf_counter() - t
    t = time.perf_counter()
    got = fs.cat(list(paths))
    out["get"] = time.perf_counter() - t
    assert [got[p] for p in paths] == list(paths.values())
    return out


CLIENTS = {"boto3": ("boto3", _boto3), "obstore": ("obstore", _obstore), "s3fs": ("s3fs", _s3fs)}


def bench_clients(args) -> dict:
    import importlib.util

    data = _payloads(args.objects)
    result = {"objects": args.objects, "bytes": sum(map(len, data.values())), "clients": {}}
    with Moto() as moto:
        for name, (module, fn) in CLIENTS.items():
            if importlib.util.find_spec(module) is None:
                result["clients"][name] = {"error": "not installed"}
                continue
            imports = []
            for _ in range(args.reps):
                t = time.perf_counter()
                subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
                imports.append(time.perf_counter() - t)
            base = []
            for _ in range(args.reps):
                t = time.perf_counter()
                subprocess.run([sys.executable, "-c", "pass"], check=True)
                base.append(time.perf_counter() - t)
            reps = [fn(moto.url, moto.bucket(), data) for _ in range(args.reps)]
            result["clients"][name] = {
                **{op: _stats([r[op] for r in reps]) for op in ("put", "head", "get")},
                "import": _stats([i - b for i, b in zip(imports, base)]),
            }
    return result


def print_clients(r: dict) -> None:
    print(f"{r['objects']} objects, {r['bytes']} bytes, 16 at a time, moto server on loopback; median (min-max) s")
    print(f"{'client':8}  {'put':>18}  {'head':>18}  {'get':>18}  {'import':>18}")
    for name, c in r["clients"].items():
        if "error" in c:
            print(f"{name:8}  {c['error']}")
            continue
        cells = [f"{c[op]['median']:.3f} ({c[op]['min']:.3f}-{c[op]['max']:.3f})" for op in ("put", "head", "get", "import")]
        print(f"{name:8}  " + "  ".join(f"{x:>18}" for x in cells))


# -- pulled bubble vs making it; a fleet of runners --------------------------------------------

PULL = r"""
import json, sys, time
from omnipkg_hook.store import Store
from omnipkg_pip.remote import open_backend, sync
root, url, *reqs = sys.argv[1:]
t = time.perf_counter()
backend = open_backend(url)
r = sync.pull(Store(root), backend, reqs)
print(json.dumps({"time": time.perf_counter() - t, "bubbles": len(r["bubbles"]), "objects": r["objects"],
                  "bytes": backend.stats["bytes_down"], "requests": backend.stats["requests"],
                  "max_fetches": max(backend.gets.values()), "object_keys": sum(k.startswith("objects/") for k in backend.gets)}))
"""


def _omni(store: str, *args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omnipkg_pip", *args], capture_output=True, text=True,
                          env={**env, "OMNIPKG_STORE": store}, check=True)


def _timed(cmd, env) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - t


def bench_pull(args) -> dict:
    sys.path.insert(0, ROOT)
    tmp = tempfile.mkdtemp(prefix="bench-remote-")
    # PYTHONDONTWRITEBYTECODE would make every pip-omni command compile its own modules again.
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMNIPKG_PINS", "OMNIPKG_REMOTE", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    env.update(FAKE, PYTHONPATH=ROOT)
    try:
        with Moto() as moto:
            env["AWS_ENDPOINT_URL"] = moto.url
            s3 = f"s3://{moto.bucket()}/ci"
            folder = f"file://{tmp}/shared"
            three = ["rich==13.4.2", "rich==13.5.3", "click==8.1.7"]
            seed = os.path.join(tmp, "seed")
            for req in three:  # warms pip's cache too, so every timed pip run below starts alike
                _omni(seed, "install", "--bubble", req, "-q", env=env)
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", os.path.join(tmp, "dl"),
                            "rich==13.4.2"], env=env, check=True, capture_output=True)
            pushes = []
            for url in (s3, folder, s3):
                pushes.append(json.loads(_omni(seed, "store", "push", url, *three, "--json", env=env).stdout))
            rows = {"pip --target": [], "ours, cold": [], "pulled (s3)": [], "pulled (file)": []}
            for i in range(args.reps):
                rows["pip --target"].append(_timed([sys.executable, "-m", "pip", "install", "-q",
                                                    "--disable-pip-version-check", "--target",
                                                    os.path.join(tmp, f"t{i}"), "rich==13.4.2"], env))
                rows["ours, cold"].append(_timed([sys.executable, "-m", "omnipkg_pip", "install", "--bubble", "-q",
                                                  "rich==13.4.2", "--no-remote"],
                                                 {**env, "OMNIPKG_STORE": os.path.join(tmp, f"c{i}")}))
                for label, url in (("pulled (s3)", s3), ("pulled (file)", folder)):
                    rows[label].append(_timed([sys.executable, "-m", "omnipkg_pip", "install", "--bubble", "-q",
                                               "rich==13.4.2", "--remote", url],
                                              {**env, "OMNIPKG_STORE": os.path.join(tmp, f"{label[8:-1]}{i}")}))
            fleet = []
            procs = [subprocess.Popen([sys.executable, "-c", PULL, os.path.join(tmp, f"runner{i}"), s3, *three],
                                      stdout=subprocess.PIPE, text=True, env=env) for i in range(args.runners)]
            t = time.perf_counter()
            for p in procs:
                fleet.append(json.loads(p.communicate()[0]))
            wall = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = statistics.median(rows["pip --target"])
    return {
        "cold_bubble": {k: {**_stats(v), "ratio_vs_pip_target": statistics.median(v) / base} for k, v in rows.items()},
        "push": {"first_object_bytes": pushes[0]["object_bytes"], "first_objects": pushes[0]["objects"],
                 "second_object_bytes": pushes[2]["object_bytes"], "second_requests": pushes[2]["requests"]},
        "fleet": {"runners": fleet, "wall": wall},
    }


def print_pull(r: dict) -> None:
    print("rich==13.4.2 into an empty store, whole command, median (min-max) s, ratio vs pip --target")
    for k, v in r["cold_bubble"].items():
        print(f"  {k:15} {v['median']:7.2f} ({v['min']:.2f}-{v['max']:.2f})  {v['ratio_vs_pip_target']:.3f}x")
    p = r["push"]
    print(f"push of 3 bubbles: first {p['first_objects']} objects, {p['first_object_bytes']} bytes; "
          f"second {p['second_object_bytes']} object bytes in {p['second_requests']} requests")
    f = r["fleet"]
    print(f"{len(f['runners'])} fresh runners pulling the 3 bubbles at once from s3 (wall {f['wall']:.2f} s):")
    for i, x in enumerate(f["runners"]):
        print(f"  runner {i}: {x['time']:.2f} s, {x['requests']} requests, {x['bytes']} bytes, {x['objects']} objects,"
              f" most fetches of one key: {x['max_fetches']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--clients", action="store_true", help="compare the S3 client libraries instead")
    ap.add_argument("--objects", type=int, default=300, help="--clients: how many small objects")
    ap.add_argument("--runners", type=int, default=8)
    args = ap.parse_args(argv)
    import importlib.util

    missing = [m for m in ("moto", "boto3") if importlib.util.find_spec(m) is None]
    if missing:  # like the other scripts: a note, not a failure, where its tools are not installed
        print(f"bench_remote: needs {' and '.join(missing)} (pip install -e '.[test]'); skipped", file=sys.stderr)
        return 0
    result = bench_clients(args) if args.clients else bench_pull(args)
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
    elif args.clients:
        print_clients(result)
    else:
        print_pull(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
