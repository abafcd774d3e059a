// A length the peer declares is checked before anything is allocated for it. QEMU 10.0
// allocates the configuration record's machine-type name at whatever length the stream says:
// 0xffffffff makes GLib abort the destination, whatever exit-on-error says. qmigrate refuses
// any name over 256 bytes with a clear error, and the destination stays up. The VM
// description's length is read in pieces: one that claims 4 GiB and is cut short completes
// the migration on both (the guest's state is whole at EOF).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { type TestContext, test } from 'node:test';
import { startBareVm } from '../helpers/peers.js';
import { requireQemu, startQemu, untilIncludes } from '../helpers/qemu.js';

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
  const { qmp: q } = await startBareVm(t, ['-incoming', 'defer']);
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

const sample = readFileSync(new URL('../fixtures/samples/qemu10-none-16M-pattern.mig', import.meta.url));
/** The sample to its EOF, then a VM description claiming 0xffffffff bytes, cut after 1000. */
const eof = sample.lastIndexOf(Buffer.from([0x00, 0x06]));
const CUT_VMDESC = Buffer.concat([
  sample.subarray(0, eof + 2),
  Buffer.from([0xff, 0xff, 0xff, 0xff]),
  Buffer.alloc(1000),
]);
const RAM = ['-machine', 'none,memory-backend=m0', '-object', 'memory-backend-ram,id=m0,size=16M'];

async function until<T>(get: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  let v = await get();
  for (let i = 0; i < 400 && !ok(v); i++) {
    await new Promise((r) => setTimeout(r, 25));
    v = await get();
  }
  return v;
}

test('a VM description cut short completes the migration, on QEMU 10.0 and on qmigrate', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const qemu = await startQemu(bin, ['-incoming', 'defer'], RAM);
  t.after(() => qemu.stop());
  await qemu.qmp.execute('migrate-incoming', { uri: 'tcp:127.0.0.1:0' });
  const at = (await qemu.qmp.execute('query-migrate')) as {
    return: { 'socket-address': { port: string }[] };
  };
  await send(Number(at.return['socket-address'][0]!.port), CUT_VMDESC);
  type Info = { return: { status?: string } };
  const theirs = await until(
    async () => ((await qemu.qmp.execute('query-migrate')) as Info).return.status,
    (s) => s === 'completed' || s === 'failed',
  );
  assert.equal(theirs, 'completed');
  assert.deepEqual(await qemu.qmp.execute('query-status'), { return: { status: 'running', running: true } });

  const { qmp: q } = await startBareVm(t, ['-incoming', 'defer'], RAM);
  await q.migrateIncoming({ uri: 'tcp:127.0.0.1:0' });
  const bound = (await q.queryMigrate())['socket-address']?.[0];
  await send(Number(bound?.type === 'inet' ? bound.port : 0), CUT_VMDESC);
  const ours = await until(
    async () => (await q.queryMigrate()).status,
    (s) => s === 'completed' || s === 'failed',
  );
  assert.equal(ours, 'completed');
  assert.equal((await q.queryStatus()).status, 'running');
});
