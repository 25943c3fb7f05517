/**
 * Hostile HTTP/2 clients against the real ADS server (our engine, gRPC layer and ADS in a process of
 * their own), each attack bounded in frames and time, over loopback only. For every attack: the server
 * stays up, its RSS grows at most 64 MB, a legitimate ADS client watching an endpoint edited every
 * 150 ms gets every edit within 250 ms of it, and the attacker is cut off (GOAWAY or close) within 1 s
 * of crossing its limit, which the server counts under the limit's name. The server runs with the
 * default limits (src/http2/limits.ts) unless an attack says otherwise.
 *
 * Serial: attacks side by side would measure each other.
 */
import test, { type ExecutionContext } from 'ava';

import {
  encodeFrame,
  encodeSettings,
  encodeWindowUpdate,
  ErrorCode,
  Flags,
  FrameType,
  Setting,
} from '../../src/http2/frames.js';
import { Http2Limit } from '../../src/http2/limits.js';
import { SOTW_METHOD_PATH } from '../../src/xds/server.js';
import { pingFrame, RawH2Client, requestFrame, rstStreamFrame } from '../helpers/raw-h2.js';
import { allCutOff, type ArenaFigures, type AttackerOutcome, flood, inArena } from './arena.js';

const MAX_RSS_GROWTH_BYTES = 64 * 1024 * 1024;
const MAX_UPDATE_DELAY_MS = 250;
const MAX_CUT_OFF_MS = 1000;

interface Expected {
  /** The limit the server reports, and for how many connections; none for protocol errors. */
  readonly limit?: string;
  readonly connections?: number;
  /** The GOAWAY code a reading attacker gets (it may see only the close if it does not read). */
  readonly goaway?: number;
}

function assertContained(
  t: ExecutionContext,
  figures: ArenaFigures,
  outcomes: readonly AttackerOutcome[],
  expected: Expected,
): void {
  const worstDelay = Math.max(...figures.delays);
  const cutOffs = outcomes.map((o) => (o.client.cutOff?.at ?? Infinity) - o.crossedAt);
  const worstCutOff = Math.max(...cutOffs);
  t.log(
    `RSS +${(figures.rssGrowth / 1024 / 1024).toFixed(1)} MB, worst update delay ${worstDelay.toFixed(0)} ms ` +
      `over ${figures.delays.length} edits, cut off ${worstCutOff.toFixed(0)} ms after crossing, ` +
      `limits ${JSON.stringify(figures.limits)}, ${figures.cutOffLogLines} log lines`,
  );
  t.true(figures.serverAlive, 'the server is up and answering');
  t.true(figures.rssGrowth <= MAX_RSS_GROWTH_BYTES, `RSS grew ${figures.rssGrowth} bytes`);
  t.true(figures.delays.length >= 5, `${figures.delays.length} edits during the attack`);
  t.true(
    worstDelay <= MAX_UPDATE_DELAY_MS,
    `update delays ${figures.delays.map((d) => d.toFixed(0)).join(' ')}`,
  );
  t.true(outcomes.length > 0);
  t.true(
    cutOffs.every((ms) => Number.isFinite(ms) && ms <= MAX_CUT_OFF_MS),
    `cut off after ${worstCutOff} ms`,
  );
  if (expected.goaway !== undefined) {
    for (const outcome of outcomes) t.is(outcome.client.goaway?.code, expected.goaway);
  }
  t.deepEqual(
    figures.limits,
    expected.limit === undefined ? {} : { [expected.limit]: expected.connections ?? outcomes.length },
  );
  // One line per connection at most, and at least one about this attack.
  t.true(
    figures.cutOffLogLines >= 1 && figures.cutOffLogLines <= outcomes.length,
    `${figures.cutOffLogLines} log lines`,
  );
}

/** One attacker connection past the preface and SETTINGS, its setup frames written. */
async function attacker(port: number, read = true, setup: Buffer[] = []): Promise<RawH2Client> {
  const client = new RawH2Client(port, { read, keepFrames: false });
  await client.connected;
  client.start();
  if (setup.length > 0) client.send(...setup);
  return client;
}

const EMPTY = Buffer.alloc(0);

test.serial('PING flood from a client that reads the ACKs', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    const client = await attacker(port);
    const crossedAt = await flood(client, pingFrame, { crossing: 10 });
    await allCutOff([{ crossedAt, client }]);
    return [{ crossedAt, client }];
  });
  assertContained(t, figures, outcomes, {
    limit: Http2Limit.PING_FLOOD,
    goaway: ErrorCode.ENHANCE_YOUR_CALM,
  });
});

