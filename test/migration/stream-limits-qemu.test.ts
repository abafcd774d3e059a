// A length the peer declares is checked before anything is allocated for it. QEMU 10.0
// allocates the configuration record's machine-type name at whatever length the stream says:
// 0xffffffff makes GLib abort the destination, whatever exit-on-error says. qmigrate refuses
// any name over 256 bytes with a clear error, and the destination stays up.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { connectRetry } from '../helpers/peers.js';
import { requireQemu, startQemu, untilIncludes } from '../helpers/qemu.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';

/** Magic, version, QEMU_VM_CONFIGURATION and a machine-type length of 0xffffffff. */
const HUGE_NAME = Buffer.from('5145564d0000000307ffffffff6e6f6e65', 'hex');

async function send(port: number, data: Buffer): Promise<void> {
  const s = connect(port, '127.0.0.1');
  await new Promise((res, rej) => s.once('connect', res).once('error', rej));
  s.on('error', () => {});
  s.end(data);
}

test('QEMU 10.0 aborts on a 4 GiB machine-type name in the stream', async (t: TestContext) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const q = await startQemu(bin, ['-incoming', 'defer']);
  t.after(() => q.stop());
  let stderr = '';
  q.child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<NodeJS.Signals | number | null>((r) =>
    q.child.once('exit', (code, signal) => r(signal ?? code)),
  );
  await q.qmp.execute('migrate-incoming', { uri: 'tcp:127.0.0.1:0', 'exit-on-error': false });
  const info = (await q.qmp.execute('query-migrate')) as {
    return: { 'socket-address': { port: string }[] };
  };
  await send(Number(info.return['socket-address'][0]!.port), HUGE_NAME);
  const how = await exited;
  assert.notEqual(how, 0);
  assert.match(
    await untilIncludes(() => stderr, 'failed to allocate'),
    /GLib: .*failed to allocate \d+ bytes/,
  );
});

test('qmigrate refuses a 4 GiB machine-type name and stays up', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-limits-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'q.sock');
  const child = spawnQmigrate([
    'vm',
    '-machine',
    'none',
    '-m',
    '16M',
    '-incoming',
    'defer',
    '-qmp',
    `unix:${sock},server=on,wait=off`,
  ]);
  t.after(() => child.kill('SIGKILL'));
  const q = await connectRetry(sock);
  t.after(() => q.close());
  await q.migrateIncoming({ uri: 'tcp:127.0.0.1:0', 'exit-on-error': false });
  const bound = (await q.queryMigrate())['socket-address']?.[0];
  assert.equal(bound?.type, 'inet');
  await send(Number(bound?.type === 'inet' ? bound.port : 0), HUGE_NAME);
  let info = await q.queryMigrate();
  for (let i = 0; i < 200 && info.status !== 'failed'; i++) {
    await new Promise((r) => setTimeout(r, 25));
    info = await q.queryMigrate();
  }
  assert.equal(info.status, 'failed');
  assert.equal(
    info['error-desc'],
    "load of migration failed: machine type name of 4294967295 bytes (at most 256) (at byte 13, section 'configuration')",
  );
  assert.equal((await q.queryStatus()).status, 'inmigrate');
});
