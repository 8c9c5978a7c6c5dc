"""Locust scenarios for a waitroom deployment (see loadtest/README.md).

``WaitingPerson`` goes through the whole line: enqueue, heartbeat every
``heartbeat_interval`` seconds, and follow its place: most poll the status in between
(``poll``), some listen to the event stream instead (``listen``), some refresh the page
once (a join again with their queue token as bearer: the same place must come back,
``refresh``), some leave after a while (``leave``) and some go silent (``silent``: no more
requests; the heartbeat worker must expire them). Once admitted they claim the admission
(``GET redirect_url``, a 303 that is not followed), visit the protected site for a few
seconds and report the visit complete. Then the same simulated browser joins again.
When the test stops, people still waiting leave and visits under way complete, so the
next run does not start with the room's capacity held by ghosts.

``ProtectedSite`` is the site behind the room: it fetches the JWKS and verifies the access
tokens of the people who just arrived (``POST /v1/session/verify``).

Environment:
  WAITROOM_LOAD_ROOM            room id (demo)
  WAITROOM_ADMIN_KEY            if set, the room is created/updated on test start
  WAITROOM_LOAD_TARGET_URL      target_url when the room has to be created
                                (http://127.0.0.1:8001/, the demo site of `waitroom up`)
  WAITROOM_LOAD_MAX_PER_IP      the room's max_positions_per_ip (0: no limit)
  WAITROOM_LOAD_MAX_ACTIVE      the room's max_active, when set
  WAITROOM_LOAD_RELEASE_RATE    the room's release_rate (people/s), when set
  WAITROOM_LOAD_VISIT_SECONDS   how long a visit lasts before complete (3)
  WAITROOM_LOAD_HEARTBEAT       the room's heartbeat_interval,heartbeat_timeout in
                                seconds, when set (e.g. 5,15: silent people expire soon)
  WAITROOM_LOAD_PERSONAS        shares of poll,listen,refresh,leave,silent (45,35,10,5,5)
  WAITROOM_LOAD_FORWARDED_FOR   send a per-user X-Forwarded-For address (true); the
                                gateway believes it only when the load generator's
                                address is in WAITROOM_TRUSTED_PROXIES

Request names are templates ("/v1/rooms/[room]/status"), so the figures group per
endpoint. Extra rows: "WAIT enqueue -> admitted" (time spent in line, in ms), "STATE
expired" (a person expired although it kept heartbeating: a failure) and "STATE refresh"
(a refresh that did not get the same place back: a failure).
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

import gevent
import requests
from locust import HttpUser, between, events, task
from locust.clients import ResponseContextManager
from locust.env import Environment
from locust.runners import WorkerRunner

log = logging.getLogger("waitroom.load")


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    return raw in ("1", "true", "yes", "on")


ROOM = os.environ.get("WAITROOM_LOAD_ROOM", "demo")
ADMIN_KEY = os.environ.get("WAITROOM_ADMIN_KEY", "")
TARGET_URL = os.environ.get("WAITROOM_LOAD_TARGET_URL", "http://127.0.0.1:8001/")
MAX_PER_IP = int(os.environ.get("WAITROOM_LOAD_MAX_PER_IP", "0"))
MAX_ACTIVE = os.environ.get("WAITROOM_LOAD_MAX_ACTIVE", "")
RELEASE_RATE = os.environ.get("WAITROOM_LOAD_RELEASE_RATE", "")
VISIT_SECONDS = float(os.environ.get("WAITROOM_LOAD_VISIT_SECONDS", "3"))
FORWARDED_FOR = _env_bool("WAITROOM_LOAD_FORWARDED_FOR", True)
HEARTBEAT = os.environ.get("WAITROOM_LOAD_HEARTBEAT", "")
PERSONAS = ("poll", "listen", "refresh", "leave", "silent")
SHARES = [float(x) for x in os.environ.get("WAITROOM_LOAD_PERSONAS", "45,35,10,5,5").split(",")]

ENQUEUE = "/v1/rooms/[room]/enqueue"
STATUS = "/v1/rooms/[room]/status"
HEARTBEAT_CALL = "/v1/rooms/[room]/heartbeat"
EVENTS = "/v1/rooms/[room]/events"
LEAVE = "/v1/rooms/[room]/leave"
GO = "/rooms/[room]/go"
VERIFY = "/v1/session/verify"
COMPLETE = "/v1/session/complete"
JWKS = "/.well-known/jwks.json"

# Access tokens of people who just reached the protected site, with how many more page
# views the site verifies them for. Shared by the users of one locust process (greenlets,
# so no lock is needed); in distributed mode each worker has its own.
ARRIVALS: deque[tuple[str, int]] = deque(maxlen=10_000)
VERIFIES_PER_VISIT = 3


def _retry_after(response: ResponseContextManager) -> float:
    try:
        return max(1.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _error_code(response: ResponseContextManager) -> str:
    try:
        body = response.json()
        return str(body["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "-"


def _fail(response: ResponseContextManager, what: str) -> None:
    response.failure(f"{what}: HTTP {response.status_code} {_error_code(response)}")


def _fake_client_address() -> str:
    """An address from 198.18.0.0/15, the range set aside for benchmarks (RFC 2544)."""
    return f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


class WaitingPerson(HttpUser):
    """One person (a browser or app) in the line, over and over."""

    weight = 10
    # the pause between two steps: status polls are 1-2 s apart, well inside the
    # status limit of 60 per minute per token
    wait_time = between(1.0, 2.0)

    def on_start(self) -> None:
        if FORWARDED_FOR:
            self.client.headers["X-Forwarded-For"] = _fake_client_address()
        self._forget()

    def on_stop(self) -> None:
        """Give back what this person holds, so the next run starts with a free room."""
        self._stop_listening()
        if self.persona == "silent":
            return  # gone quiet: the heartbeat worker expires them
        if self.state == "visiting":
            self.complete()
        elif self.token is not None and self.state in ("waiting", "admitted"):
            self.leave()
        self._forget()

    def _forget(self) -> None:
        self._stop_listening()
        self.token: str | None = None
        self.position_id = ""
        self.state = "new"
        self.persona = random.choices(PERSONAS, weights=SHARES)[0]
        self.heartbeat_interval = 10.0
        self.next_heartbeat = 0.0
        self.joined_at = 0.0
        self.act_at = 0.0
        """When a refresher refreshes or a leaver leaves."""
        self.visit_ends = 0.0
        self.access_token: str | None = None
        self.not_before = 0.0
        self.heard: dict[str, Any] | None = None
        """The last admitted/expired/state event a listener heard."""
        self.listening: Any = None

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @task
    def step(self) -> None:
        now = time.monotonic()
        if now < self.not_before:
            return
        if self.token is None:
            self.enqueue()
        elif self.persona == "silent" and self.state == "waiting":
            return
        elif self.state == "visiting":
            if now >= self.visit_ends:
                self.complete()
                self._forget()
        elif self.state == "waiting" and self.act_at and now >= self.act_at:
            self.act_at = 0.0
            if self.persona == "leave":
                self.leave()
                self._forget()
            else:
                self.refresh()
        elif now >= self.next_heartbeat:
            self.follow(self.heartbeat())
        elif self.persona == "listen":
            heard, self.heard = self.heard, None
            if heard is not None:
                self.follow(heard)
        else:
            self.follow(self.status())

    def _place_answer(
        self, response: ResponseContextManager, what: str, ok: tuple[int, ...]
    ) -> dict[str, Any] | None:
        """The JSON answer of enqueue/status/heartbeat, or None (marked as a failure)."""
        if response.status_code in ok:
            try:
                answer: dict[str, Any] = response.json()
            except ValueError:
                response.failure(f"{what}: answer is not JSON")
                return None
            response.success()
            return answer
        _fail(response, what)
        if response.status_code in (429, 503):
            self.not_before = time.monotonic() + _retry_after(response)
        elif response.status_code in (401, 403, 404):
            # token expired or refused, room gone: start again as a new person
            self._forget()
        return None

    def enqueue(self) -> None:
        # a fresh key per join, as a client that may retry the join would send
        with self.client.post(
            f"/v1/rooms/{ROOM}/enqueue",
            json={"size": 1},
            headers={"Idempotency-Key": secrets.token_urlsafe(16)},
            name=ENQUEUE,
            catch_response=True,
        ) as response:
            answer = self._place_answer(response, "enqueue", (200, 201))
        if answer is None:
            return
        self.token = answer["token"]
        self.position_id = str(answer.get("position_id", ""))
        self.heartbeat_interval = float(answer.get("heartbeat_interval") or 10)
        self.next_heartbeat = time.monotonic() + self.heartbeat_interval
        self.joined_at = time.monotonic()
        if self.persona in ("refresh", "leave"):
            self.act_at = self.joined_at + random.uniform(2.0, 10.0)
        self.follow(answer)
        if self.persona == "listen" and self.state == "waiting":
            self._start_listening()

    def refresh(self) -> None:
        """The page reloaded: a join with the queue token as bearer gets the same place."""
        with self.client.post(
            f"/v1/rooms/{ROOM}/enqueue",
            json={"size": 1},
            headers=self._auth(),
            name=ENQUEUE,
            catch_response=True,
        ) as response:
            answer = self._place_answer(response, "refresh", (200,))
        if answer is None:
            return
        if answer.get("position_id") != self.position_id:
            self._record("STATE", "refresh", 0.0, RuntimeError("refresh got another place"))
        self.token = answer.get("token") or self.token
        self.follow(answer)

    def _start_listening(self) -> None:
        """Follow the event stream in a background greenlet (what the page does)."""
        stop = threading.Event()
        url = f"/v1/rooms/{ROOM}/events?token={self.token}"

        def listen() -> None:
            try:
                with self.client.get(
                    url, stream=True, name=EVENTS, catch_response=True, timeout=60
                ) as response:
                    if response.status_code != 200:
                        _fail(response, "events")
                        return
                    response.success()
                    event = ""
                    for raw in response.iter_lines(decode_unicode=True):
                        if stop.is_set():
                            return
                        line = raw or ""
                        if line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: ") and event in (
                            "admitted",
                            "expired",
                            "state",
                        ):
                            try:
                                data = json.loads(line[6:])
                            except ValueError:
                                continue
                            if event == "admitted":
                                data.setdefault("state", "admitted")
                            self.heard = data
            except Exception as exc:  # the stream ended or was cut: polling takes over
                log.debug("event stream ended: %r", exc)

        self.listening = (stop, gevent.spawn(listen))

    def _stop_listening(self) -> None:
        listening = getattr(self, "listening", None)
        if listening is not None:
            stop, greenlet = listening
            stop.set()
            greenlet.kill(block=False)
            self.listening = None

    def status(self) -> dict[str, Any] | None:
        with self.client.get(
            f"/v1/rooms/{ROOM}/status", headers=self._auth(), name=STATUS, catch_response=True
        ) as response:
            return self._place_answer(response, "status", (200,))

    def heartbeat(self) -> dict[str, Any] | None:
        with self.client.post(
            f"/v1/rooms/{ROOM}/heartbeat",
            headers=self._auth(),
            name=HEARTBEAT_CALL,
            catch_response=True,
        ) as response:
            answer = self._place_answer(response, "heartbeat", (200,))
        if answer is not None:
            self.token = answer.get("token") or self.token
            self.heartbeat_interval = float(
                answer.get("heartbeat_interval") or self.heartbeat_interval
            )
            self.next_heartbeat = time.monotonic() + self.heartbeat_interval
        return answer

    def leave(self) -> None:
        with self.client.post(
            f"/v1/rooms/{ROOM}/leave", headers=self._auth(), name=LEAVE, catch_response=True
        ) as response:
            if response.status_code != 200:
                _fail(response, "leave")
            else:
                response.success()

    def follow(self, answer: dict[str, Any] | None) -> None:
        """Act on where we stand."""
        if answer is None:
            return
        state = answer.get("state")
        self.state = str(state)
        if state == "admitted":
            self._record("WAIT", "enqueue -> admitted", (time.monotonic() - self.joined_at) * 1000)
            self.claim(answer)
        elif state == "active":
            # claimed already (by an earlier try whose answer was lost): go on visiting
            self.access_token = answer.get("access_token") or self.access_token
            self._start_visit()
        elif state == "expired":
            self._record(
                "STATE",
                "expired",
                0.0,
                RuntimeError(f"expired ({answer.get('reason') or 'no reason given'})"),
            )
            self._forget()
        elif state in ("left", "completed"):
            self._forget()

    def claim(self, answer: dict[str, Any]) -> None:
        """GET the redirect_url like a browser would, without following the 303."""
        redirect_url = answer.get("redirect_url")
        if not redirect_url:
            self._record("STATE", "admitted without redirect_url", 0.0, RuntimeError("no URL"))
            self._forget()
            return
        parts = urlsplit(redirect_url)
        # the path and query only: the request goes to the host under test, even when the
        # gateway builds its URLs from a WAITROOM_PUBLIC_URL this machine cannot reach
        with self.client.get(
            f"{parts.path}?{parts.query}",
            name=GO,
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code != 303:
                _fail(response, "claim")
                self._forget()
                return
            location = response.headers.get("Location", "")
            tokens = parse_qs(urlsplit(location).query).get("waitroom_token")
            if not tokens:
                response.failure(f"claim: no waitroom_token in Location {location[:80]!r}")
                self._forget()
                return
            response.success()
        self.access_token = tokens[0]
        ARRIVALS.append((self.access_token, VERIFIES_PER_VISIT))
        self._start_visit()

    def _start_visit(self) -> None:
        self.state = "visiting"
        self.visit_ends = time.monotonic() + VISIT_SECONDS * random.uniform(0.5, 1.5)

    def complete(self) -> None:
        if self.access_token is None:
            return
        with self.client.post(
            "/v1/session/complete",
            headers={"Authorization": f"Bearer {self.access_token}"},
            name=COMPLETE,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                _fail(response, "complete")
            else:
                response.success()

    def _record(
        self,
        request_type: str,
        name: str,
        milliseconds: float,
        exception: Exception | None = None,
    ) -> None:
        """A row of its own in the statistics (time in line, unexpected states)."""
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=milliseconds,
            response_length=0,
            exception=exception,
            context={},
        )


class ProtectedSite(HttpUser):
    """The site behind the room: knows the public keys, checks who arrives."""

    weight = 1
    wait_time = between(0.5, 1.5)
    jwks_max_age = 60.0

    def on_start(self) -> None:
        self.jwks_at = 0.0

    @task
    def check_arrivals(self) -> None:
        if time.monotonic() - self.jwks_at > self.jwks_max_age:
            self.fetch_jwks()
        if not ARRIVALS:
            return
        token, views_left = ARRIVALS.popleft()
        with self.client.post(
            "/v1/session/verify",
            json={"token": token, "room": ROOM},
            name=VERIFY,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                _fail(response, "verify")
                return
            try:
                answer = response.json()
            except ValueError:
                response.failure("verify: answer is not JSON")
                return
            if "active" not in answer:
                response.failure("verify: no 'active' in the answer")
                return
            response.success()
        # a finished visit answers active: false, which is right; stop checking it then
        if answer["active"] and views_left > 1:
            ARRIVALS.append((token, views_left - 1))

    def fetch_jwks(self) -> None:
        with self.client.get(JWKS, name=JWKS, catch_response=True) as response:
            try:
                keys = response.json().get("keys") if response.status_code == 200 else None
            except ValueError:
                keys = None
            if not keys:
                _fail(response, "jwks")
                return
            response.success()
        self.jwks_at = time.monotonic()


def _admin(environment: Environment) -> tuple[str, dict[str, str]] | None:
    if not ADMIN_KEY or not environment.host:
        return None
    url = f"{environment.host.rstrip('/')}/v1/admin/rooms/{ROOM}"
    return url, {"Authorization": f"Bearer {ADMIN_KEY}"}


@events.test_start.add_listener
def configure_room(environment: Environment, **_kwargs: Any) -> None:
    """Create or update the room through the admin API (once, on the master)."""
    if isinstance(environment.runner, WorkerRunner):
        return
    admin = _admin(environment)
    if admin is None:
        log.info("no WAITROOM_ADMIN_KEY (or no host): using room %r as it is", ROOM)
        return
    url, headers = admin
    body: dict[str, Any] = {"max_positions_per_ip": MAX_PER_IP}
    if MAX_ACTIVE:
        body["max_active"] = int(MAX_ACTIVE)
    if RELEASE_RATE:
        body["release_rate"] = float(RELEASE_RATE)
    if HEARTBEAT:
        interval, timeout = (int(x) for x in HEARTBEAT.split(","))
        body["heartbeat_interval"] = interval
        body["heartbeat_timeout"] = timeout
    try:
        current = requests.get(url, headers=headers, timeout=10)
        if current.status_code == 404:
            body["target_url"] = TARGET_URL
        answer = requests.put(url, json=body, headers=headers, timeout=10)
    except requests.RequestException as exc:
        log.error("could not set up room %r: %s", ROOM, exc)
        environment.process_exit_code = 1
        return
    if answer.status_code not in (200, 201):
        log.error("PUT %s answered %s: %s", url, answer.status_code, answer.text[:300].strip())
        environment.process_exit_code = 1
        return
    verb = "created" if answer.status_code == 201 else "updated"
    log.info("room %r %s: %s", ROOM, verb, answer.json().get("config"))


@events.test_stop.add_listener
def report_room(environment: Environment, **_kwargs: Any) -> None:
    """Log the room's live figures at the end (with an admin key)."""
    if isinstance(environment.runner, WorkerRunner):
        return
    admin = _admin(environment)
    if admin is None:
        return
    url, headers = admin
    try:
        answer = requests.get(url, headers=headers, timeout=10)
        figures = answer.json().get("figures") if answer.status_code == 200 else answer.text
    except (requests.RequestException, ValueError) as exc:
        figures = repr(exc)
    log.info("room %r at the end: %s", ROOM, figures)
