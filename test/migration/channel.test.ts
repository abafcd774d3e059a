/**
 * Incoming connections read straight into guest RAM (src/migration/channel.ts): packets cut at
 * every possible place still land right, a main stream is told from a multifd channel by its
 * first bytes, and short or foreign connections fail with what is wrong.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GuestRam, TARGET_PAGE_SIZE } from '../../src/machine/ram.js';
import { acceptChannel, type ChannelHandlers } from '../../src/migration/channel.js';
import { MultifdReceiver, MultifdSender } from '../../src/migration/multifd.js';
import type { QemuFileReader } from '../../src/migration/stream/qemu-file.js';
import { listenSocket } from '../../src/migration/transport/socket.js';

const PAGE = TARGET_PAGE_SIZE;
const dir = mkdtempSync(join(tmpdir(), 'qmigrate-channel-'));
/** Servers and sockets to close when the file is done, passed or not (open ones keep it alive). */
const open: { close(): void }[] = [];
after(() => {
  for (const o of open) o.close();
  rmSync(dir, { recursive: true, force: true });
});

/** What a MultifdSender writes on `n` channels, as one Buffer per channel. */
function encode(src: GuestRam, n: number, pages: number[]): Buffer[] {
  const parts: Buffer[][] = Array.from({ length: n }, () => []);
  const outs = parts.map(
    (p) =>
      new Writable({
        write(chunk: Buffer, _e, cb) {
          p.push(Buffer.from(chunk));
          cb();
        },
      }),
  );
  const sender = new MultifdSender(outs, true);
  const block = src.blocks[0]!;
  for (const p of pages) sender.addPage(block, p);
  sender.sync();
  return parts.map((p) => Buffer.concat(p));
}

/** Writes `data` in pieces of the given sizes (cycled), yielding to the event loop between them. */
async function dribble(s: Socket, data: Buffer, sizes: number[]): Promise<void> {
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    s.write(data.subarray(at, at + n));
    at += n;
    // Let the receiver read each piece on its own (a write callback comes after the syscall).
    await new Promise((r) => s.write(Buffer.alloc(0), () => setImmediate(r)));
  }
}

interface Seen {
  main?: QemuFileReader;
  multifd: number[];
  errors: Error[];
}

async function server(receiver: MultifdReceiver | undefined, count: number) {
  const seen: Seen = { multifd: [], errors: [] };
  const path = join(dir, `s${Math.random().toString(36).slice(2)}.sock`);
  const on: ChannelHandlers = {
    main: (_s, r) => {
      seen.main = r;
    },
    multifd: (id) => seen.multifd.push(id),
    error: (s, e) => {
      seen.errors.push(e);
      s.destroy();
    },
  };
  const l = await listenSocket({ type: 'unix', path }, (s) => {
    const taken = acceptChannel(s, receiver, count, on);
    open.push({ close: () => taken.destroy() });
  });
  open.push(l);
  const connectOne = () =>
    new Promise<Socket>((res, rej) => {
      const s = connect(path, () => res(s));
      open.push({ close: () => s.destroy() });
      s.once('error', rej);
    });
  return { seen, open: connectOne, close: () => l.close() };
}

const until = async (ok: () => boolean) => {
  for (let i = 0; i < 400 && !ok(); i++) await sleep(5);
  assert.ok(ok(), 'timed out');
};

for (const sizes of [[1], [7, 1344, 4096, 3], [1 << 20]]) {
  test(`multifd packets delivered in pieces of ${sizes.join('/')} bytes land in RAM`, async () => {
    const pages = 600;
    const src = new GuestRam();
    const host = randomBytes(pages * PAGE);
    for (let p = 0; p < pages; p += 5) host.fill(0, p * PAGE, (p + 1) * PAGE); // zero pages too
    src.add('pc.ram', host);
    const dst = new GuestRam();
    dst.add('pc.ram', Buffer.alloc(pages * PAGE, 0xee));
    // Every page, but not in order, so that runs of adjacent pages break up.
    const order = [...Array(pages).keys()].sort((a, b) => ((a * 7919) % pages) - ((b * 7919) % pages));
    const data = encode(src, 2, order);
    const receiver = new MultifdReceiver(dst, 2);
    const srv = await server(receiver, 2);
    const socks = await Promise.all([srv.open(), srv.open()]);
    const small = sizes[0] === 1 ? data.map((d) => d.subarray(0, 64 + 1344 + PAGE + 5)) : data;
    await Promise.all(socks.map((s, i) => dribble(s, small[i]!, sizes)));
    if (sizes[0] === 1) {
      // One byte at a time is slow: the rest of the channel in one go.
      await Promise.all(socks.map((s, i) => dribble(s, data[i]!.subarray(small[i]!.length), [1 << 20])));
    }
    await receiver.syncMain();
    assert.deepEqual(srv.seen.multifd.sort(), [0, 1]);
    assert.deepEqual(srv.seen.errors, []);
    assert.ok(dst.blocks[0]!.host.equals(host), 'destination RAM equals the source');
    for (const s of socks) s.destroy();
    srv.close();
  });
}

