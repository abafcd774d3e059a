// `qmigrate vm` refuses at start what QEMU 10.0 refuses, with QEMU's words: stdio taken by
// two character devices, an object id used twice, -add-fd naming no inherited descriptor
// (one of Node's own would have the stream written into its event loop); and sizes -m QEMU
// rounds up to 8 KiB are rounded the same way, so such guests migrate both ways.
import assert from 'node:assert/strict';
import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseVmArgs } from '../../src/vm/cmdline.js';
import { connectRetry, type PeerKind, waitMigration } from '../helpers/peers.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';

/** The first error line, without the program name; QEMU's module warnings left out. */
function errorLine(stderr: string): string | undefined {
  return stderr
    .split('\n')
    .find((l) => l !== '' && !/module|Only modules/.test(l))
    ?.replace(/^(qemu-system-x86_64|qmigrate): /, '');
}

const BASE = ['-machine', 'none', '-display', 'none', '-nodefaults'];
const ENTRY = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));

/** Runs `qmigrate vm ARGS` with a time limit: one that is wrongly accepted runs on. */
function runVm(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', ENTRY, 'vm', ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { code: r.status, stderr: r.stderr };
}

const REFUSED: string[][] = [
  ['-qmp', 'stdio', '-monitor', 'stdio'],
  ['-monitor', 'stdio', '-qmp', 'stdio'],
  ['-chardev', 'stdio,id=s0', '-mon', 'chardev=s0', '-qmp', 'stdio'],
  ['-qmp', 'stdio', '-chardev', 'stdio,id=s0'],
  ['-object', 'memory-backend-ram,id=m0,size=8M', '-object', 'memory-backend-ram,id=m0,size=8M'],
  ['-add-fd', 'fd=-1,set=1'],
  ['-add-fd', 'set=1'],
  ['-add-fd', 'fd=2,set=1'],
  ['-add-fd', 'fd=99,set=1'],
  // fd 3 is open in both processes, but it is their own (close-on-exec), not inherited.
  ['-add-fd', 'fd=3,set=1'],
  ['-add-fd', 'fd=abc,set=1'],
];

test('command lines QEMU 10.0 refuses at start are refused with its words', (t) => {
  const qemu = requireQemu(t, '10.0');
  if (!qemu) return;
  for (const args of REFUSED) {
    const ref: SpawnSyncReturns<string> = spawnSync(qemu.path, [...qemu.args, ...BASE, ...args], {
      env: qemu.env,
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    assert.equal(ref.status, 1, `QEMU 10.0 refuses ${args.join(' ')}`);
    const ours = runVm([...BASE, ...args]);
    assert.equal(ours.code, 1, `qmigrate refuses ${args.join(' ')} (stderr: ${ours.stderr})`);
    assert.equal(errorLine(ours.stderr), errorLine(ref.stderr), args.join(' '));
  }
});

test('a workload on a guest too small for it is a clear error, not a stack trace', () => {
  const r = runVm([...BASE, '-m', '1M', '-object', 'qmigrate-workload,id=w0,rate=10']);
  assert.equal(r.code, 1);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.match(r.stderr, /^qmigrate: -object qmigrate-workload.*more than 1 MiB/m);
});

test('-m is rounded up to 8 KiB as QEMU 10.0 rounds it', async (t) => {
  const qemu = requireQemu(t, '10.0');
  if (!qemu) return;
  // What QEMU 10.0 reports in query-memory-size-summary for these (base-memory).
  const qemuSizes: Record<string, number> = {
    '0': 0,
    '1': 1 << 20,
    '4097B': 8192,
    '1k': 8192,
    '8193B': 16384,
    '12k': 16384,
  };
  for (const [m, bytes] of Object.entries(qemuSizes)) {
    assert.equal(parseVmArgs(['-m', m]).ramSize, BigInt(bytes), `-m ${m}`);
  }
});

/** A -machine none guest with plain `-m` RAM (no backend), qmigrate or QEMU 10.0. */
async function plainPeer(t: TestContext, kind: PeerKind, dir: string, name: string, extra: string[]) {
  if (kind === 'qmigrate') {
    const sock = join(dir, `${name}.qmp`);
    const child = spawnQmigrate(['vm', ...BASE, '-qmp', `unix:${sock},server=on,wait=off`, ...extra], {
      stdio: 'inherit',
    });
    t.after(() => child.kill('SIGKILL'));
    return connectRetry(sock);
  }
  const bin = requireQemu(t, '10.0');
  if (!bin) return undefined;
  const q = await startQemu(bin, extra);
  t.after(() => q.stop());
  q.qmp.close();
  return connectRetry(join(q.dir, 'qmp.sock'));
}

async function migrateOddSize(t: TestContext, src: PeerKind, dst: PeerKind) {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-oddm-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const a = await plainPeer(t, src, dir, 'src', ['-m', '5000B']);
  const b = await plainPeer(t, dst, dir, 'dst', ['-m', '5000B', '-incoming', 'defer']);
  if (!a || !b) return undefined;
  t.after(() => Promise.all([a.close(), b.close()]));
  const sock = join(dir, 'm.sock');
  await b.migrateIncoming({ uri: `unix:${sock}`, 'exit-on-error': false });
  await a.migrate({ uri: `unix:${sock}` });
  return [(await waitMigration(a)).status, (await waitMigration(b)).status];
}

test('a guest whose -m is not a page multiple migrates to and from QEMU 10.0', async (t) => {
  const there = await migrateOddSize(t, 'qmigrate', '10.0');
  if (!there) return;
  assert.deepEqual(there, ['completed', 'completed']);
  assert.deepEqual(await migrateOddSize(t, '10.0', 'qmigrate'), ['completed', 'completed']);
});
