// The stream analyser on the real QEMU 7.2 and 10.0 samples (test/fixtures/samples): their
// structure to the byte (stream-format.md §6.3 annotates the 7.2 one), RAM dumps equal to the
// pattern the source's RAM held, and broken copies failing at the exact byte: header,
// configuration, a RAM record, a device section, the VM description.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { analyzeBuffer, type RamSink } from '../../src/migration/stream/analyze.js';
import { StreamError } from '../../src/migration/stream/qemu-file.js';

const PAGE = 4096;
const sample = (name: string) => readFileSync(new URL(`../fixtures/samples/${name}`, import.meta.url));
const QEMU10 = sample('qemu10-none-16M-pattern.mig');
const QEMU72 = sample('qemu72-none-16M-pattern.mig');

/** A sink that rebuilds each block in memory (small samples only). */
function memorySink(): { sink: RamSink; blocks: Map<string, Buffer> } {
  const blocks = new Map<string, Buffer>();
  const byIndex: Buffer[] = [];
  return {
    blocks,
    sink: {
      block(i, name, length) {
        byIndex[i] = Buffer.alloc(length);
        blocks.set(name, byIndex[i]!);
      },
      page(i, offset, data) {
        if (data) data.copy(byIndex[i]!, offset);
        else byIndex[i]!.fill(0, offset, offset + PAGE);
      },
    },
  };
}

test('QEMU 10.0 sample: sections, command, page counts, device fields and their meaning', async () => {
  const a = await analyzeBuffer(QEMU10);
  assert.equal(a.size, QEMU10.length);
  assert.deepEqual(a.header, { magic: 'QEVM', version: 3 });
  assert.deepEqual(a.configuration, { offset: 8, 'machine-type': 'none', capabilities: [] });
  assert.deepEqual(
    a.sections.map((s) => [
      s.offset,
      s.kind,
      s['section-id'],
      s.idstr,
      s['instance-id'],
      s['version-id'],
      s.length,
    ]),
    [
      [17, 'start', 1, 'ram', 0, 4, 49],
      [66, 'part', 1, 'ram', 0, 4, 1085205],
      [1085276, 'end', 1, 'ram', 0, 4, 18],
      [1085294, 'full', 0, 'timer', 0, 2, 48],
      [1085342, 'full', 3, 'globalstate', 0, 1, 134],
    ],
  );
  assert.deepEqual(a.commands, [{ offset: 1085271, cmd: 11, name: 'SWITCHOVER_START', length: 0 }]);
  assert.deepEqual(a.ram, {
    'total-bytes': 16 << 20,
    blocks: [
      { name: 'm0', length: 16 << 20, normal: 256, zero: 3840, 'distinct-pages': 4096, records: 4096 },
    ],
    eos: 3,
    'multifd-flush': 0,
  });
  const [timer, gs] = a.devices;
  assert.equal(timer?.fields.cpu_ticks_offset, '74267002');
  assert.equal(timer?.fields.unused, '0000000000000000');
  assert.deepEqual(gs?.meaning, { runstate: 'running', 'vm-was-suspended': false });
  assert.equal(gs?.fields.size, 8);
  assert.equal(a.eof, 1085476);
  assert.equal(a.vmdescription?.offset, 1085477);
  assert.equal(a.vmdescription?.json.devices.length, 2);
});

test('QEMU 7.2 sample: no commands, ids 0/2/4, its 100-byte run state', async () => {
  const a = await analyzeBuffer(QEMU72);
  assert.deepEqual(a.commands, []);
  assert.deepEqual(
    a.sections.map((s) => `${s.kind} ${s.idstr} ${s['section-id']}`),
    ['start ram 2', 'part ram 2', 'end ram 2', 'full timer 0', 'full globalstate 4'],
  );
  // The offsets stream-format.md §6.3 gives for this file.
  assert.equal(a.sections[3]?.offset, 0x108f6b);
  assert.equal(a.sections[4]?.offset, 0x108f9b);
  assert.equal(a.eof, 0x109021);
  assert.deepEqual(a.devices[1]?.meaning, { runstate: 'running' });
  assert.equal(String(a.devices[1]?.fields.runstate).length, 200);
});

