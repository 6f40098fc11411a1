// text-transform in JavaScript: the same two nodes as nodes/text-transform (Rust), with the same
// names, pins, outputs and error messages.
//
// Built with componentize-js (StarlingMonkey) against warden's WIT and a world `warden-node` that
// includes `base` only (no capability), the world `warden build` writes for a Python node:
//
//     componentize-js app.js --wit build/wit --world-name warden-node -o build/text-transform.wasm
//
// (`npm install && npm run build` does the same against the repository's wit/ and its `base`
// world, whose imports are the same.)
//
// The export `warden:node/node@0.1.0` is the `node` object below. WIT types as componentize-js
// maps them: records are objects with camelCase keys, enums are strings, variants are
// `{ tag, val }`, `option<T>` is the value or `undefined`, and a function returning
// `result<T, string>` returns T or throws the error string. An `s64` comes in as a BigInt and may
// go out as a Number (converted with `BigInt(n)`); a Number also suits componentize-qjs, whose
// `s64` is a Number, so this file builds with either.

const text = (val) => ({ tag: 'text', val });

function pin(name, description, direction, dataType, { fallback, oneOf = [] } = {}) {
  return {
    name,
    description,
    direction,
    dataType,
    default: fallback === undefined ? undefined : text(fallback),
    validValues: oneOf.map(text),
    range: undefined,
  };
}

// An input as text, with the Rust SDK's messages (the host has filled in defaults and checked
// types already, so these only fire for a host that did not).
function textInput(inputs, name) {
  const field = inputs.find((f) => f.name === name);
  if (!field) throw `input \`${name}\` is missing`;
  if (field.value.tag !== 'text') throw `input \`${name}\` is not text`;
  return field.value.val;
}

// Rust's `char::is_whitespace` (Unicode White_Space), which `split_whitespace` splits on.
const WHITESPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

const TRANSFORMS = {
  upper: (t) => t.toUpperCase(),
  lower: (t) => t.toLowerCase(),
  // By Unicode scalar value, as Rust's `chars().rev()`.
  reverse: (t) => Array.from(t).reverse().join(''),
  title: (t) =>
    t
      .split(' ')
      .map((word) => {
        const [first = '', ...rest] = Array.from(word);
        return first.toUpperCase() + rest.join('');
      })
      .join(' '),
};

const NODES = {
  'text-transform': {
    info: {
      name: 'text-transform',
      friendlyName: 'Text transform',
      description: 'Changes the case of text, reverses it, or counts its words',
      category: 'text',
      pins: [
        pin('text', 'The text to transform', 'input', 'text'),
        pin('mode', 'What to do with the text', 'input', 'text', {
          fallback: 'upper',
          oneOf: ['upper', 'lower', 'reverse', 'title'],
        }),
        pin('result', 'The transformed text', 'output', 'text'),
        pin('words', 'How many words the text has', 'output', 'integer'),
      ],
    },
    run(inputs) {
      const input = textInput(inputs, 'text');
      const mode = textInput(inputs, 'mode');
      const transform = Object.hasOwn(TRANSFORMS, mode) ? TRANSFORMS[mode] : undefined;
      if (!transform) throw `unknown mode \`${mode}\``;
      const words = input.split(WHITESPACE).filter((word) => word !== '').length;
      return [
        { name: 'words', value: { tag: 'integer', val: words } },
        { name: 'result', value: text(transform(input)) },
      ];
    },
  },
  concat: {
    info: {
      name: 'concat',
      friendlyName: 'Concatenate',
      description: 'Joins two texts with a separator',
      category: 'text',
      pins: [
        pin('left', '', 'input', 'text'),
        pin('right', '', 'input', 'text'),
        pin('separator', '', 'input', 'text', { fallback: ' ' }),
        pin('result', '', 'output', 'text'),
      ],
    },
    run(inputs) {
      const left = textInput(inputs, 'left');
      const right = textInput(inputs, 'right');
      const separator = textInput(inputs, 'separator');
      return [{ name: 'result', value: text(`${left}${separator}${right}`) }];
    },
  },
};

export const node = {
  describe() {
    return Object.values(NODES).map((n) => n.info);
  },

  run(name, context, inputs) {
    if (!Object.hasOwn(NODES, name)) throw `this component provides no node \`${name}\``;
    return NODES[name].run(inputs);
  },
};
