"""notes in Python: a node with capabilities, storage and a variable.

Appends a note, signed with the run's `author` variable, to notes kept in board-scoped storage
(shared by the nodes of one board, kept across runs), and returns how many there are and the
latest ones. Built the default way, against warden's WIT and a world of `base` plus the
capabilities it uses:

    warden build nodes/python/notes --cap storage-read,storage-write,variables-read

which runs `componentize-py -d build/wit -w warden-node componentize -p . app -o build/notes.wasm`.
The world is the capability request: without `--cap storage-write`, `storage_write` below would
not exist, and the component would not import it. Run it with those capabilities granted:

    warden run build/notes.wasm --grant storage-read,storage-write,variables-read \\
        --data state --var author=Ada --input note="buy milk"
"""
import json
from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import storage_read, storage_write, types, variables_read

Text = types.Value_Text
IN, OUT = types.Direction.INPUT, types.Direction.OUTPUT
BOARD = types.Scope.BOARD

COUNT_KEY = "notes/count"


def entry_key(number: int) -> str:
    return f"notes/entries/{number:08d}"


def pin(name, description, direction, data_type, default=None, range=None):
    return types.Pin(name, description, direction, data_type, default, [], range)


# How the Rust SDK's `describe_host_error` words a host error: `denied: ...`.
HOST_ERROR_KINDS = {
    types.HostError_Denied: "denied",
    types.HostError_Invalid: "invalid",
    types.HostError_TooLarge: "too large",
    types.HostError_QuotaExceeded: "quota exceeded",
    types.HostError_Unavailable: "unavailable",
}


def host(call, *args):
    """Calls a host function, turning a host error into a message for the person running the node."""
    try:
        return call(*args)
    except Err as error:
        kind = HOST_ERROR_KINDS.get(type(error.value))
        if kind is None:
            raise
        raise Err(f"{kind}: {error.value.value}")


def author() -> str:
    value = host(variables_read.get, "author")
    if value is None:
        return "anonymous"
    if not isinstance(value, Text):
        raise Err("the variable `author` must be text")
    return value.value


class Node(exports.Node):
    def describe(self) -> List[types.NodeInfo]:
        return [
            types.NodeInfo(
                "notes",
                "Notes",
                "Adds a note, signed with the `author` variable, to the board's notes and returns the latest",
                "state",
                [
                    pin("note", "The note to add", IN, types.DataType.TEXT),
                    pin("recent", "How many of the latest notes to return", IN, types.DataType.INTEGER,
                        types.Value_Integer(5), types.Range(1.0, 100.0)),
                    pin("count", "How many notes the board has", OUT, types.DataType.INTEGER),
                    pin("latest", "The latest notes, oldest first, as a JSON list", OUT, types.DataType.JSON),
                ],
            ),
        ]

    def run(self, name: str, context: types.RunContext, inputs: List[types.Field]) -> List[types.Field]:
        if name != "notes":
            raise Err(f"this component provides no node `{name}`")
        given = {field.name: field.value for field in inputs}
        note, recent = given.get("note"), given.get("recent")
        if not isinstance(note, Text):
            raise Err("input `note` is not text")
        if not isinstance(recent, types.Value_Integer):
            raise Err("input `recent` is not an integer")
        if not note.value.strip():
            raise Err("the note is empty")

        stored = host(storage_read.get, BOARD, COUNT_KEY)
        try:
            count = int(stored.decode()) if stored is not None else 0
        except ValueError:
            raise Err(f"stored count `{stored.decode(errors='replace')}` is not a number")
        count += 1
        signed = f"{author()}: {note.value}"
        # The entry first, then the count: an interrupted run leaves an unused entry, not a gap.
        host(storage_write.set, BOARD, entry_key(count), signed.encode())
        host(storage_write.set, BOARD, COUNT_KEY, str(count).encode())
        print(f"notes: note {count} on board {context.board_id}")

        latest = []
        for number in range(max(1, count - recent.value + 1), count + 1):
            entry = host(storage_read.get, BOARD, entry_key(number))
            if entry is not None:
                latest.append(entry.decode(errors="replace"))
        return [
            types.Field("count", types.Value_Integer(count)),
            types.Field("latest", types.Value_Json(json.dumps(latest))),
        ]