test.serial('PING flood from a client that never reads', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    const client = await attacker(port, false);
    const crossedAt = await flood(client, pingFrame, { crossing: 10 });
    await allCutOff([{ crossedAt, client }]);
    return [{ crossedAt, client }];
  });
  assertContained(t, figures, outcomes, { limit: Http2Limit.PING_FLOOD });
});

test.serial(
  'PING flood that never reads, with the PING rate limit off: the control-frame cap stops it',
  async (t) => {
    const limits = { pings: { burst: 1e9, perSecond: 1e9 } };
    const { figures, outcomes } = await inArena(limits, async (port) => {
      const client = await attacker(port, false);
      const crossedAt = await flood(client, pingFrame, { crossing: 1000, batch: 500 });
      await allCutOff([{ crossedAt, client }]);
      return [{ crossedAt, client }];
    });
    assertContained(t, figures, outcomes, { limit: Http2Limit.OUTBOUND_CONTROL_FRAMES });
  },
);

test.serial('SETTINGS flood', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    const client = await attacker(port);
    const settings = encodeSettings([[Setting.INITIAL_WINDOW_SIZE, 65_535]]);
    // The client's first SETTINGS (start) is the first of the burst of 10.
    const crossedAt = await flood(client, () => settings, { crossing: 9 });
    await allCutOff([{ crossedAt, client }]);
    return [{ crossedAt, client }];
  });
  assertContained(t, figures, outcomes, {
    limit: Http2Limit.SETTINGS_FLOOD,
    goaway: ErrorCode.ENHANCE_YOUR_CALM,
  });
});

test.serial('empty HEADERS frames', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    const client = await attacker(port);
    const crossedAt = await flood(
      client,
      (i) => encodeFrame(FrameType.HEADERS, Flags.END_HEADERS, 2 * i + 1, EMPTY),
      {
        crossing: 1,
      },
    );
    await allCutOff([{ crossedAt, client }]);
    return [{ crossedAt, client }];
  });
  assertContained(t, figures, outcomes, {
    limit: Http2Limit.EMPTY_FRAMES,
    goaway: ErrorCode.ENHANCE_YOUR_CALM,
  });
});

test.serial('a header block that never ends: empty CONTINUATION frames', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    const client = await attacker(port, true, [encodeFrame(FrameType.HEADERS, 0, 1, Buffer.from([0x83]))]);
    const crossedAt = await flood(client, () => encodeFrame(FrameType.CONTINUATION, 0, 1, EMPTY), {
      crossing: 1,
    });
    await allCutOff([{ crossedAt, client }]);
    return [{ crossedAt, client }];
  });
  assertContained(t, figures, outcomes, {
    limit: Http2Limit.EMPTY_FRAMES,
    goaway: ErrorCode.ENHANCE_YOUR_CALM,
  });
});

test.serial('a header block that never ends: one-byte CONTINUATION frames', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    const client = await attacker(port, true, [encodeFrame(FrameType.HEADERS, 0, 1, Buffer.from([0x83]))]);
    const crossedAt = await flood(
      client,
      () => encodeFrame(FrameType.CONTINUATION, 0, 1, Buffer.from([0x86])),
      {
        crossing: 8,
      },
    );
    await allCutOff([{ crossedAt, client }]);
    return [{ crossedAt, client }];
  });
  assertContained(t, figures, outcomes, {
    limit: Http2Limit.CONTINUATION_FLOOD,
    goaway: ErrorCode.ENHANCE_YOUR_CALM,
  });
});

test.serial('empty DATA frames on an open ADS stream', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    const client = await attacker(port, true, [requestFrame(1, SOTW_METHOD_PATH)]);
    const crossedAt = await flood(client, () => encodeFrame(FrameType.DATA, 0, 1, EMPTY), { crossing: 1 });
    await allCutOff([{ crossedAt, client }]);
    return [{ crossedAt, client }];
  });
  assertContained(t, figures, outcomes, {
    limit: Http2Limit.EMPTY_FRAMES,
    goaway: ErrorCode.ENHANCE_YOUR_CALM,
  });
});

test.serial('rapid reset (CVE-2023-44487): ADS streams opened and cancelled at once', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    const client = await attacker(port);
    const crossedAt = await flood(
      client,
      (i) =>
        Buffer.concat([
          requestFrame(2 * i + 1, SOTW_METHOD_PATH),
          rstStreamFrame(2 * i + 1, ErrorCode.CANCEL),
        ]),
      { crossing: 1000, batch: 50, maxFrames: 20_000 },
    );
    await allCutOff([{ crossedAt, client }]);
    return [{ crossedAt, client }];
  });
  assertContained(t, figures, outcomes, {
    limit: Http2Limit.STREAM_RESETS,
    goaway: ErrorCode.ENHANCE_YOUR_CALM,
  });
});

