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

/** Tag + length + payload of a length-delimited field (message, bytes or string). */
export function lengthDelimitedField(fieldNumber: number, payload: Uint8Array): Buffer {
  const tag = (fieldNumber << 3) | WIRE_LENGTH_DELIMITED;
  const head = varintSize(tag) + varintSize(payload.length);
  const field = Buffer.allocUnsafe(head + payload.length);
  writeVarint(field, writeVarint(field, 0, tag), payload.length);
  field.set(payload, head);
  return field;
}

export function stringField(fieldNumber: number, value: string): Buffer {
  const tag = (fieldNumber << 3) | WIRE_LENGTH_DELIMITED;
  const length = Buffer.byteLength(value, 'utf8');
  const head = varintSize(tag) + varintSize(length);
  const field = Buffer.allocUnsafe(head + length);
  writeVarint(field, writeVarint(field, 0, tag), length);
  field.write(value, head, 'utf8');
  return field;
}
