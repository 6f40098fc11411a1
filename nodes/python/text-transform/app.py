"""text-transform in Python: the same two nodes as nodes/text-transform (Rust).

Built the default way, against warden's WIT and its `base` world (no capability):

    componentize-py -d ../../../wit -w base componentize app -o text-transform.wasm

`warden build` does this for a directory holding `app.py`.
"""
from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

Text = types.Value_Text


def pin(name, description, direction, data_type, default=None, one_of=()):
    return types.Pin(name, description, direction, data_type, default, [Text(v) for v in one_of], None)


IN, OUT = types.Direction.INPUT, types.Direction.OUTPUT


def title(text: str) -> str:
    return " ".join(word[:1].upper() + word[1:] for word in text.split(" "))


class Node(exports.Node):
    def describe(self) -> List[types.NodeInfo]:
        return [
            types.NodeInfo(
                "text-transform",
                "Text transform",
                "Changes the case of text, reverses it, or counts its words",
                "text",
                [
                    pin("text", "The text to transform", IN, types.DataType.TEXT),
                    pin("mode", "What to do with the text", IN, types.DataType.TEXT,
                        Text("upper"), ["upper", "lower", "reverse", "title"]),
                    pin("result", "The transformed text", OUT, types.DataType.TEXT),
                    pin("words", "How many words the text has", OUT, types.DataType.INTEGER),
                ],
            ),
            types.NodeInfo(
                "concat",
                "Concatenate",
                "Joins two texts with a separator",
                "text",
                [
                    pin("left", "", IN, types.DataType.TEXT),
                    pin("right", "", IN, types.DataType.TEXT),
                    pin("separator", "", IN, types.DataType.TEXT, Text(" ")),
                    pin("result", "", OUT, types.DataType.TEXT),
                ],
            ),
        ]

    def run(self, name: str, context: types.RunContext, inputs: List[types.Field]) -> List[types.Field]:
        given = {field.name: field.value.value for field in inputs if isinstance(field.value, Text)}
        if name == "concat":
            joined = given.get("left", "") + given.get("separator", " ") + given.get("right", "")
            return [types.Field("result", Text(joined))]
        text, mode = given.get("text"), given.get("mode", "upper")
        if text is None:
            raise Err("the input `text` is missing")
        transforms = {
            "upper": str.upper,
            "lower": str.lower,
            "reverse": lambda t: t[::-1],
            "title": title,
        }
        if mode not in transforms:
            raise Err(f"unknown mode `{mode}`")
        print(f"text-transform: {mode}")
        return [
            types.Field("words", types.Value_Integer(len(text.split()))),
            types.Field("result", Text(transforms[mode](text))),
        ]