test('the stream magic makes a connection the main channel, its first bytes kept', async () => {
  const srv = await server(new MultifdReceiver(new GuestRam(), 2), 2);
  const s = await srv.open();
  const bytes = Buffer.concat([Buffer.from('5145564d00000003', 'hex'), randomBytes(300)]);
  await dribble(s, bytes, [3, 50]);
  s.end();
  await until(() => srv.seen.main !== undefined);
  const r = srv.seen.main!;
  await r.need(bytes.length);
  assert.ok(r.bytes(bytes.length).equals(bytes));
  assert.equal(await r.atEnd(), true);
  srv.close();
});

test('without multifd the first connection is the main stream from its first byte', async () => {
  const srv = await server(undefined, 0);
  const s = await srv.open();
  s.end(Buffer.from('hi'));
  await until(() => srv.seen.main !== undefined);
  await srv.seen.main!.need(2);
  assert.equal(srv.seen.main!.bytes(2).toString(), 'hi');
  srv.close();
});

test('a connection that is neither a stream nor a multifd channel fails with what it is', async () => {
  const srv = await server(new MultifdReceiver(new GuestRam(), 2), 2);
  (await srv.open()).end(Buffer.alloc(64, 0x41));
  (await srv.open()).end(Buffer.alloc(10));
  const init = Buffer.alloc(64);
  init.writeUInt32BE(0x11223344, 0);
  init.writeUInt32BE(1, 4);
  init[24] = 5;
  (await srv.open()).end(init);
  await until(() => srv.seen.errors.length >= 3);
  await sleep(50); // and no second report when they close
  const texts = srv.seen.errors.map((e) => e.message).sort();
  // QEMU 10.0's texts (multifd_recv_initial_packet, qio_channel_read_all).
  assert.deepEqual(texts, [
    'Unexpected end-of-file before all data were read',
    'multifd: received channel id 5 is greater than number of channels 2',
    'multifd: received packet magic 41414141 expected 11223344',
  ]);
  srv.close();
});

test('a multifd channel cut inside a packet fails the receiver', async () => {
  const src = new GuestRam();
  src.add('pc.ram', randomBytes(64 * PAGE));
  const dst = new GuestRam();
  dst.add('pc.ram', Buffer.alloc(64 * PAGE));
  const [data] = encode(src, 1, [...Array(64).keys()]);
  const receiver = new MultifdReceiver(dst, 1);
  const srv = await server(receiver, 1);
  const s = await srv.open();
  s.end(data!.subarray(0, 64 + 1344 + 10 * PAGE));
  await until(() => srv.seen.errors.length === 1);
  assert.match(
    srv.seen.errors[0]!.message,
    /^stream ended early: page data on multifd channel 0 was cut short$/,
  );
  await assert.rejects(receiver.syncMain(), /cut short/);
  srv.close();
});

test('a long main stream comes through whole while its read buffers are reused', async () => {
  const srv = await server(undefined, 0);
  const s = await srv.open();
  const data = randomBytes(24 << 20);
  s.end(data);
  await until(() => srv.seen.main !== undefined);
  const r = srv.seen.main!;
  const got: Buffer[] = [];
  let left = data.length;
  for (let i = 0; left > 0; i++) {
    // Uneven takes, and pauses, so that reads run ahead of the reader and buffers retire.
    const n = Math.min(left, 1 + ((i * 7919) % (3 << 20)));
    await r.need(n);
    got.push(r.bytes(n));
    left -= n;
    if (i % 5 === 0) await sleep(1);
  }
  assert.ok(Buffer.concat(got).equals(data));
  srv.close();
});

