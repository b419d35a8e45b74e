"""Throughput, CPU and memory of `model-agent pull` next to plain downloaders, in one run.

Generates a model (valid safetensors shards plus config.json) and serves it two ways:

- ``--backend hf`` (default): the local hub (tests/harness/hub.py, a thread of this process)
  answers the API and the ``resolve`` redirects; the file bytes come from a static CDN. With
  ``--cdn nginx`` (default when ``nginx`` is installed) that CDN is nginx (sendfile, Range),
  so every tool fetches from the same fast server and the Python hub is not the bottleneck;
  ``--cdn hub`` uses the hub's own Python CDN.
- ``--backend oci``: the local Object Storage (tests/harness/objectstore.py, Python, in a
  thread); requests are signed, so only the oci SDK and pull can fetch from it.
- ``--backend s3``: moto's standalone S3 server (``ThreadedMotoServer``, in a thread), the
  shards uploaded by boto3's ``upload_file`` (multipart, 8 MiB parts, as ``aws s3 cp`` does).

Tools (each in its own subprocess, one after the other, destination deleted in between):

- ``curl``: one process, the files one after another (``-L`` follows the redirect); unverified;
- ``aria2c``: 4 files at once, 4 ranged connections per file; unverified;
- ``aria2c-sha256``: the same with ``checksum=sha-256=...`` per file (aria2c hashes each file
  after it finished);
- ``snapshot_download``: huggingface_hub's default parallel download; unverified;
- ``oci-sdk``: ``ObjectStorageClient.get_object`` streamed to files, 4 files at once; unverified;
- ``boto3-transfer``: boto3's transfer manager (``download_file``, what ``aws s3 cp`` uses:
  ranged 8 MiB parts, ``max_concurrency`` = connections), 4 files at once; unverified;
  ``boto3-transfer-pull-parts``: the same with pull's part size (``planning.part_size``:
  32 MiB for a 512 MiB file at 4 connections), since moto reads a whole object for every
  ranged GET, so its cost grows with the number of parts, not the bytes;
- ``pull``: model-agent (ranged parallel parts, sha256/md5 of every byte hashed while it
  downloads, fsync, rename, analysis);
- ``pull-unverified``: the same with the digest step replaced by "accept" (benchmark-only
  wrapper ``_pull_unverified.py``), to measure what verification costs.

Each tool's elapsed time, CPU seconds (user+system, its whole process tree) and peak RSS
(``ru_maxrss``) are read by a small wrapper process around it. ``--sweep 1,2,4,8`` also runs
pull and aria2c at each per-file connection count and plots MB/s against it (``--plot``).

    .venv/bin/python benchmarks/pull_throughput.py --shards 4 --shard-size 1GiB --repeat 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model_agent import planning, settings  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.WARNING)
from tests.harness import hub, objectstore  # noqa: E402

REPO = "bench/model"
BUCKET, PREFIX = "models", "bench"
_BLOCK = 16 * 1024**2
HF_TOOLS = ("curl", "aria2c", "aria2c-sha256", "snapshot_download", "pull-unverified", "pull")
OCI_TOOLS = ("oci-sdk", "pull-unverified", "pull")
S3_TOOLS = ("boto3-transfer", "boto3-transfer-pull-parts", "pull-unverified", "pull")
S3_KEYS = {"AWS_ACCESS_KEY_ID": "AKIABENCH00000000000", "AWS_SECRET_ACCESS_KEY": "bench-only"}

_WRAPPER = """
import resource, subprocess, sys, time
started = time.monotonic()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
elapsed = time.monotonic() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{code} {elapsed} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
"""

_OCI_SDK = """
import concurrent.futures, json, os, sys, oci
spec = json.loads(sys.argv[1])
client = oci.object_storage.ObjectStorageClient(spec["config"], service_endpoint=spec["endpoint"])
def get(name):
    response = client.get_object(spec["namespace"], spec["bucket"], name)
    path = os.path.join(spec["dest"], name.rsplit("/", 1)[-1])
    with open(path, "wb") as out:
        for chunk in response.data.raw.stream(1024 * 1024, decode_content=False):
            out.write(chunk)
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    list(pool.map(get, spec["names"]))
"""

_NGINX_CONF = """
daemon off;
master_process on;
user root;
worker_processes {workers};
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen {host}:{port}{tls};
        {certificate}
        root {work}/cdn;
        location / {{ }}
    }}
}}
"""


def write_shard(path: pathlib.Path, size: int, seed: int) -> None:
    """A valid safetensors file of about ``size`` bytes: one U8 tensor of random bytes."""
    header_len = 128
    data_len = size - 8 - header_len
    header = json.dumps(
        {"weight": {"dtype": "U8", "shape": [data_len], "data_offsets": [0, data_len]}}
    ).encode()
    header = header.ljust(header_len, b" ")
    block = os.urandom(_BLOCK - 7) + bytes([seed % 256] * 7)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", header_len) + header)
        remaining = data_len
        while remaining:
            piece = block[: min(len(block), remaining)]
            handle.write(piece)
            remaining -= len(piece)


def make_model(directory: pathlib.Path, shards: int, shard_size: int) -> dict[str, pathlib.Path]:
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "max_position_embeddings": 4096,
        "torch_dtype": "bfloat16",
    }
    (directory / "config.json").write_text(json.dumps(config))
    for i in range(1, shards + 1):
        write_shard(directory / f"model-{i:05d}-of-{shards:05d}.safetensors", shard_size, i)
    return {p.name: p for p in sorted(directory.iterdir())}


def measure(args: Sequence[str], env: dict[str, str]) -> tuple[int, float, int, float]:
    """(exit code, seconds, peak RSS bytes, CPU seconds) of ``args`` and its children."""
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *args], capture_output=True, text=True, env=env, check=True
    )
    code, elapsed, peak_kib, cpu = out.stdout.split()
    if int(code) != 0:
        print(out.stderr[-3000:], file=sys.stderr)
    return int(code), float(elapsed), int(peak_kib) * 1024, float(cpu)


def self_signed(work: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A throw-away certificate for the CDN's address (as a private mirror would have);
    tools trust it through SSL_CERT_FILE (and REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE)."""
    cert, key = work / "cdn-cert.pem", work / "cdn-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=model-agent-bench-cdn",
         "-addext", f"subjectAltName=IP:{hub.CDN_HOST}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def nginx_cdn(
    work: pathlib.Path,
    server: hub.LocalHub,
    files: dict[str, pathlib.Path],
    *,
    tls: tuple[pathlib.Path, pathlib.Path] | None = None,
) -> Iterator[str]:
    """nginx on 127.0.0.2 serving the repo's files at the paths the hub's CDN URLs name
    (over HTTPS with ``tls``: certificate and key)."""
    from tests.harness import operator

    commit = server.commit_of(REPO)
    target = work / "cdn" / "repos" / REPO / commit
    target.mkdir(parents=True)
    for name, path in files.items():
        os.link(path, target / name)
    port = operator.free_port()
    conf = work / "nginx.conf"
    certificate = (
        f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}; ssl_protocols TLSv1.3;"
        if tls
        else ""
    )
    conf.write_text(
        _NGINX_CONF.format(
            work=work,
            host=hub.CDN_HOST,
            port=port,
            tls=" ssl" if tls else "",
            certificate=certificate,
            workers=os.cpu_count() or 2,
        )
    )
    proc = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its workers go with it (killpg)
    )
    url = f"{'https' if tls else 'http'}://{hub.CDN_HOST}:{port}"
    deadline = time.monotonic() + 10
    probe = f"{url}/repos/{REPO}/{commit}/config.json"
    trust = ["--cacert", str(tls[0])] if tls else []
    while subprocess.run(["curl", "-sf", *trust, "-o", "/dev/null", probe]).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise SystemExit(f"nginx did not start: {proc.communicate()[1].decode()}")
        time.sleep(0.1)
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def hf_commands(
    server: hub.LocalHub, files: dict[str, pathlib.Path], work: pathlib.Path, conns: int
) -> dict[str, list[str]]:
    dest = work / "dest"
    urls = {name: f"{server.endpoint}/{REPO}/resolve/main/{name}" for name in files}
    curl = ["curl", "-sS", "-L", "--fail"]
    for name, url in urls.items():
        curl += ["-o", str(dest / name), url]
    plain, checked = work / "aria2-plain.txt", work / "aria2-sha256.txt"
    plain.write_text("".join(f"{url}\n  out={name}\n" for name, url in urls.items()))
    checked.write_text(
        "".join(
            f"{url}\n  out={name}\n  checksum=sha-256={server.file(REPO, name).sha256}\n"
            for name, url in urls.items()
        )
    )
    aria = [
        "aria2c",
        "-q",
        "-j",
        "4",
        "-x",
        str(conns),
        "-s",
        str(conns),
        "-k",
        "16M",
        "--file-allocation=none",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--check-integrity=true",
        "-d",
        str(dest),
    ]
    snapshot = [
        sys.executable,
        "-c",
        "import sys; from huggingface_hub import snapshot_download; "
        "snapshot_download(sys.argv[1], local_dir=sys.argv[2], endpoint=sys.argv[3])",
        REPO,
        str(dest),
        server.endpoint,
    ]
    pull_args = [
        "pull",
        f"hf://{REPO}",
        "--path",
        str(dest),
        "--param",
        f"endpoint={server.endpoint}",
        "--log-level",
        "warning",
        "--multipart-concurrency",
        str(conns),
    ]
    return {
        "curl": curl,
        "aria2c": [*aria, "-i", str(plain)],
        "aria2c-sha256": [*aria, "-i", str(checked)],
        "snapshot_download": snapshot,
        "pull": [sys.executable, "-m", "model_agent.cli", *pull_args],
        "pull-unverified": [
            sys.executable,
            str(ROOT / "benchmarks" / "_pull_unverified.py"),
            *pull_args,
        ],
        **pinned(pull_args),
    }


