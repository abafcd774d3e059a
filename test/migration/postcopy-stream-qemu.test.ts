// The destination's postcopy command errors, side by side with QEMU 10.0's: each crafted
// stream is loaded by a QEMU 10.0 destination (postcopy-ram on through -global, the stream
// from a file) and by qmigrate's loader; QEMU's first error line is qmigrate's error text.
// (After LISTEN QEMU reads the stream from two threads at once and its errors vary; the unit
// test postcopy-stream.test.ts covers those cases.)
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { GuestRam } from '../../src/machine/ram.js';
import { loadVmState, type PostcopyHooks } from '../../src/migration/incoming.js';
import { QemuFileReader, StreamError } from '../../src/migration/stream/qemu-file.js';
import { qemuStderr } from '../helpers/qemu.js';

const be = (n: 1 | 2 | 4 | 8, v: number) => {
  const b = Buffer.alloc(n);
  if (n === 8) b.writeBigUInt64BE(BigInt(v));
  else if (n === 4) b.writeUInt32BE(v);
  else if (n === 2) b.writeUInt16BE(v);
  else b[0] = v;
  return b;
};
const header = Buffer.concat([be(4, 0x5145564d), be(4, 3), be(1, 7), be(4, 4), Buffer.from('none')]);
const cmd = (c: number, d = Buffer.alloc(0)) => Buffer.concat([be(1, 8), be(2, c), be(2, d.length), d]);
const advise = (host = 4096, target = 4096) => cmd(3, Buffer.concat([be(8, host), be(8, target)]));
const discard = (version: number, nil: number) =>
  cmd(6, Buffer.concat([be(1, version), be(1, 3), Buffer.from('ram'), be(1, nil), be(8, 0), be(8, 4096)]));

const CASES: { name: string; parts: Buffer[]; postcopy?: false }[] = [
  { name: 'ADVISE twice', parts: [advise(), advise()] },
  { name: 'ADVISE of 8 bytes', parts: [cmd(3, be(8, 4096))] },
  { name: 'ADVISE of 0 bytes', parts: [cmd(3)] },
  { name: 'ADVISE without postcopy-ram', parts: [advise()], postcopy: false },
  { name: 'ADVISE with 64 KiB host pages', parts: [advise(0x10000)] },
  { name: 'ADVISE with 8 KiB target pages', parts: [advise(4096, 8192)] },
  { name: 'LISTEN first', parts: [cmd(4)] },
  { name: 'RUN before LISTEN', parts: [advise(), cmd(5)] },
  { name: 'RAM_DISCARD first', parts: [discard(0, 0)] },
  { name: 'RAM_DISCARD of version 1', parts: [advise(), discard(1, 0)] },
  { name: 'RAM_DISCARD without its nil', parts: [advise(), discard(0, 9)] },
  { name: 'RAM_DISCARD too short', parts: [advise(), cmd(6, Buffer.alloc(8))] },
  { name: 'PACKAGED cut short', parts: [advise(), cmd(7, be(4, 100)), Buffer.alloc(10)] },
];

async function qmigrateError(stream: Buffer, postcopyRam: boolean): Promise<string> {
  const ram = new GuestRam();
  ram.add('ram', Buffer.alloc(16 << 20), false);
  const hooks: PostcopyHooks = {
    postcopyRam,
    blocktime: false,
    status: () => 'active',
    listen() {},
    run() {},
    pause: (e) => Promise.reject(e),
    resumed() {},
    warn() {},
    advised() {},
  };
  try {
    await loadVmState(new QemuFileReader(Readable.from([stream])), ram, undefined, undefined, hooks);
  } catch (e) {
    assert.ok(e instanceof StreamError, String(e));
    return e.message;
  }
  return assert.fail('loaded');
}

test('postcopy command errors are QEMU 10.0 destination errors', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-pc-qemu-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const c of CASES) {
    const stream = Buffer.concat([header, ...c.parts]);
    const file = join(dir, 's.mig');
    writeFileSync(file, stream);
    const global = c.postcopy === false ? [] : ['-global', 'migration.x-postcopy-ram=on'];
    const err = await qemuStderr(t, ['-m', '16M', ...global, '-incoming', `file:${file}`]);
    if (err === undefined) return;
    const qemu = err.split('\n')[0];
    assert.equal(await qmigrateError(stream, c.postcopy !== false), qemu, c.name);
  }
});
