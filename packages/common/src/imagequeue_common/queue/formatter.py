"""A msgspec JSON formatter for taskiq messages: strict, fast, never pickle.

taskiq's default formatter validates every message through pydantic; msgspec decodes the
same JSON several times faster, and refuses a payload that is not JSON-serialisable with
a clear :class:`InvalidJobError` before anything reaches Redis.
"""

from __future__ import annotations

from typing import Any

import msgspec
from taskiq.abc.formatter import TaskiqFormatter
from taskiq.labels import LabelType
from taskiq.message import BrokerMessage, TaskiqMessage

from imagequeue_common.errors import InvalidJobError


class _Wire(msgspec.Struct, frozen=True):
    task_id: str
    task_name: str
    labels: dict[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    labels_types: dict[str, int] | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Wire)


def _encode(wire: _Wire) -> bytes:
    try:
        return _encoder.encode(wire)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidJobError(f"task arguments are not JSON-serialisable: {exc}") from exc


_AS_SENT = frozenset({int(LabelType.STR), int(LabelType.ANY)})
"""Label types whose value is the string as sent: taskiq's parse is the identity for them."""


def needed_types(types: dict[str, int] | None) -> dict[str, int] | None:
    """The label types a reader needs to parse the labels back; None when every label is a
    string already (most: ``priority``, ``user_id``, ``retries``…). Each job keeps its
    message in Redis, so the ``"name": 3`` entries taskiq adds for strings cost memory and
    tell nothing."""
    needed = {name: kind for name, kind in (types or {}).items() if kind not in _AS_SENT}
    return needed or None


def encode_call(task_id: str, task_name: str, labels: dict[str, str], args: list[Any]) -> bytes:
    """The message taskiq's kicker would send for ``task_name(*args)`` with string ``labels``,
    built without a kicker or a pydantic model (the API's hot path)."""
    return _encode(_Wire(task_id, task_name, labels, args, {}))


class MsgspecFormatter(TaskiqFormatter):
    """Encodes :class:`TaskiqMessage` as compact JSON with msgspec."""

    def dumps(self, message: TaskiqMessage) -> BrokerMessage:
        """Encode; raises :class:`InvalidJobError` for values JSON cannot hold."""
        data = _encode(
            _Wire(
                task_id=message.task_id,
                task_name=message.task_name,
                labels=message.labels,
                args=message.args,
                kwargs=message.kwargs,
                labels_types=needed_types(message.labels_types),
            )
        )
        return BrokerMessage(
            task_id=message.task_id,
            task_name=message.task_name,
            message=data,
            labels=message.labels,
        )

    def loads(self, message: bytes) -> TaskiqMessage:
        """Decode a message written by :meth:`dumps`."""
        wire = _decoder.decode(message)
        # The wire struct is already validated by msgspec: skip pydantic's second pass.
        return TaskiqMessage.model_construct(
            task_id=wire.task_id,
            task_name=wire.task_name,
            labels=dict(wire.labels),
            labels_types=wire.labels_types,
            args=list(wire.args),
            kwargs=dict(wire.kwargs),
        )
