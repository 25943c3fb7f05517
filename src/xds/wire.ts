/**
 * Hand-framing of protobuf fields, so responses can be assembled from bytes encoded once per resource
 * version instead of re-encoding every resource for every stream. Each field is one allocation: these
 * run once per stream per push, where small temporary buffers add up to garbage-collector time.
 */

const WIRE_LENGTH_DELIMITED = 2;

function varintSize(value: number): number {
  let size = 1;
  for (let v = value >>> 7; v > 0; v >>>= 7) size += 1;
  return size;
}

function writeVarint(target: Buffer, offset: number, value: number): number {
  let v = value >>> 0;
  while (v >= 0x80) {
    target[offset++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  target[offset++] = v;
  return offset;
}

/**
 * A length-delimited field of `length` payload bytes with its tag and length written; the payload, the
 * last `length` bytes, is not.
 */
function fieldWithHead(fieldNumber: number, length: number): Buffer {
  const tag = (fieldNumber << 3) | WIRE_LENGTH_DELIMITED;
  const field = Buffer.allocUnsafe(varintSize(tag) + varintSize(length) + length);
  writeVarint(field, writeVarint(field, 0, tag), length);
  return field;
}

/** Tag + length + payload of a length-delimited field (message, bytes or string). */
export function lengthDelimitedField(fieldNumber: number, payload: Uint8Array): Buffer {
  const field = fieldWithHead(fieldNumber, payload.length);
  field.set(payload, field.length - payload.length);
  return field;
}

export function stringField(fieldNumber: number, value: string): Buffer {
  const length = Buffer.byteLength(value, 'utf8');
  const field = fieldWithHead(fieldNumber, length);
  field.write(value, field.length - length, 'utf8');
  return field;
}
