// The reader treats the stream as hostile: each corruption of a real QEMU 10.0 stream ends
// the load with a precise error (what, and at which byte), never a crash or a hang.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GuestRam } from '../../src/machine/ram.js';
import { loadVmState } from '../../src/migration/incoming.js';
import { QemuFileReader, StreamError } from '../../src/migration/stream/qemu-file.js';

const sample = readFileSync(
  fileURLToPath(new URL('../fixtures/samples/qemu10-none-16M-pattern.mig', import.meta.url)),
);

async function load(data: Buffer, block = 'm0', size = 16 << 20): Promise<StreamError> {
  const ram = new GuestRam();
  ram.add(block, Buffer.alloc(size));
  try {
    await loadVmState(new QemuFileReader(Readable.from([data])), ram, undefined);
  } catch (e) {
    assert.ok(e instanceof StreamError, `not a StreamError: ${e}`);
    return e;
  }
  assert.fail('the corrupted stream loaded');
}

const at = (needle: string | Buffer, from = 0) =>
  sample.indexOf(typeof needle === 'string' ? Buffer.from(needle, 'latin1') : needle, from);
const edit = (f: (b: Buffer) => void) => {
  const b = Buffer.from(sample);
  f(b);
  return b;
};
// First PART chunk (type 02, section 1) and its first page record.
const part = at(Buffer.from([0x7e, 0, 0, 0, 1, 0x02, 0, 0, 0, 1])) + 5;
const firstZero = at(Buffer.from([0x00, 0x00, 0x10, 0x22]), part) - 4;

const CASES: {
  name: string;
  data: () => Buffer;
  block?: string;
  size?: number;
  want: RegExp;
  offset?: number;
}[] = [
  {
    name: 'bad magic',
    data: () => edit((b) => b.write('QEVX', 0, 'latin1')),
    want: /^not a migration stream: magic 0x51455658/,
    offset: 0,
  },
  {
    name: 'obsolete version 2',
    data: () => edit((b) => b.writeUInt32BE(2, 4)),
    want: /v2 format is obsolete/,
  },
  {
    name: 'future version 4',
    data: () => edit((b) => b.writeUInt32BE(4, 4)),
    want: /unsupported migration stream version 4/,
  },
  {
    name: 'other machine type',
    data: () => edit((b) => b.write('nope', 13, 'latin1')),
    want: /Machine type received is 'nope' and local is 'none'/,
  },
  { name: 'empty stream', data: () => Buffer.alloc(0), want: /stream ended early: the stream header/ },
  { name: 'cut in the header', data: () => sample.subarray(0, 11), want: /stream ended early/ },
  {
    name: 'cut inside a page',
    data: () => sample.subarray(0, part + 200),
    want: /stream ended early: page 0x0 of m0 needs 4096 bytes/,
  },
  {
    name: 'cut before EOF',
    data: () => sample.subarray(0, at('\x0bglobalstate') + 20),
    want: /stream ended early: the globalstate section/,
  },
  {
    name: 'unknown section type',
    data: () => edit((b) => b.writeUInt8(0x09, part)),
    want: /^Unknown savevm section type 9$/,
    offset: part,
  },
  {
    name: 'unknown section',
    data: () => edit((b) => b.write('tymer', at('\x05timer') + 1, 'latin1')),
    want: /Unknown savevm section or instance 'tymer' 0/,
  },
  {
    name: 'unknown RAM block',
    data: () => sample,
    block: 'ram',
    want: /^Unknown ramblock "m0", cannot accept migration$/,
  },
  {
    name: 'RAM size mismatch',
    data: () => sample,
    size: 32 << 20,
    want: /RAM size mismatch: the source has 0x1000000 bytes, this guest 0x2000000/,
  },
  {
    name: 'bad section footer',
    data: () => edit((b) => b.writeUInt8(0x7f, part - 5)),
    want: /missing section footer for ram: found byte 0x7f/,
  },
  {
    name: 'zero page with a fill value',
    data: () => edit((b) => b.writeUInt8(1, firstZero + 8)),
    want: /^Found a zero page with value 1$/,
  },
  {
    name: 'page beyond the block',
    data: () => edit((b) => b.writeUInt32BE(0x01000008, part + 5 + 4)),
    want: /Illegal RAM offset 0x1000000 in block m0/,
  },
  {
    name: 'unsupported page encoding',
    data: () => edit((b) => b.writeUInt8(0x40, part + 5 + 7)),
    want: /Unknown combination of migration flags: 0x40/,
  },
  {
    name: 'unknown command',
    data: () => edit((b) => b.writeUInt8(0x2a, at(Buffer.from([0x08, 0x00, 0x0b])) + 2)),
    want: /MIG_CMD 0x2a unknown/,
  },
  {
    name: 'garbage after the header',
    data: () => Buffer.concat([sample.subarray(0, 17), Buffer.alloc(64, 0xab)]),
    want: /Unknown savevm section type 171/,
  },
];

for (const c of CASES) {
  test(`hostile stream: ${c.name}`, async () => {
    const e = await load(c.data(), c.block, c.size);
    assert.match(e.message, c.want);
    if (c.offset !== undefined) assert.equal(e.offset, c.offset);
    assert.ok(e.offset >= 0 && e.offset <= sample.length);
  });
}

test('every truncation of the stream is an error, never a hang or a crash', async () => {
  const cuts = [...Array(60).keys()]
    .map((i) => Math.floor((sample.length * i) / 60))
    .concat([sample.length - 1, 17, 18, 65]);
  for (const cut of cuts) {
    const e = await load(sample.subarray(0, cut));
    assert.match(e.message, /stream ended early/, `cut at ${cut}`);
  }
});
