/**
 * Hand-framing of protobuf fields, so responses can be assembled from bytes encoded once per resource
 * version instead of re-encoding every resource for every stream.
 */

const WIRE_LENGTH_DELIMITED = 2;

function varint(value: number): Buffer {
  const bytes: number[] = [];
  let v = value >>> 0;
  while (v >= 0x80) {
    bytes.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

/** Tag + length + payload of a length-delimited field (message, bytes or string). */
export function lengthDelimitedField(fieldNumber: number, payload: Uint8Array): Buffer {
  return Buffer.concat([varint((fieldNumber << 3) | WIRE_LENGTH_DELIMITED), varint(payload.length), payload]);
}

export function stringField(fieldNumber: number, value: string): Buffer {
  return lengthDelimitedField(fieldNumber, Buffer.from(value, 'utf8'));
}
