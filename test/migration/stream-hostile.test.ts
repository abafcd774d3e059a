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
const be32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};
const cstr = (t: string) => Buffer.concat([Buffer.from([t.length]), Buffer.from(t, 'latin1')]);
/** A configuration subsection: tag, name, version, payload. */
const sub = (name: string, version: number, ...payload: Buffer[]) =>
  Buffer.concat([Buffer.from([0x05]), cstr(name), be32(version), ...payload]);
/** The sample with `extra` right after its configuration record (17 bytes). */
const afterHeader = (extra: Buffer) => Buffer.concat([sample.subarray(0, 17), extra, sample.subarray(17)]);
/** The sample with its SWITCHOVER_START command replaced by `cmd`. */
const switchover = at(Buffer.from([0x08, 0x00, 0x0b, 0x00, 0x00]));
const replaceCommand = (cmd: Buffer) =>
  Buffer.concat([sample.subarray(0, switchover), cmd, sample.subarray(switchover + 5)]);
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
    want: /^Missing section footer for ram: found byte 0x7f$/,
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
    // Above 2^53 a double loses the low bits, the flags among them; QEMU reads them exactly.
    name: 'a page offset near 2^64',
    data: () =>
      edit((b) => {
        b.writeUInt32BE(0xffffffff, part + 5);
        b.writeUInt32BE((0xfffff000 | (b.readUInt32BE(part + 9) & 0xfff)) >>> 0, part + 9);
      }),
    want: /^Illegal RAM offset 0xfffffffffffff000 in block m0/,
  },
  {
    // QEMU keeps one section id per section: the one its last START gave.
    name: 'a PART under the id of a RAM section started again under another',
    data: () => {
      const start = sample.subarray(at('\x03ram') - 5, part);
      const again = Buffer.from(start);
      again.writeUInt32BE(9, 1);
      again.writeUInt32BE(9, again.length - 4);
      return Buffer.concat([sample.subarray(0, part), again, sample.subarray(part)]);
    },
    want: /^Unknown savevm section 1$/,
    // The first PART, after the second START.
    offset: part + (part - (at('\x03ram') - 5)),
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
    name: 'a configuration subsection of a newer version',
    data: () => afterHeader(sub('configuration/target-page-bits', 2, be32(12))),
    want: /^configuration\/target-page-bits: incoming version_id 2 is too new for local version_id 1$/,
  },
  {
    name: 'an unknown capability in the configuration',
    data: () => afterHeader(sub('configuration/capabilities', 1, be32(1), cstr('warp-drive'))),
    want: /^Received unknown capability warp-drive$/,
  },
  {
    name: 'a validated capability this side does not have',
    data: () => afterHeader(sub('configuration/capabilities', 1, be32(1), cstr('x-ignore-shared'))),
    want: /^Capability x-ignore-shared is off, but received capability is on$/,
  },
  {
    name: 'ram of an older version',
    data: () => edit((b) => b.writeUInt32BE(3, at('\x03ram') + 8)),
    want: /^ram: unsupported version 3 \(only 4\)$/,
  },
  {
    name: 'timer of version 0',
    data: () => edit((b) => b.writeUInt32BE(0, at('\x05timer') + 10)),
    want: /^timer: incoming version_id 0 is too old for local minimum version_id {2}1$/,
  },
  {
    name: 'globalstate of version 0',
    data: () => edit((b) => b.writeUInt32BE(0, at('\x0bglobalstate') + 16)),
    want: /^globalstate: incoming version_id 0 is too old for local minimum version_id {2}1$/,
  },
  {
    name: 'a ping with no return path',
    data: () => replaceCommand(Buffer.from([0x08, 0, 2, 0, 4, 0xde, 0xad, 0xbe, 0xef])),
    want: /^CMD_PING \(0xdeadbeef\) received with no return path$/,
  },
  {
    name: 'a command of the wrong length',
    data: () => replaceCommand(Buffer.from([0x08, 0, 1, 0, 2, 0, 0])),
    want: /^OPEN_RETURN_PATH received with bad length - expecting 0, got 2$/,
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

test('every truncation of the stream before its EOF is an error, never a hang or a crash', async () => {
  const eof = sample.lastIndexOf(Buffer.from([0x00, 0x06]));
  const cuts = [...Array(60).keys()]
    .map((i) => Math.floor((sample.length * i) / 60))
    .concat([eof, 17, 18, 65])
    .filter((cut) => cut <= eof);
  for (const cut of cuts) {
    const e = await load(sample.subarray(0, cut));
    assert.match(e.message, /stream ended early/, `cut at ${cut}`);
  }
});

test('a stream cut inside its VM description loads, as QEMU 10.0 loads it', async () => {
  const eof = sample.lastIndexOf(Buffer.from([0x00, 0x06]));
  for (const cut of [eof + 1, eof + 2, eof + 4, eof + 6, sample.length - 1]) {
    const ram = new GuestRam();
    ram.add('m0', Buffer.alloc(16 << 20));
    const result = await loadVmState(
      new QemuFileReader(Readable.from([sample.subarray(0, cut)])),
      ram,
      undefined,
    );
    assert.equal(result.runstate, 'running', `cut at ${cut}`);
  }
});

test('a capability QEMU does not validate is ignored, as QEMU ignores it', async () => {
  const ram = new GuestRam();
  ram.add('m0', Buffer.alloc(16 << 20));
  const data = afterHeader(sub('configuration/capabilities', 1, be32(1), cstr('multifd')));
  const result = await loadVmState(new QemuFileReader(Readable.from([data])), ram, undefined);
  assert.equal(result.runstate, 'running');
});

test('an unknown command fails at once, before its payload is waited for', { timeout: 5000 }, async () => {
  const ram = new GuestRam();
  ram.add('m0', Buffer.alloc(16 << 20));
  // The stream stays open after the command's header: nothing more is coming.
  const src = new Readable({ read() {} });
  src.push(Buffer.concat([sample.subarray(0, switchover), Buffer.from([0x08, 0x00, 0x2a, 0xff, 0xff])]));
  await assert.rejects(loadVmState(new QemuFileReader(src), ram, undefined), {
    message: 'MIG_CMD 0x2a unknown (len 0xffff)',
  });
  src.destroy();
});