/** A packet header as QEMU 10.0 lays it out, with the given fields. */
function packet(f: {
  magic?: number;
  version?: number;
  flags?: number;
  alloc?: number;
  normal?: number;
  zero?: number;
  block?: string;
  offsets?: number[];
}): Buffer {
  const h = Buffer.alloc(1344);
  h.writeUInt32BE(f.magic ?? 0x11223344, 0);
  h.writeUInt32BE(f.version ?? 1, 4);
  h.writeUInt32BE(f.flags ?? 0, 8);
  h.writeUInt32BE(f.alloc ?? 128, 12);
  h.writeUInt32BE(f.normal ?? 0, 16);
  h.writeUInt32BE(f.zero ?? 0, 32);
  h.write(f.block ?? 'pc.ram', 64, 'latin1');
  for (const [k, o] of (f.offsets ?? []).entries()) h.writeBigUInt64BE(BigInt(o), 320 + 8 * k);
  return h;
}

// QEMU 10.0's texts: multifd.c multifd_recv_unfill_packet_header, multifd-nocomp.c.
const PACKETS: { name: string; packet: Buffer; want: string }[] = [
  {
    name: 'bad magic',
    packet: packet({ magic: 0 }),
    want: 'multifd: received packet magic 0, expected 11223344',
  },
  {
    name: 'bad version',
    packet: packet({ version: 3 }),
    want: 'multifd: received packet version 3, expected 1',
  },
  {
    name: 'more pages than a packet holds (a SYNC too)',
    packet: packet({ flags: 1, alloc: 129 }),
    want: 'multifd: received packet with 129 pages, expected 128',
  },
  {
    name: 'more normal pages than allocated',
    packet: packet({ alloc: 4, normal: 5 }),
    want: 'multifd: received packet with 5 non-zero pages, which exceeds maximum expected pages 4',
  },
  {
    name: 'more zero pages than left',
    packet: packet({ alloc: 4, normal: 3, zero: 2 }),
    want: 'multifd: received packet with 2 zero pages, expected maximum 1',
  },
  {
    name: 'an unknown block',
    packet: packet({ normal: 1, block: 'nope', offsets: [0] }),
    want: 'multifd: unknown ram block nope',
  },
  {
    name: 'an offset past the block',
    packet: packet({ zero: 1, offsets: [64 * PAGE] }),
    want: 'multifd: offset too long 262144 (max 40000)',
  },
  {
    name: 'compressed pages',
    packet: packet({ flags: 2, normal: 1, offsets: [0] }),
    want: 'multifd 0: flags received 2 flags expected 0',
  },
  {
    name: 'a device state packet',
    packet: packet({ flags: 64 }),
    want: 'multifd: received a device state packet; this guest has no devices',
  },
];

for (const c of PACKETS) {
  test(`a multifd packet with ${c.name} fails the channel with QEMU's words`, async () => {
    const dst = new GuestRam();
    dst.add('pc.ram', Buffer.alloc(64 * PAGE));
    const receiver = new MultifdReceiver(dst, 1);
    const srv = await server(receiver, 1);
    const init = Buffer.alloc(64);
    init.writeUInt32BE(0x11223344, 0);
    init.writeUInt32BE(1, 4);
    (await srv.open()).write(Buffer.concat([init, c.packet]));
    await until(() => srv.seen.errors.length === 1);
    assert.equal(srv.seen.errors[0]!.message, c.want);
    srv.close();
  });
}

test('compression flags on a packet without pages are accepted, as QEMU accepts them', async () => {
  const dst = new GuestRam();
  dst.add('pc.ram', Buffer.alloc(64 * PAGE));
  const receiver = new MultifdReceiver(dst, 1);
  const srv = await server(receiver, 1);
  const init = Buffer.alloc(64);
  init.writeUInt32BE(0x11223344, 0);
  init.writeUInt32BE(1, 4);
  (await srv.open()).write(Buffer.concat([init, packet({ flags: 1 | 2 })]));
  await receiver.syncMain();
  assert.deepEqual(srv.seen.errors, []);
  srv.close();
});
