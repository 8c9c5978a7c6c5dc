"""Load from ``wrk`` (Debian's package; installed with apt-get when missing and root).

Each run writes a small Lua script: requests rotate through a file of queue tokens (a
fresh ``Authorization: Bearer`` per request), and, for a fixed rate, ``delay()`` hands
each request a slot on a per-thread schedule (wrk has no fixed-rate mode of its own; the
latency wrk reports starts when the request is written, after its slot). ``done()``
writes the figures as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

THREADS = 2
CONNECTIONS = 64

_SCRIPT = r"""
local method, path, body = %(method)s, %(path)s, %(body)s
local tokens_file, rate, threads, result = %(tokens)s, %(rate)s, %(threads)d, %(result)s
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
local tokens = {}
local i = 0
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } wr_timespec;
int clock_gettime(int clock_id, wr_timespec *tp);
]]
local ts = ffi.new("wr_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = 0
local next_at = nil
function init(args)
  if tokens_file ~= "" then
    for line in io.lines(tokens_file) do
      if line ~= "" then tokens[#tokens + 1] = line end
    end
  end
  i = (tid or 0) * 7919
  if rate > 0 then interval = threads * 1000 / rate end
end
function request()
  i = i + 1
  local headers = {}
  if body then headers["Content-Type"] = "application/json" end
  if #tokens > 0 then
    headers["Authorization"] = "Bearer " .. tokens[(i %% #tokens) + 1]
  end
  return wrk.format(method, path, headers, body)
end
if rate > 0 then
  function delay()
    local t = now_ms()
    if next_at == nil or next_at < t - 100 then next_at = t end
    next_at = next_at + interval
    local d = next_at - t
    if d <= 0 then return 0 end
    return math.floor(d)
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  local f = io.open(result, "w")
  f:write(string.format(
    '{"requests": %%d, "duration_us": %%d, "status_errors": %%d, "timeouts": %%d, ' ..
    '"socket_errors": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d}',
    summary.requests, summary.duration, e.status, e.timeout, e.connect + e.read + e.write,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
  f:close()
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    failed: int
    p50_ms: float
    p99_ms: float

    @property
    def ok(self) -> int:
        return self.requests - self.failed

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    """Path of ``wrk``; installs Debian's package first when it is missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        found = shutil.which("wrk")
    if not found:
        raise RuntimeError("no wrk: install Debian's package (apt-get install wrk)")
    return found


def _lua(text: str | None) -> str:
    return "nil" if text is None else json.dumps(text)  # a JSON string is a Lua string here


def run_wrk(
    url: str,
    *,
    method: str = "GET",
    body: str | None = None,
    tokens: Path | None = None,
    seconds: float = 10.0,
    rate: float = 0.0,
    connections: int = CONNECTIONS,
) -> WrkResult:
    """``wrk -t2 -c<connections>`` against ``url`` for ``seconds``; at ``rate`` requests/s
    in all when given, else as fast as the server answers."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    base = f"{parts.scheme}://{parts.netloc}"
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        result = Path(tmp) / "result.json"
        script = Path(tmp) / "load.lua"
        script.write_text(
            _SCRIPT
            % {
                "method": _lua(method),
                "path": _lua(path),
                "body": _lua(body),
                "tokens": _lua(str(tokens) if tokens else ""),
                "rate": repr(float(rate)),
                "threads": THREADS,
                "result": _lua(str(result)),
            }
        )
        subprocess.run(
            [
                ensure_wrk(),
                f"-t{THREADS}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "5s",
                "-s",
                str(script),
                base,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        figures = json.loads(result.read_text())
    failed = figures["status_errors"] + figures["timeouts"] + figures["socket_errors"]
    return WrkResult(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        failed=min(failed, figures["requests"]),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
    )
