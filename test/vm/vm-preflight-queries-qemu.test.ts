// `qmigrate vm` answers the queries a migration preflight asks (query-version, query-status,
// query-migrate, query-memdev, query-migrate-capabilities, query-migrate-parameters,
// query-commands, and HMP's `info memdev`) as QEMU 10.0 does for the same command line, on an
// idle source and on a destination waiting in `-incoming defer`. Where the answers differ on
// purpose, the difference is listed below with its reason.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import type { Memdev } from '../../src/qapi/types.js';
import type { QmpClient } from '../../src/qmp/client.js';
import { connectRetry } from '../helpers/peers.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';

/** Both backends QEMU's -machine none can take, with every property query-memdev reports. */
function guest(dir: string): string[] {
  writeFileSync(join(dir, 'ram.img'), Buffer.alloc(0));
  return [
    ...['-machine', 'none,memory-backend=m0'],
    ...['-object', `memory-backend-file,id=m0,size=32M,mem-path=${join(dir, 'ram.img')},share=on`],
    ...['-object', 'memory-backend-ram,id=m1,size=16M,prealloc=on,merge=off,dump=off'],
  ];
}

async function startBoth(
  t: TestContext,
  extra: string[],
): Promise<{ qemu: QmpClient; ours: QmpClient } | undefined> {
  const bin = requireQemu(t, '10.0');
  if (!bin) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-preflight-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const args = [...guest(dir), ...extra];
  const q = await startQemu(bin, extra, guest(dir));
  t.after(() => q.stop());
  q.qmp.close();
  const qemu = await connectRetry(join(q.dir, 'qmp.sock'));
  t.after(() => qemu.close().catch(() => {}));
  const sock = join(dir, 'ours.qmp');
  const child = spawnQmigrate(
    ['vm', ...args, '-display', 'none', '-nodefaults', '-qmp', `unix:${sock},server=on,wait=off`],
    {
      stdio: 'inherit',
    },
  );
  const exited = new Promise((r) => child.once('exit', r));
  t.after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
  });
  const ours = await connectRetry(sock);
  t.after(() => ours.close().catch(() => {}));
  return { qemu, ours };
}

/** QEMU lists backends in the order of its object tree's hash table, so order is not part of the answer. */
const byId = (list: Memdev[]) => [...list].sort((a, b) => (a.id ?? '').localeCompare(b.id ?? ''));

/**
 * Commands of QEMU 10.0 a preflight may ask for that qmigrate serves; query-commands lists a
 * subset of QEMU's (qmigrate has no devices, blocks or vCPUs), which must hold all of these.
 */
const PREFLIGHT = [
  'query-version',
  'query-status',
  'query-migrate',
  'query-memdev',
  'query-migrate-capabilities',
  'query-migrate-parameters',
  'query-commands',
];

async function compareQueries(qemu: QmpClient, ours: QmpClient): Promise<void> {
  // query-version: the same QEMU version triple; `package` names qmigrate and its version
  // (QEMU's is the distribution's build string): a documented difference, so that a peer can tell.
  const [qv, ov] = [await qemu.queryVersion(), await ours.queryVersion()];
  assert.deepEqual(ov.qemu, qv.qemu);
  assert.match(ov.package, /^qmigrate \d+\.\d+\.\d+/);
  assert.deepEqual(await ours.queryStatus(), await qemu.queryStatus());
  assert.deepEqual(await ours.queryMigrate(), await qemu.queryMigrate());
  assert.deepEqual(byId(await ours.execute('query-memdev')), byId(await qemu.execute('query-memdev')));
  assert.deepEqual(await ours.queryMigrateCapabilities(), await qemu.queryMigrateCapabilities());
  assert.deepEqual(await ours.queryMigrateParameters(), await qemu.queryMigrateParameters());
  const theirs = new Set((await qemu.queryCommands()).map((c) => c.name));
  const mine = (await ours.queryCommands()).map((c) => c.name);
  for (const c of PREFLIGHT) assert.ok(mine.includes(c), `qmigrate serves ${c}`);
  assert.deepEqual(
    mine.filter((c) => !theirs.has(c)),
    [],
    'every command qmigrate lists is one of QEMU 10.0',
  );
  // `info memdev` lists the backends in query-memdev's order, so compare them as sets of blocks.
  const blocks = (text: string) => {
    assert.ok(text.endsWith('\r\n\r\n'), 'an empty line ends the listing');
    return text
      .slice(0, -2)
      .split(/(?=memory backend: )/)
      .sort();
  };
  const info = { 'command-line': 'info memdev' };
  assert.deepEqual(
    blocks(await ours.humanMonitorCommand(info)),
    blocks(await qemu.humanMonitorCommand(info)),
  );
}

test('idle source: the preflight queries answer as QEMU 10.0 does', async (t) => {
  const both = await startBoth(t, []);
  if (both) await compareQueries(both.qemu, both.ours);
});

test('destination in -incoming defer: the preflight queries answer as QEMU 10.0 does', async (t) => {
  const both = await startBoth(t, ['-incoming', 'defer']);
  if (!both) return;
  assert.equal((await both.ours.queryStatus()).status, 'inmigrate');
  await compareQueries(both.qemu, both.ours);
});

test('plain -m: the backend QEMU creates itself is `ram`, in query-memdev and info memdev', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-preflight-m-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const q = await startQemu(bin, ['-m', '64']);
  t.after(() => q.stop());
  const sock = join(dir, 'ours.qmp');
  const child = spawnQmigrate(
    [
      'vm',
      '-machine',
      'none',
      '-m',
      '64',
      '-display',
      'none',
      '-nodefaults',
      '-qmp',
      `unix:${sock},server=on,wait=off`,
    ],
    {
      stdio: 'inherit',
    },
  );
  const exited = new Promise((r) => child.once('exit', r));
  t.after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
  });
  const ours = await connectRetry(sock);
  t.after(() => ours.close().catch(() => {}));
  const theirs = (await q.qmp.execute('query-memdev')) as { return: unknown };
  assert.deepEqual({ return: await ours.execute('query-memdev') }, theirs);
  const hmp = (await q.qmp.execute('human-monitor-command', { 'command-line': 'info memdev' })) as {
    return: unknown;
  };
  assert.deepEqual({ return: await ours.humanMonitorCommand({ 'command-line': 'info memdev' }) }, hmp);
});
