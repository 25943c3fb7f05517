import test from 'ava';
import protobuf from 'protobufjs';
import { lengthDelimitedField, stringField } from '../../src/xds/wire.js';

/** The reference encoding: protobufjs's writer, which readygate's responses must match byte for byte. */
function reference(field: number, payload: Uint8Array | string): Buffer {
  const writer = protobuf.Writer.create().uint32((field << 3) | 2);
  if (typeof payload === 'string') writer.string(payload);
  else writer.bytes(payload);
  return Buffer.from(writer.finish());
}

// Lengths and field numbers on both sides of the one/two/three-byte varint boundaries.
const lengths = [0, 1, 127, 128, 300, 16383, 16384, 70000];
const fields = [1, 2, 5, 15, 16, 2047, 2048];

test('lengthDelimitedField matches protobufjs across varint boundaries', (t) => {
  for (const field of fields) {
    for (const length of lengths) {
      const payload = Buffer.alloc(length, length % 251);
      t.deepEqual(
        lengthDelimitedField(field, payload),
        reference(field, payload),
        `field ${field}, ${length} B`,
      );
    }
  }
});

test('stringField matches protobufjs, counting UTF-8 bytes rather than characters', (t) => {
  for (const value of ['', 'a', 'ü', 'default/web:http', '名前'.repeat(50), 'x'.repeat(200)]) {
    for (const field of fields)
      t.deepEqual(stringField(field, value), reference(field, value), `${field}: ${value}`);
  }
});
