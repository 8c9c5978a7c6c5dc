"""python -m heartbeat_worker: expires the silent, so their places and units come back.

Expires people waiting whose last heartbeat is older than heartbeat_timeout, admissions
not claimed within claim_window, and sessions past their deadline. Runs any number of
replicas; one holds each room's heartbeat lease at a time. Also relays room outboxes to
JetStream unless WAITROOM_RELAY=false.

Environment: WAITROOM_REDIS_URL, WAITROOM_NATS_URL, WAITROOM_HEARTBEAT_TICK_MS (500),
WAITROOM_LEASE_MS (3000), WAITROOM_ENDED_RETENTION (3600 s), WAITROOM_RELAY (true),
WAITROOM_INSTANCE, WAITROOM_LOG_JSON, WAITROOM_LOG_LEVEL. SIGTERM stops it gracefully.
"""

import sys

from heartbeat_worker.worker import run
from shared.worker_process import worker_main

if __name__ == "__main__":
    worker_main("heartbeat", run, __doc__ or "", sys.argv[1:])
