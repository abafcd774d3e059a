// The destination's postcopy commands on crafted streams: QEMU 10.0's checks and texts for
// ADVISE, RAM_DISCARD, LISTEN, RUN and PACKAGED (a clear error where QEMU has none), discarded
// pages becoming missing, pages already present not overwritten after LISTEN, page requests in
// QEMU's format, the RECV_BITMAP answer's layout, and a failure after RUN pausing, not failing.
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { test } from 'node:test';
import { GuestRam } from '../../src/machine/ram.js';
import { loadVmState, type PostcopyHooks } from '../../src/migration/incoming.js';
import { encodeRecvBitmap, type PostcopyIncoming } from '../../src/migration/postcopy-ram.js';
import { RAMBLOCK_RECV_BITMAP_ENDING } from '../../src/migration/stream/postcopy.js';
import { QemuFileReader, StreamError } from '../../src/migration/stream/qemu-file.js';

const PAGE = 4096;
const u8 = (v: number) => Buffer.from([v]);
const be16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
};
const be32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};
const be64 = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
};
const cstr = (t: string) => Buffer.concat([u8(t.length), Buffer.from(t, 'latin1')]);
const header = Buffer.concat([be32(0x5145564d), be32(3), u8(7), be32(4), Buffer.from('none')]);
const cmd = (c: number, data = Buffer.alloc(0)) => Buffer.concat([u8(8), be16(c), be16(data.length), data]);
const ADVISE = cmd(3, Buffer.concat([be64(PAGE), be64(PAGE)]));
const LISTEN = cmd(4);
const RUN = cmd(5);
const OPEN_RP = cmd(1);
const discard = (block: string, ranges: [number, number][], version = 0, nil = 0) =>
  cmd(
    6,
    Buffer.concat([u8(version), cstr(block), u8(nil), ...ranges.flatMap(([s, l]) => [be64(s), be64(l)])]),
  );
const packaged = (inner: Buffer, len = inner.length) => Buffer.concat([cmd(7, be32(len)), inner]);
const SIZE = 2 << 20;
/** ram START with the block list, then `records`, EOS and the footer. */
const ramStart = (records: Buffer[] = []) =>
  Buffer.concat([
    u8(1),
    be32(1),
    cstr('ram'),
    be32(0),
    be32(4),
    be64(SIZE + 0x04),
    cstr('m0'),
    be64(SIZE),
    ...records,
    be64(0x10),
    u8(0x7e),
    be32(1),
  ]);
/** ram PART with page records. */
const ramPart = (records: Buffer[]) =>
  Buffer.concat([u8(2), be32(1), ...records, be64(0x10), u8(0x7e), be32(1)]);
const page = (n: number, fill: number, named = true) =>
  Buffer.concat([
    be64(n * PAGE + 0x08 + (named ? 0 : 0x20)),
    named ? cstr('m0') : Buffer.alloc(0),
    Buffer.alloc(PAGE, fill),
  ]);
const EOF = u8(0);

interface Run {
  ram: GuestRam;
  error?: StreamError;
  ran: boolean;
  paused: unknown;
  pc?: PostcopyIncoming;
  rp: Buffer[];
}

async function load(parts: Buffer[], opts: { postcopyRam?: boolean; status?: string } = {}): Promise<Run> {
  const ram = new GuestRam();
  ram.add('m0', Buffer.alloc(SIZE), false);
  const run: Run = { ram, ran: false, paused: undefined, rp: [] };
  const rp = new Writable({
    write(c, _e, cb) {
      run.rp.push(Buffer.from(c));
      cb();
    },
  });
  const hooks: PostcopyHooks = {
    postcopyRam: opts.postcopyRam ?? true,
    blocktime: true,
    status: () => (opts.status ?? 'postcopy-active') as 'postcopy-active',
    listen() {},
    run() {
      run.ran = true;
    },
    async pause(e) {
      run.paused = e;
      throw e;
    },
    resumed() {},
    warn() {},
    advised(pc) {
      run.pc = pc;
    },
  };
  try {
    await loadVmState(
      new QemuFileReader(Readable.from([Buffer.concat([header, ...parts])])),
      ram,
      rp,
      undefined,
      hooks,
    );
  } catch (e) {
    assert.ok(e instanceof StreamError, `not a StreamError: ${e}`);
    run.error = e;
  }
  return run;
}