#: ``--cpus 0;0,1``: extra tools ``pull@0``, ``pull@0,1``: pull pinned with taskset (the
#: engine starts one transfer thread per CPU it may use).
PINNED: list[str] = []


#: ``--py-spy FILE``: an extra tool ``pull-profiled``, the pull under py-spy (collapsed stacks
#: of every thread, native frames included, written to FILE).
PROFILE: list[str] = []


def pinned(pull_args: list[str]) -> dict[str, list[str]]:
    spy = ["py-spy", "record", "--threads", "--native", "--rate", "200", "--format", "raw"]
    profiled: dict[str, list[str]] = {}
    for path in PROFILE[:1]:
        command = [*spy, "-o", path, "--", sys.executable, "-m", "model_agent.cli", *pull_args]
        profiled["pull-profiled"] = command
    return profiled | {
        f"pull@{cpus}": ["taskset", "-c", cpus, sys.executable, "-m", "model_agent.cli", *pull_args]
        for cpus in PINNED
    }


def oci_commands(
    store: objectstore.LocalObjectStore,
    files: dict[str, pathlib.Path],
    work: pathlib.Path,
    conns: int,
) -> tuple[dict[str, list[str]], dict[str, str]]:
    dest = work / "dest"
    key_file = work / "oci_key.pem"
    key_file.write_text(store.config["key_content"])
    key_file.chmod(0o600)
    config_file = work / "oci_config"
    config_file.write_text(
        "[DEFAULT]\n"
        + "".join(f"{k}={store.config[k]}\n" for k in ("user", "fingerprint", "tenancy", "region"))
        + f"key_file={key_file}\n"
    )
    spec = {
        "config": {k: v for k, v in store.config.items()},
        "endpoint": store.endpoint,
        "namespace": store.namespace,
        "bucket": BUCKET,
        "dest": str(dest),
        "names": [f"{PREFIX}/{name}" for name in files],
    }
    pull_args = [
        "pull",
        f"oci://n/{store.namespace}/b/{BUCKET}/o/{PREFIX}",
        "--path",
        str(dest),
        "--param",
        "auth=UserPrincipal",
        "--param",
        f"endpoint={store.endpoint}",
        "--log-level",
        "warning",
        "--multipart-concurrency",
        str(conns),
    ]
    commands = {
        "oci-sdk": [sys.executable, "-c", _OCI_SDK, json.dumps(spec)],
        "pull": [sys.executable, "-m", "model_agent.cli", *pull_args],
        "pull-unverified": [
            sys.executable,
            str(ROOT / "benchmarks" / "_pull_unverified.py"),
            *pull_args,
        ],
        **pinned(pull_args),
    }
    return commands, {"OCI_CONFIG_FILE": str(config_file)}


