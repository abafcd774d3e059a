// The stream reader on real QEMU streams (7.2 and 10.0 samples), fed in chunks of many sizes,
// and the writer against QEMU 10.0's own bytes: for the sample's guest, qmigrate writes the
// very same stream, except the timer's two host-clock offsets.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GuestRam } from '../../src/machine/ram.js';
import { loadVmState } from '../../src/migration/incoming.js';
import { QemuFileReader } from '../../src/migration/stream/qemu-file.js';
import { connectRetry, waitMigration } from '../helpers/peers.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';

const samples = fileURLToPath(new URL('../fixtures/samples/', import.meta.url));
const PAGE = 4096;

/** The 10.0 sample's guest: page i is (i*7+1)&0xff when i % 16 == 0, zero otherwise. */
function image10(): Buffer {
  const img = Buffer.alloc(16 << 20);
  for (let i = 0; i < 4096; i += 16) img.fill((i * 7 + 1) & 0xff, i * PAGE, (i + 1) * PAGE);
  return img;
}

/** The 7.2 sample's guest: every 16th page filled with p&0xff, headed "PAGE" | be32 p | marker. */
function image72(): Buffer {
  const img = Buffer.alloc(16 << 20);
  for (let p = 0; p < 4096; p += 16) {
    img.fill(p & 0xff, p * PAGE, (p + 1) * PAGE);
    img.write('PAGE', p * PAGE, 'latin1');
    img.writeUInt32BE(p, p * PAGE + 4);
    img.writeBigUInt64BE(0x1122334455667788n, p * PAGE + 8);
  }
  return img;
}

function chunked(data: Buffer, size: number): Readable {
  let at = 0;
  return new Readable({
    read() {
      if (at >= data.length) this.push(null);
      else {
        this.push(data.subarray(at, at + size));
        at += size;
      }
    },
  });
}

async function load(
  data: Buffer,
  block: string,
  chunk: number,
): Promise<{ ram: GuestRam; runstate?: string }> {
  const ram = new GuestRam();
  ram.add(block, Buffer.alloc(16 << 20, 0xee));
  const result = await loadVmState(new QemuFileReader(chunked(data, chunk)), ram, undefined);
  return { ram, runstate: result.runstate };
}

const CASES = [
  { file: 'qemu10-none-16M-pattern.mig', block: 'm0', image: image10 },
  { file: 'qemu72-none-16M-pattern.mig', block: 'ram', image: image72 },
  { file: 'qemu72-none-16M-zero.mig', block: 'ram', image: () => Buffer.alloc(16 << 20) },
];

for (const c of CASES) {
  test(`reads QEMU's ${c.file} in chunks of 61, 4095, 4096, 4097 and 65536 bytes`, async () => {
    const data = readFileSync(join(samples, c.file));
    const want = c.image();
    for (const size of [61, 4095, 4096, 4097, 65536]) {
      const { ram, runstate } = await load(data, c.block, size);
      assert.equal(runstate, 'running');
      assert.ok(ram.blocks[0]!.host.equals(want), `RAM differs after reading in ${size}-byte chunks`);
    }
  });
}

test('reads the 7.2 zero sample one byte at a time', async () => {
  const data = readFileSync(join(samples, 'qemu72-none-16M-zero.mig'));
  const { ram } = await load(data, 'ram', 1);
  assert.ok(ram.blocks[0]!.host.equals(Buffer.alloc(16 << 20)));
});

test("qmigrate writes QEMU 10.0's stream byte for byte (but the timer's clock offsets)", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-bytes-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'img'), image10());
  const sock = join(dir, 'q.sock');
  const child = spawnQmigrate([
    'vm',
    '-machine',
    'none,memory-backend=m0',
    '-object',
    `memory-backend-file,id=m0,size=16M,mem-path=${join(dir, 'img')},share=on`,
    '-qmp',
    `unix:${sock},server=on,wait=off`,
  ]);
  t.after(() => child.kill('SIGKILL'));
  const q = await connectRetry(sock);
  await q.migrate({
    channels: [
      { 'channel-type': 'main', addr: { transport: 'file', filename: join(dir, 'out.mig'), offset: 0 } },
    ],
  });
  assert.equal((await waitMigration(q)).status, 'completed');
  await q.close();
  const ours = readFileSync(join(dir, 'out.mig'));
  const theirs = Buffer.from(readFileSync(join(samples, 'qemu10-none-16M-pattern.mig')));
  assert.equal(ours.length, theirs.length);
  // timer payload: cpu_ticks_offset, 8 unused bytes, cpu_clock_offset; QEMU's are clock values.
  const timer = theirs.indexOf(Buffer.from('\x05timer\x00\x00\x00\x00\x00\x00\x00\x02', 'latin1')) + 14;
  assert.ok(timer > 14);
  theirs.fill(0, timer, timer + 24);
  assert.ok(ours.equals(theirs), 'streams differ outside the timer offsets');
});