test.serial('stream churn: ADS streams opened and half-closed at once, no reset', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    const client = await attacker(port);
    const crossedAt = await flood(
      client,
      (i) => requestFrame(2 * i + 1, SOTW_METHOD_PATH, Flags.END_HEADERS | Flags.END_STREAM),
      { crossing: 1000, batch: 50, maxFrames: 20_000 },
    );
    await allCutOff([{ crossedAt, client }]);
    return [{ crossedAt, client }];
  });
  assertContained(t, figures, outcomes, {
    limit: Http2Limit.NEW_STREAMS,
    goaway: ErrorCode.ENHANCE_YOUR_CALM,
  });
});

test.serial('garbage prefaces: HTTP/1.1 and random bytes, 200 connections', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    const outcomes: AttackerOutcome[] = [];
    let seed = 0x1234_5678;
    const random = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) >>> 0;
      return seed >>> 24;
    };
    for (let i = 0; i < 200; i++) {
      const client = new RawH2Client(port, { keepFrames: false });
      await client.connected;
      const garbage =
        i % 2 === 0
          ? Buffer.from('GET / HTTP/1.1\r\nHost: readygate\r\n\r\n')
          : Buffer.from(Array.from({ length: 64 }, random));
      client.send(garbage);
      outcomes.push({ crossedAt: performance.now(), client });
      if (i % 20 === 19) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await allCutOff(outcomes);
    return outcomes;
  });
  assertContained(t, figures, outcomes, { goaway: ErrorCode.PROTOCOL_ERROR });
});

test.serial('an oversized frame: a 16 MB frame header on the 1 MB port, the frame held open', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    const header = Buffer.alloc(9);
    header.writeUIntBE(16 * 1024 * 1024 - 1, 0, 3);
    header[3] = FrameType.DATA;
    header.writeUInt32BE(1, 5);
    const client = await attacker(port, true, [
      requestFrame(1, SOTW_METHOD_PATH),
      header,
      Buffer.alloc(1000),
    ]);
    const crossedAt = performance.now();
    await allCutOff([{ crossedAt, client }]);
    return [{ crossedAt, client }];
  });
  assertContained(t, figures, outcomes, { goaway: ErrorCode.FRAME_SIZE_ERROR });
});

test.serial(
  'frames never completed: a frame header, a DATA frame and a header block cut short, then silence',
  async (t) => {
    // A second instead of the 10 s default, so that the attack fits its 10 s; the bound is the same code.
    const frameTimeoutMs = 1000;
    const { figures, outcomes } = await inArena({ frameTimeoutMs }, async (port) => {
      const request = requestFrame(1, SOTW_METHOD_PATH);
      const cutShort = [
        Buffer.concat([request, encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(100)).subarray(0, 5)]),
        Buffer.concat([
          request,
          encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(64 * 1024)).subarray(0, 9 + 1000),
        ]),
        encodeFrame(FrameType.HEADERS, 0, 1, request.subarray(9, 12)),
      ];
      const outcomes: AttackerOutcome[] = [];
      for (const bytes of cutShort) {
        const client = await attacker(port, true, [bytes]);
        outcomes.push({ client, crossedAt: performance.now() + frameTimeoutMs });
      }
      await allCutOff(outcomes, frameTimeoutMs + 3000);
      return outcomes;
    });
    assertContained(t, figures, outcomes, {
      limit: Http2Limit.FRAME_TIMEOUT,
      goaway: ErrorCode.ENHANCE_YOUR_CALM,
    });
  },
);