_BOTO3 = """
import concurrent.futures, json, os, sys, boto3
from boto3.s3.transfer import TransferConfig
spec = json.loads(sys.argv[1])
client = boto3.client("s3", endpoint_url=spec["endpoint"], region_name="us-east-1")
chunk = spec.get("chunk") or 8 * 1024 * 1024
config = TransferConfig(max_concurrency=spec["conns"], multipart_chunksize=chunk)
def get(key):
    path = os.path.join(spec["dest"], key.rsplit("/", 1)[-1])
    client.download_file(spec["bucket"], key, path, Config=config)
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    list(pool.map(get, spec["keys"]))
"""


def s3_commands(
    endpoint: str, files: dict[str, pathlib.Path], work: pathlib.Path, conns: int
) -> dict[str, list[str]]:
    dest = work / "dest"
    spec = {
        "endpoint": endpoint,
        "bucket": BUCKET,
        "dest": str(dest),
        "conns": conns,
        "keys": [f"{PREFIX}/{name}" for name in files],
    }
    pull_args = [
        "pull", f"s3://{BUCKET}/{PREFIX}", "--path", str(dest), "--log-level", "warning",
        "--multipart-concurrency", str(conns),
    ]  # fmt: skip
    biggest = max(p.stat().st_size for p in files.values())
    defaults = settings.Settings()
    chunk = planning.part_size(biggest, threshold=defaults.multipart_threshold, concurrency=conns)
    same = {**spec, "chunk": max(5 * 1024**2, chunk)}
    return {
        "boto3-transfer": [sys.executable, "-c", _BOTO3, json.dumps(spec)],
        "boto3-transfer-pull-parts": [sys.executable, "-c", _BOTO3, json.dumps(same)],
        "pull": [sys.executable, "-m", "model_agent.cli", *pull_args],
        "pull-unverified": [
            sys.executable,
            str(ROOT / "benchmarks" / "_pull_unverified.py"),
            *pull_args,
        ],
    }


