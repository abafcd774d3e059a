// The run state a stream's `globalstate` section carries is checked as QEMU 10.0 checks it:
// the same crafted streams (QEMU's own sample with the run state patched) are loaded into a
// real QEMU 10.0 and into qmigrate, and both accept the same ones, ending in the same state.
// Where QEMU aborts (a state it cannot enter from inmigrate), qmigrate refuses the load.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { GuestRam } from '../../src/machine/ram.js';
import { finishIncoming, loadVmState } from '../../src/migration/incoming.js';
import { QemuFileReader } from '../../src/migration/stream/qemu-file.js';
import { RunStateMachine } from '../../src/vm/runstate.js';
import { type QemuBinary, requireQemu, startQemu, untilIncludes } from '../helpers/qemu.js';

const sample = readFileSync(
  fileURLToPath(new URL('../fixtures/samples/qemu10-none-16M-pattern.mig', import.meta.url)),
);
// Section header: type, id, counted "globalstate", instance, version; then size, name[32].
const payload = sample.indexOf(Buffer.from('\x0bglobalstate', 'latin1')) + 12 + 8;

function craft(name: string | Buffer, size?: number): Buffer {
  const b = Buffer.from(sample);
  b.fill(0, payload + 4, payload + 36);
  (typeof name === 'string' ? Buffer.from(name, 'latin1') : name).copy(b, payload + 4);
  b.writeUInt32BE(size ?? name.length + 1, payload);
  return b;
}

type Outcome = { accepted: true; runstate: string } | { accepted: false; why: string };

async function qemuLoads(bin: QemuBinary, stream: Buffer, refused?: string): Promise<Outcome> {
  const q = await startQemu(
    bin,
    ['-incoming', 'defer'],
    ['-machine', 'none,memory-backend=m0', '-object', 'memory-backend-ram,id=m0,size=16M', '-m', '16M'],
  );
  let stderr = '';
  q.child.stderr?.on('data', (d) => {
    stderr += d;
  });
  let signal: string | null = null;
  q.child.once('exit', (_c, s) => {
    signal = s;
  });
  try {
    const file = join(q.dir, 'crafted.mig');
    writeFileSync(file, stream);
    await q.qmp.execute('migrate-incoming', { uri: `file:${file}`, 'exit-on-error': false });
    for (let i = 0; i < 500; i++) {
      if (signal) return { accepted: false, why: `QEMU died (${signal}): ${stderr}` };
      const info = (await q.qmp.execute('query-migrate').catch(() => undefined)) as
        | { return: { status?: string } }
        | undefined;
      const status = info?.return.status;
      if (status === 'failed') {
        return { accepted: false, why: await untilIncludes(() => stderr, `${refused ?? ''}\n`) };
      }
      if (status === 'completed') {
        const s = (await q.qmp.execute('query-status')) as { return: { status: string } };
        return { accepted: true, runstate: s.return.status };
      }
      await sleep(20);
    }
    throw new Error('QEMU neither completed nor failed the load');
  } finally {
    await q.stop();
  }
}

async function qmigrateLoads(stream: Buffer): Promise<Outcome> {
  const ram = new GuestRam();
  ram.add('m0', Buffer.alloc(16 << 20));
  const runstate = new RunStateMachine('inmigrate', true, { emit: () => {} });
  try {
    const result = await loadVmState(new QemuFileReader(Readable.from([stream])), ram, undefined);
    finishIncoming(runstate, result);
    return { accepted: true, runstate: runstate.state };
  } catch (e) {
    return { accepted: false, why: (e as Error).message };
  }
}

/** `refused`: the text both print, QEMU on stderr and qmigrate in its error. */
const CASES: { name: string; stream: () => Buffer; refused?: string }[] = [
  ...[
    'running',
    'paused',
    'postmigrate',
    'prelaunch',
    'inmigrate',
    'shutdown',
    'suspended',
    'finish-migrate',
    'colo',
    'internal-error',
    'io-error',
    'watchdog',
    'guest-panicked',
  ].map((s) => ({ name: s, stream: () => craft(s) })),
  { name: 'running, size 0', stream: () => craft('running', 0) },
  { name: 'running, then bytes after its NUL', stream: () => craft(Buffer.from('running\0xyz', 'latin1')) },
  { name: 'garbage', stream: () => craft('garbage'), refused: 'invalid parameter value: garbage' },
  { name: 'empty', stream: () => craft(''), refused: 'invalid parameter value: ' },
  { name: 'Running', stream: () => craft('Running'), refused: 'invalid parameter value: Running' },
  {
    name: '32 bytes, no NUL',
    stream: () => craft(Buffer.alloc(32, 0x61)),
    refused: `invalid parameter value: ${'a'.repeat(31)}`,
  },
  ...['debug', 'save-vm', 'restore-vm'].map((s) => ({
    name: s,
    stream: () => craft(s),
    refused: `invalid runstate transition: 'inmigrate' -> '${s}'`,
  })),
];

for (const c of CASES) {
  test(`globalstate run state ${c.name}: qmigrate accepts it as QEMU 10.0 does`, async (t) => {
    const bin = requireQemu(t, '10.0');
    const stream = c.stream();
    const ours = await qmigrateLoads(stream);
    if (c.refused) {
      assert.equal(ours.accepted, false, `qmigrate accepted it: ${JSON.stringify(ours)}`);
      assert.equal((ours as { why: string }).why, c.refused);
    } else {
      assert.deepEqual(ours.accepted, true, JSON.stringify(ours));
    }
    if (!bin) return;
    const theirs = await qemuLoads(bin, stream, c.refused);
    if (c.refused) {
      assert.equal(theirs.accepted, false, `QEMU accepted it: ${JSON.stringify(theirs)}`);
      assert.ok((theirs as { why: string }).why.includes(`${c.refused}\n`), (theirs as { why: string }).why);
    } else {
      assert.deepEqual(ours, theirs);
    }
  });
}
