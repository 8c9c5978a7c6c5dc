"""The data store: the only code that reads or writes waitroom's Redis keys.

``RoomStore`` runs the room scripts (shared/lua) and owns every other key through
``RoomIndex`` (the room sets) and ``ReplicaSet`` (worker liveness); client errors reach
callers as waitroom errors, mapped in one place (``calls``).
"""

from shared.line import RATE_TAU_MS, observed_rate
from shared.store.index import ReplicaSet, RoomIndex
from shared.store.rooms import RoomStore, check_room_id, new_position_id, require_room
from shared.store.views import (
    AdmitResult,
    InviteRecord,
    PaceInputs,
    PersonView,
    RoomFigures,
    State,
    digest_of,
)

__all__ = [
    "RATE_TAU_MS",
    "AdmitResult",
    "InviteRecord",
    "PaceInputs",
    "PersonView",
    "ReplicaSet",
    "RoomFigures",
    "RoomIndex",
    "RoomStore",
    "State",
    "check_room_id",
    "digest_of",
    "new_position_id",
    "observed_rate",
    "require_room",
]