def serve_s3(files: dict[str, pathlib.Path], env: dict[str, str]) -> Any:
    """Start moto's S3 server, upload the shards with boto3; returns (server, endpoint)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=BUCKET)
    for name, path in files.items():
        client.upload_file(str(path), BUCKET, f"{PREFIX}/{name}")
    env.update(S3_KEYS)
    env.update({"AWS_ENDPOINT_URL_S3": endpoint, "AWS_EC2_METADATA_DISABLED": "true"})
    return server, endpoint


Result = tuple[float, int, float]  # seconds, peak RSS bytes, CPU seconds


def run_tool(
    label: str,
    command: list[str],
    env: dict[str, str],
    work: pathlib.Path,
    files: dict[str, pathlib.Path],
) -> Result:
    dest = work / "dest"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(work / "state", ignore_errors=True)
    dest.mkdir(parents=True)
    code, elapsed, peak, cpu = measure(command, env)
    if code != 0:
        raise SystemExit(f"{label} failed with exit code {code}")
    for name, source in files.items():
        got = (dest / name).stat().st_size if (dest / name).exists() else -1
        if got != source.stat().st_size:
            raise SystemExit(f"{label}: {name} has {got} bytes, expected {source.stat().st_size}")
    print(
        f"{label}: {elapsed:.2f}s, CPU {cpu:.2f}s, peak RSS {peak / 2**20:.0f} MiB",
        file=sys.stderr,
        flush=True,
    )
    return elapsed, peak, cpu


def run_all(
    commands: dict[str, list[str]],
    tools: Sequence[str],
    env: dict[str, str],
    work: pathlib.Path,
    files: dict[str, pathlib.Path],
    repeat: int,
) -> dict[str, list[Result]]:
    results: dict[str, list[Result]] = {label: [] for label in tools}
    for _ in range(repeat):
        for label in tools:
            results[label].append(run_tool(label, commands[label], env, work, files))
    shutil.rmtree(work / "dest", ignore_errors=True)
    return results


def print_table(results: dict[str, list[Result]], total: int, reference: str) -> None:
    best = {label: min(runs) for label, runs in results.items()}
    ref_rate = total / best[reference][0]
    snap = best.get("snapshot_download")
    print(
        f"| tool | verified | best s | MB/s (best) | MB/s (all runs) | vs {reference} | "
        + ("vs snapshot_download | " if snap else "")
        + "CPU s/GB | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|" + ("---|" if snap else "") + "---|---|")
    for label, runs in results.items():
        elapsed, _, cpu = best[label]
        rate = total / elapsed
        spread = ", ".join(f"{total / r[0] / 1e6:.0f}" for r in runs)
        verified = {"pull": "yes, while downloading", "aria2c-sha256": "yes, after download"}.get(
            label.split("@")[0].replace("pull-profiled", "pull"), "no"
        )
        cells = [
            label,
            verified,
            f"{elapsed:.2f}",
            f"{rate / 1e6:.0f}",
            spread,
            f"{rate / ref_rate:.2f}x",
        ]
        if snap:
            cells.append(f"{rate / (total / snap[0]):.2f}x")
        cells += [f"{cpu / (total / 1e9):.2f}", f"{max(r[1] for r in runs) / 2**20:.0f}"]
        print("| " + " | ".join(cells) + " |")
    if "pull" in best and "pull-unverified" in best:
        ratio = best["pull-unverified"][0] / best["pull"][0]
        print(f"\nverified/unverified throughput (best of each): {ratio:.2f}")


def plot(
    sweep: dict[str, dict[int, float]],
    path: pathlib.Path,
    title: str,
    flat: dict[str, float] | None = None,
) -> None:
    """MB/s against connections per file, one line per swept tool; ``flat`` tools (no
    ranged connections, e.g. curl) as dashed horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.ticker
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 3.6), dpi=100)
    names = {"pull": "pull (verified)"}
    for label, points in sweep.items():
        xs = sorted(points)
        axes.plot(xs, [points[x] for x in xs], marker="o", label=names.get(label, label))
    for label, rate in (flat or {}).items():
        axes.axhline(rate, linestyle="--", color="grey", linewidth=1)
        axes.annotate(
            f"{label} (unverified)",
            (1, rate),
            textcoords="offset points",
            xytext=(2, -11),
            fontsize=8,
        )
    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    axes.set_xlabel("ranged connections per file (4 files at once)")
    axes.set_ylabel("MB/s (best run)")
    axes.set_title(title, fontsize=9)
    tops = [v for points in sweep.values() for v in points.values()] + list((flat or {}).values())
    axes.set_ylim(0, max(tops) * 1.12)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    print(f"plot written to {path}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("hf", "oci", "s3"), default="hf")
    parser.add_argument(
        "--cdn",
        choices=("nginx", "hub"),
        default=None,
        help="who serves the HF file bytes (default: nginx when installed)",
    )
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--shard-size", default="1GiB", help="bytes per shard (e.g. 256MiB)")
    parser.add_argument("--workdir", default=None, help="scratch directory (default: /tmp)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool (best is kept)")
    parser.add_argument("--tools", default=None, help="comma-separated subset of the tools")
    parser.add_argument(
        "--connections", type=int, default=4, help="ranged connections per file for pull and aria2c"
    )
    parser.add_argument(
        "--tls", action="store_true", help="nginx serves HTTPS with a throw-away certificate"
    )
    parser.add_argument(
        "--cpus",
        default=None,
        help="semicolon-separated CPU lists: adds a taskset-pinned pull per list (0;0,1)",
    )
    parser.add_argument("--py-spy", default=None, help="profile a pull into this file")
    parser.add_argument("--sweep", default=None, help="connection counts to sweep, e.g. 1,2,4,8")
    parser.add_argument(
        "--plot", default=str(ROOT / "benchmarks" / "throughput_vs_concurrency.png")
    )
    options = parser.parse_args()
    if options.py_spy:
        PROFILE.append(str(pathlib.Path(options.py_spy).absolute()))
    if options.cpus:
        PINNED.extend(c.strip() for c in options.cpus.split(";") if c.strip())
    shard_size = settings.parse_size(options.shard_size)
    cdn = options.cdn or ("nginx" if shutil.which("nginx") else "hub")
    work = pathlib.Path(tempfile.mkdtemp(prefix="pull-bench-", dir=options.workdir))
    need = 2.2 * options.shards * shard_size
    if shutil.disk_usage(work).free < need:
        print(f"not enough disk in {work}: need {need:.0f} bytes", file=sys.stderr)
        return 2
    env = {
        **os.environ,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "MODEL_AGENT_STATE_DIR": str(work / "state"),
    }
    try:
        files = make_model(work / "source", options.shards, shard_size)
        total = sum(p.stat().st_size for p in files.values())
        default_tools = {"hf": HF_TOOLS, "oci": OCI_TOOLS, "s3": S3_TOOLS}[options.backend]
        tools = options.tools.split(",") if options.tools else list(default_tools)
        tools += [f"pull@{cpus}" for cpus in PINNED if f"pull@{cpus}" not in tools]
        tools += ["pull-profiled"] if PROFILE and "pull-profiled" not in tools else []
        if options.backend == "hf":
            server = hub.LocalHub()
            with server.serve_in_thread():
                server.add_repo(REPO, files)
                tls = self_signed(work) if options.tls else None
                if tls:
                    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
                        env[variable] = str(tls[0])
                serving = (
                    nginx_cdn(work, server, files, tls=tls) if cdn == "nginx" else nullcontext()
                )
                with serving as cdn_url:
                    if cdn_url:
                        server.cdn_endpoint = cdn_url
                    make = lambda conns: hf_commands(server, files, work, conns)  # noqa: E731
                    report(make, tools, env, work, files, total, options, cdn)
        elif options.backend == "s3":
            moto, endpoint = serve_s3(files, env)
            try:
                make = lambda conns: s3_commands(endpoint, files, work, conns)  # noqa: E731
                report(make, tools, env, work, files, total, options, "moto S3 server (Python)")
            finally:
                moto.stop()
        else:
            store = objectstore.LocalObjectStore()
            with store.serve_in_thread():
                for name, path in files.items():
                    store.add_object(BUCKET, f"{PREFIX}/{name}", path)
                extra: dict[str, str] = {}

                def make(conns: int) -> dict[str, list[str]]:
                    commands, more = oci_commands(store, files, work, conns)
                    extra.update(more)
                    return commands

                make(options.connections)
                env.update(extra)
                report(make, tools, env, work, files, total, options, "objectstore (Python)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(
    make: Callable[[int], dict[str, list[str]]],
    tools: Sequence[str],
    env: dict[str, str],
    work: pathlib.Path,
    files: dict[str, pathlib.Path],
    total: int,
    options: argparse.Namespace,
    server_kind: str,
) -> None:
    """Run every tool, print the table; with ``--sweep``, the sweep table and the plot."""
    results = run_all(make(options.connections), tools, env, work, files, options.repeat)
    shard_mib = settings.parse_size(options.shard_size) / 2**20
    https = " over HTTPS (TLS 1.3)" if options.tls else ""
    print(
        f"\n{options.backend}: {options.shards} x {shard_mib:.0f}"
        f" MiB shards ({total / 1e9:.2f} GB), {os.cpu_count()} CPUs, data server: "
        f"{server_kind}{https}, {options.connections} connections per file, "
        f"best of {options.repeat}\n"
    )
    print_table(results, total, tools[0])
    if not options.sweep:
        return
    counts = [int(x) for x in options.sweep.split(",")]
    swept = [
        t for t in ("pull", "pull-unverified", "aria2c", "oci-sdk", "boto3-transfer") if t in tools
    ]
    sweep: dict[str, dict[int, float]] = {label: {} for label in swept}
    for _ in range(options.repeat):
        for conns in counts:
            commands = make(conns)
            for label in swept:
                if label == "oci-sdk" and conns != counts[0]:
                    continue  # no ranged parts: one point is its line
                elapsed = run_tool(f"{label} x{conns}", commands[label], env, work, files)[0]
                sweep[label][conns] = max(sweep[label].get(conns, 0.0), total / elapsed / 1e6)
    print("\n| connections per file | " + " | ".join(swept) + " |")
    print("|---|" + "---|" * len(swept))
    for conns in counts:
        cells = [f"{sweep[label][conns]:.0f}" if conns in sweep[label] else "" for label in swept]
        print(f"| {conns} | " + " | ".join(cells) + " |")
    title = (
        f"{options.backend}: {options.shards} x {options.shard_size} from {server_kind}, "
        f"{os.cpu_count()} CPUs"
    )
    flat = {
        label: total / min(results[label])[0] / 1e6
        for label in ("curl", "snapshot_download")
        if label in results
    }
    plot(sweep, pathlib.Path(options.plot), title, flat)


if __name__ == "__main__":
    sys.exit(main())