const fails = async (parts: Buffer[], re: RegExp, opts?: Parameters<typeof load>[1]) => {
  const r = await load(parts, opts);
  assert.ok(r.error, 'the stream loaded');
  assert.match(r.error.message, re);
  return r;
};

test('POSTCOPY_ADVISE: QEMU 10.0 checks and texts', async () => {
  await fails([ADVISE], /^RAM postcopy is disabled but have 16 byte advise$/, { postcopyRam: false });
  await fails([cmd(3)], /^RAM postcopy is enabled but have 0 byte advise$/);
  await fails([cmd(3, be64(PAGE))], /^CMD_POSTCOPY_ADVISE invalid length \(8\)$/);
  await fails([ADVISE, ADVISE], /^CMD_POSTCOPY_ADVISE in wrong postcopy state \(1\)$/);
  await fails(
    [cmd(3, Buffer.concat([be64(0x10000), be64(PAGE)]))],
    /^Postcopy needs matching RAM page sizes \(s=10000 d=1000\)$/,
  );
  await fails(
    [cmd(3, Buffer.concat([be64(PAGE), be64(8192)]))],
    /^Postcopy needs matching target page sizes \(s=8192 d=4096\)$/,
  );
});

test('LISTEN and RUN only in their postcopy state', async () => {
  await fails([LISTEN], /^CMD_POSTCOPY_LISTEN in wrong postcopy state \(0\)$/);
  await fails([ADVISE, RUN], /^CMD_POSTCOPY_RUN in wrong postcopy state \(1\)$/);
  await fails([ADVISE, LISTEN, LISTEN], /^CMD_POSTCOPY_LISTEN in wrong postcopy state \(3\)$/);
});

test('POSTCOPY_RAM_DISCARD: checks, and discarded pages become missing', async () => {
  await fails([discard('m0', [[0, PAGE]])], /^CMD_POSTCOPY_RAM_DISCARD in wrong postcopy state \(0\)$/);
  await fails([ADVISE, discard('m0', [[0, PAGE]], 1)], /^CMD_POSTCOPY_RAM_DISCARD invalid version \(1\)$/);
  await fails([ADVISE, discard('m0', [[0, PAGE]], 0, 7)], /^CMD_POSTCOPY_RAM_DISCARD missing nil \(7\)$/);
  await fails([ADVISE, cmd(6, Buffer.alloc(8))], /^CMD_POSTCOPY_RAM_DISCARD invalid length \(8\)$/);
  await fails([ADVISE, discard('nope', [[0, PAGE]])], /no RAM block 'nope'/);
  await fails(
    [ADVISE, discard('m0', [[SIZE - PAGE, 2 * PAGE]])],
    /range 0x1ff000\+0x2000 is not whole pages of block 'm0'/,
  );
  await fails([ADVISE, discard('m0', [[100, PAGE]])], /not whole pages/);
  // Pages 0 and 1 arrive in precopy, then page 1 is discarded: missing again, and zero.
  const r = await fails(
    [ADVISE, ramStart([page(0, 0xaa), page(1, 0xbb, false)]), discard('m0', [[PAGE, PAGE]]), EOF],
    /before POSTCOPY_RUN/,
  );
  const b = r.ram.blocks[0]!;
  assert.equal(b.isPresent(0), true);
  assert.equal(b.isPresent(1), false);
  assert.equal(b.host[PAGE], 0);
});