test('the RAM the samples carry, rebuilt page by page, is the pattern their sources held', async () => {
  const ten = memorySink();
  await analyzeBuffer(QEMU10, ten.sink);
  const m0 = ten.blocks.get('m0')!;
  const want10 = Buffer.alloc(16 << 20);
  for (let p = 0; p < 4096; p += 16) want10.fill((p * 7 + 1) & 0xff, p * PAGE, (p + 1) * PAGE);
  assert.ok(m0.equals(want10));
  const seven = memorySink();
  await analyzeBuffer(QEMU72, seven.sink);
  const want72 = Buffer.alloc(16 << 20);
  for (let p = 0; p < 4096; p += 16) {
    want72.fill(p & 0xff, p * PAGE, (p + 1) * PAGE);
    want72.write('PAGE', p * PAGE, 'latin1');
    want72.writeUInt32BE(p, p * PAGE + 4);
    want72.writeBigUInt64BE(0x1122334455667788n, p * PAGE + 8);
  }
  assert.ok(seven.blocks.get('ram')!.equals(want72));
});

test('a QEMU 10.0 multifd main channel with a return path: its commands, flushes and no pages', async () => {
  const a = await analyzeBuffer(sample('qemu10-none-16M-multifd2-rp/conn0.c2s'));
  assert.deepEqual(a.commands, [
    { offset: 17, cmd: 1, name: 'OPEN_RETURN_PATH', length: 0 },
    { offset: 22, cmd: 2, name: 'PING', length: 4, value: 1 },
    { offset: 114, cmd: 11, name: 'SWITCHOVER_START', length: 0 },
  ]);
  assert.equal(a.ram?.['multifd-flush'], 3);
  assert.equal(a.ram?.eos, 3);
  assert.equal(a.ram?.blocks[0]?.records, 0, 'the pages went over the multifd channels');
});

/** The error analysing `data` gives: its offset, section and message. */
async function failure(data: Buffer): Promise<{ offset: number; section?: string; message: string }> {
  try {
    await analyzeBuffer(data);
  } catch (e) {
    assert.ok(e instanceof StreamError, `not a StreamError: ${e}`);
    return { offset: e.offset, section: e.section, message: e.message };
  }
  assert.fail('the broken stream was accepted');
}

function patched(at: number, bytes: number[]): Buffer {
  const b = Buffer.from(QEMU10);
  Buffer.from(bytes).copy(b, at);
  return b;
}

test('a broken stream fails at the exact byte, naming the section', async () => {
  assert.deepEqual(await failure(patched(0, [0x51, 0x45, 0x56, 0x4e])), {
    offset: 0,
    section: undefined,
    message: 'not a migration stream: magic 0x5145564e (want 0x5145564d, "QEVM")',
  });
  assert.deepEqual(await failure(QEMU10.subarray(0, 6)), {
    offset: 0,
    section: undefined,
    message: 'stream ended early: the stream header needs 8 bytes, only 6 left',
  });
  // The configuration's machine name length.
  assert.deepEqual(await failure(patched(9, [0x7f, 0, 0, 0])), {
    offset: 9,
    section: 'configuration',
    message: 'machine type name of 2130706432 bytes (at most 256)',
  });
  // The first page record's word (PART at 66, its header 5 bytes): flags 0x48.
  assert.deepEqual(await failure(patched(78, [0x48])), {
    offset: 71,
    section: 'ram',
    message: 'Unknown combination of migration flags: 0x48',
  });
  // A page cut short: the file ends inside the first page's data (its name "m0" ends at 82).
  assert.deepEqual(await failure(QEMU10.subarray(0, 1000)), {
    offset: 82,
    section: 'ram',
    message: 'stream ended early: a page needs 4096 bytes, only 918 left',
  });
  // The timer's footer (its FULL at 1085294 runs 43 bytes to the footer).
  assert.deepEqual(await failure(patched(1085337, [0x7d])), {
    offset: 1085337,
    section: 'timer',
    message: 'Missing section footer: found byte 0x7d',
  });
  // Cut inside globalstate (header 25 bytes from 1085342): no VM description, its own layout.
  assert.deepEqual(await failure(QEMU10.subarray(0, 1085342 + 30)), {
    offset: 1085367,
    section: 'globalstate',
    message: 'stream ended early: the globalstate section needs 104 bytes, only 5 left',
  });
  // The VM description's JSON (from 1085482) broken, and its length past the end.
  const json = await failure(patched(1085482, [0x5b]));
  assert.equal(json.offset, 1085482);
  assert.equal(json.section, 'vmdescription');
  assert.match(json.message, /^the VM description is not JSON: /);
  assert.deepEqual(await failure(patched(1085478, [0, 0, 0x7f, 0])), {
    offset: 1085482,
    section: 'vmdescription',
    message: 'stream ended early: the VM description needs 32512 bytes, only 823 left',
  });
});