test.serial(
  'HPACK reference bomb: a 4 KB table entry referenced 60,000 times per header block',
  async (t) => {
    const { figures, outcomes } = await inArena({}, async (port) => {
      // :method POST, :scheme http, :path /, then "x-bomb: 4000 × a" inserted into the dynamic table.
      const value = Buffer.alloc(4000, 0x61);
      const insert = Buffer.concat([
        Buffer.from([0x83, 0x86, 0x84, 0x40, 6]),
        Buffer.from('x-bomb'),
        Buffer.from([0x7f, 0xa1, 0x1e]), // the length 4000: 127 + 33 + 30 × 128
        value,
      ]);
      const references = Buffer.alloc(60_000, 0xbe); // index 62: the newest dynamic entry
      const prefix = Buffer.from([0x83, 0x86, 0x84]);
      const client = await attacker(port, true, []);
      // The first block already decodes to 240 MB, far past 4 × the 16 KB header list limit: it crosses.
      const crossedAt = await flood(
        client,
        (i) =>
          encodeFrame(
            FrameType.HEADERS,
            Flags.END_HEADERS | Flags.END_STREAM,
            2 * i + 1,
            Buffer.concat([i === 0 ? insert : prefix, references]),
          ),
        { crossing: 0, batch: 4, maxFrames: 5000 },
      );
      await allCutOff([{ crossedAt, client }]);
      return [{ crossedAt, client }];
    });
    assertContained(t, figures, outcomes, {
      limit: Http2Limit.HEADER_LIST_BYTES,
      goaway: ErrorCode.ENHANCE_YOUR_CALM,
    });
  },
);

test.serial('HPACK table-size bomb: a dynamic table size update far past the size advertised', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    // A size update to 2^20 (0x3f, then 2^20 - 31 in 7-bit groups) where 4096 was advertised.
    const update = Buffer.from([0x3f, 0xe1, 0xff, 0x3f, 0x83]);
    const client = await attacker(port, true, []);
    client.send(encodeSettings([[Setting.HEADER_TABLE_SIZE, 0xffffffff]]));
    client.send(encodeFrame(FrameType.HEADERS, Flags.END_HEADERS, 1, update));
    const crossedAt = performance.now();
    await allCutOff([{ crossedAt, client }]);
    return [{ crossedAt, client }];
  });
  assertContained(t, figures, outcomes, { goaway: ErrorCode.COMPRESSION_ERROR });
});

test.serial('WINDOW_UPDATE overflow: the connection window past 2^31-1', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    const client = await attacker(port, true, [encodeWindowUpdate(0, 2 ** 31 - 1)]);
    const crossedAt = performance.now();
    await allCutOff([{ crossedAt, client }]);
    return [{ crossedAt, client }];
  });
  assertContained(t, figures, outcomes, { goaway: ErrorCode.FLOW_CONTROL_ERROR });
});

test.serial('WINDOW_UPDATE flood of one-byte increments', async (t) => {
  const { figures, outcomes } = await inArena({}, async (port) => {
    const client = await attacker(port);
    const crossedAt = await flood(client, () => encodeWindowUpdate(0, 1), { crossing: 5 });
    await allCutOff([{ crossedAt, client }]);
    return [{ crossedAt, client }];
  });
  assertContained(t, figures, outcomes, {
    limit: Http2Limit.WINDOW_UPDATE_FLOOD,
    goaway: ErrorCode.ENHANCE_YOUR_CALM,
  });
});

test.serial('2000 idle connections that never send a preface', async (t) => {
  const { figures, outcomes } = await inArena(
    {},
    async (port) => {
      const clients: RawH2Client[] = [];
      const connectedAt: number[] = [];
      for (let i = 0; i < 2000; i++) {
        const client = new RawH2Client(port, { keepFrames: false });
        clients.push(client);
        void client.connected.then(() => {
          connectedAt[i] = performance.now();
        });
        // Paced over about 2 s, as a pod would open them, not in one burst.
        if (i % 40 === 39) await new Promise((resolve) => setTimeout(resolve, 40));
      }
      await Promise.all(clients.map((c) => c.connected));
      const outcomes = clients.map((client, i) => ({ client, crossedAt: connectedAt[i]! + 5000 }));
      await allCutOff(outcomes, 8000);
      return outcomes;
    },
    500,
  );
  assertContained(t, figures, outcomes, {
    limit: Http2Limit.PREFACE_TIMEOUT,
    goaway: ErrorCode.ENHANCE_YOUR_CALM,
  });
});

test.serial('connections past --xds-max-connections are closed as they arrive', async (t) => {
  const { figures, outcomes } = await inArena({ maxConnections: 50 }, async (port) => {
    const outcomes: AttackerOutcome[] = [];
    const held: RawH2Client[] = [];
    // The legitimate client holds one place; 49 more fill the server.
    for (let i = 0; i < 49; i++) held.push(await attacker(port));
    for (let i = 0; i < 100; i++) {
      const client = new RawH2Client(port, { keepFrames: false });
      await client.connected;
      outcomes.push({ client, crossedAt: performance.now() });
    }
    await allCutOff(outcomes);
    for (const client of held) client.destroy();
    return outcomes;
  });
  assertContained(t, figures, outcomes, { limit: Http2Limit.MAX_CONNECTIONS });
});