test('PACKAGED: a bound on its length, a cut package, an error inside never starts the guest', async () => {
  await fails(
    [ADVISE, packaged(Buffer.alloc(0), 0xffffffff)],
    /^CMD_PACKAGED: 4294967295 bytes packaged, more than the 16777216 taken$/,
  );
  await fails(
    [ADVISE, packaged(Buffer.alloc(10), 100)],
    /^CMD_PACKAGED: Buffer receive fail ret=10 length=100$/,
  );
  await fails([ADVISE, packaged(packaged(RUN))], /^CMD_PACKAGED inside a package/);
  const r = await fails(
    [ADVISE, packaged(Buffer.concat([LISTEN, u8(0x42), RUN]))],
    /Unknown savevm section type 66 \(at byte 5 of the package\)/,
  );
  assert.equal(r.ran, false);
  assert.equal(r.paused, undefined, 'a failure before RUN fails the migration, it does not pause');
});

test('after RUN: pages present are kept, a failure pauses, EOF with every page completes', async () => {
  const pages = SIZE / PAGE;
  const all = [page(0, 1), ...Array.from({ length: pages - 1 }, (_, i) => page(i + 1, 1, false))];
  // Page 5 arrives twice after RUN: the second copy is not placed (EEXIST).
  const r = await load([
    OPEN_RP,
    ADVISE,
    ramStart(),
    packaged(Buffer.concat([LISTEN, RUN])),
    ramPart(all),
    ramPart([page(5, 9)]),
    u8(3),
    be32(1),
    be64(0x10),
    u8(0x7e),
    be32(1),
    EOF,
  ]);
  assert.equal(r.error, undefined, r.error?.message);
  assert.equal(r.ran, true);
  assert.equal(r.ram.blocks[0]!.host[5 * PAGE], 1);
  assert.equal(r.ram.blocks[0]!.receivedMap, undefined, 'presence no longer tracked');
  // SHUT 0 at the end.
  assert.deepEqual(r.rp.at(-1), Buffer.from([0, 1, 0, 4, 0, 0, 0, 0]));

  const cut = await load([
    OPEN_RP,
    ADVISE,
    ramStart(),
    packaged(Buffer.concat([LISTEN, RUN])),
    ramPart([page(0, 1)]),
    u8(0x42),
  ]);
  assert.match(cut.error!.message, /Unknown savevm section type 66/);
  assert.equal(cut.paused, cut.error, 'paused on the error');
  const early = await load([OPEN_RP, ADVISE, ramStart(), packaged(Buffer.concat([LISTEN, RUN])), EOF]);
  assert.match(early.error!.message, /the postcopy stream ended with 512 pages never sent/);
});

test('page requests: REQ_PAGES_ID then REQ_PAGES, a batch of missing pages; RECV_BITMAP layout', async () => {
  const r = await load([OPEN_RP, ADVISE, ramStart([page(3, 1)])]);
  const pc = r.pc!;
  const b = r.ram.blocks[0]!;
  r.rp.length = 0;
  let got = false;
  const wait = pc.fault(b, 1, true).then(() => {
    got = true;
  });
  // Pages 1, 2 (3 is present): one request of 2 pages naming the block.
  assert.deepEqual(r.rp[0], Buffer.concat([be16(3), be16(15), be64(PAGE), be32(2 * PAGE), cstr('m0')]));
  void pc.fault(b, 10, true);
  assert.deepEqual(r.rp[1], Buffer.concat([be16(4), be16(12), be64(10 * PAGE), be32(16 * PAGE)]));
  // A page already asked for is not asked again.
  void pc.fault(b, 2, false);
  assert.equal(r.rp.length, 2);
  assert.equal(got, false);
  pc.placed(b, 1);
  await wait;
  assert.equal(got, true);
  assert.equal(pc.requests, 2);

  const bm = encodeRecvBitmap(b);
  const n = Buffer.concat([be16(5), be16(3), cstr('m0')]);
  assert.deepEqual(bm.subarray(0, n.length), n);
  assert.equal(bm.readBigUInt64BE(n.length), 64n, '512 pages: 64 bytes of bitmap');
  const bits = bm.subarray(n.length + 8, n.length + 8 + 64);
  assert.equal(bits[0], 0b1010, 'pages 1 and 3 received, little-endian bit order');
  assert.ok(bits.subarray(1).every((x) => x === 0));
  assert.equal(bm.readBigUInt64BE(n.length + 8 + 64), RAMBLOCK_RECV_BITMAP_ENDING);
});
