// The rest of the engine's contract: pause-before-switchover with migrate-continue (and a
// cancel there), transports QEMU rejects or Node lacks (rdma, vsock), fds inherited with
// -add-fd, -incoming URI on the command line, and a share=on memory-backend-file that holds
// the guest's RAM once the process is gone.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { guestArgs, writeMixedImage } from '../helpers/guest.js';
import {
  connectRetry,
  startPeer,
  waitMigration,
  waitMigrationStatus,
  waitRunstate,
} from '../helpers/peers.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';

const MiB = 32;

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-feat-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A qmigrate source whose migration to a file waits in pre-switchover. */
async function pausedBeforeSwitchover(t: TestContext) {
  const dir = tmp(t);
  writeMixedImage(join(dir, 'img'), MiB << 20, 1);
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'img'), MiB))!;
  await src.qmp.migrateSetCapabilities({
    capabilities: [{ capability: 'pause-before-switchover', state: true }],
  });
  await src.qmp.migrate({ uri: `file:${join(dir, 'm.mig')}` });
  await waitMigrationStatus(src.qmp, 'pre-switchover');
  return { dir, src };
}

test('pause-before-switchover waits in pre-switchover until migrate-continue', async (t) => {
  const { dir, src } = await pausedBeforeSwitchover(t);
  // As QEMU 10.0: the guest is stopped before pre-switchover is entered, so that whoever
  // waits for the state can do its work on a paused guest.
  assert.deepEqual(await src.qmp.queryStatus(), { status: 'finish-migrate', running: false });
  await assert.rejects(
    src.qmp.migrateContinue({ state: 'active' }),
    /Migration not in expected state: pre-switchover/,
  );
  await src.qmp.migrateContinue({ state: 'pre-switchover' });
  assert.equal((await waitMigration(src.qmp)).status, 'completed');
  assert.equal((await src.qmp.queryStatus()).status, 'postmigrate');
  await assert.rejects(
    src.qmp.migrate({ uri: `file:${join(dir, 'n.mig')}` }),
    /paused due to previous migration/,
  );
});

test('migrate_cancel in pre-switchover: cancelled, the guest keeps running', async (t) => {
  const { src } = await pausedBeforeSwitchover(t);
  await src.qmp.migrateCancel();
  assert.equal((await waitMigration(src.qmp)).status, 'cancelled');
  await waitRunstate(src.qmp, 'running');
});

test('rdma and vsock get a clear error; the source keeps running', async (t) => {
  const dir = tmp(t);
  writeMixedImage(join(dir, 'img'), MiB << 20, 1);
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'img'), MiB))!;
  await assert.rejects(src.qmp.migrate({ uri: 'rdma:127.0.0.1:4444' }), /RDMA is not supported by qmigrate/);
  assert.equal((await src.qmp.queryMigrate()).status, 'failed');
  await src.qmp.migrate({ uri: 'vsock:2:1234' });
  const info = await waitMigration(src.qmp);
  assert.deepEqual(info, { status: 'failed', 'error-desc': 'socket family AF_VSOCK unsupported' });
  await waitRunstate(src.qmp, 'running');
});

test('fds inherited at start: -add-fd ... opaque=NAME on the source, fd:N on the destination', async (t) => {
  const dir = tmp(t);
  writeMixedImage(join(dir, 'img'), MiB << 20, 4);
  // A connected pair of sockets, one end handed to each VM as its fd 3.
  const server = createServer();
  await new Promise<void>((r) => server.listen(join(dir, 'pair.sock'), r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const { connect } = await import('node:net');
  const a = connect(join(dir, 'pair.sock'));
  await new Promise((r) => a.once('connect', r));
  const b = await accepted;
  t.after(() => {
    a.destroy();
    b.destroy();
    server.close();
  });
  const start = (name: string, image: string, extra: string[], fd: Socket) => {
    const child = spawnQmigrate(
      [
        'vm',
        ...guestArgs(image, MiB),
        '-qmp',
        `unix:${join(dir, `${name}.qmp`)},server=on,wait=off`,
        ...extra,
      ],
      { stdio: ['ignore', 'inherit', 'inherit', fd] },
    );
    t.after(() => child.kill('SIGKILL'));
    return connectRetry(join(dir, `${name}.qmp`));
  };
  writeFileSync(join(dir, 'dst.img'), '');
  const src = await start('src', join(dir, 'img'), ['-add-fd', 'fd=3,set=1,opaque=migfd'], a);
  const dst = await start('dst', join(dir, 'dst.img'), ['-incoming', 'defer'], b);
  a.pause();
  b.pause();
  await dst.migrateIncoming({ uri: 'fd:3' });
  await assert.rejects(
    src.migrate({ uri: 'fd:nosuch' }),
    /File descriptor named 'nosuch' has not been found/,
  );
  await src.migrate({
    channels: [{ 'channel-type': 'main', addr: { transport: 'socket', type: 'fd', str: 'migfd' } }],
  });
  assert.equal((await waitMigration(src)).status, 'completed');
  assert.equal((await waitMigration(dst)).status, 'completed');
  await dst.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'dst.dump') });
  assert.ok(readFileSync(join(dir, 'dst.dump')).equals(readFileSync(join(dir, 'img'))));
  await src.close();
  await dst.close();
});

test('fd:NAME is used up as QEMU uses up a getfd name: its number may belong to another by then', async (t) => {
  const dir = tmp(t);
  writeMixedImage(join(dir, 'img'), MiB << 20, 5);
  // fd 3 is one end of a socket pair; the test reads and drops the stream at the other.
  const server = createServer();
  await new Promise<void>((r) => server.listen(join(dir, 'pair.sock'), r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const { connect } = await import('node:net');
  const a = connect(join(dir, 'pair.sock'));
  await new Promise((r) => a.once('connect', r));
  const b = await accepted;
  b.resume();
  t.after(() => {
    a.destroy();
    b.destroy();
    server.close();
  });
  const sock = join(dir, 'src.qmp');
  const child = spawnQmigrate(
    [
      'vm',
      ...guestArgs(join(dir, 'img'), MiB),
      '-qmp',
      `unix:${sock},server=on,wait=off`,
      '-add-fd',
      'fd=3,set=1,opaque=migfd',
    ],
    { stdio: ['ignore', 'inherit', 'inherit', a] },
  );
  t.after(() => child.kill('SIGKILL'));
  const src = await connectRetry(sock);
  t.after(() => src.close().catch(() => {}));
  await src.migrate({ uri: 'fd:migfd' });
  assert.equal((await waitMigration(src)).status, 'completed');
  await src.cont();
  // The channel closed fd 3 at its end: the next descriptor the VM opens, this client's
  // connection, may get the number.
  const other = await connectRetry(sock);
  t.after(() => other.close().catch(() => {}));
  await assert.rejects(src.migrate({ uri: 'fd:migfd' }), (e: Error) => {
    assert.equal(e.message, "File descriptor named 'migfd' has not been found");
    return true;
  });
  await assert.rejects(src.migrate({ uri: 'file:/dev/fdset/1' }), (e: Error) => {
    assert.equal(e.message, 'Failed to find fdset /dev/fdset/1');
    return true;
  });
  assert.equal((await other.queryStatus()).status, 'running');
});

test('migrate-incoming fd:N with the socket of one of its own monitors: refused, the VM lives on', async (t) => {
  const dir = tmp(t);
  writeFileSync(join(dir, 'dst.img'), '');
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), MiB, [
    '-incoming',
    'defer',
  ]))!;
  // The QMP listener's socket: libuv watches it already.
  const pid = dst.child.pid!;
  const n = readdirSync(`/proc/${pid}/fd`)
    .map(Number)
    .filter((fd) => fd > 2 && readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:'))
    .sort((a, b) => a - b)[0]!;
  await assert.rejects(dst.qmp.migrateIncoming({ uri: `fd:${n}` }), (e: Error) => {
    assert.equal(e.message, `Invalid file descriptor number '${n}'`);
    return true;
  });
  assert.equal((await dst.qmp.queryStatus()).status, 'inmigrate');
});

test('-incoming URI starts listening at once; share=on backing file holds RAM after quit', async (t) => {
  const dir = tmp(t);
  writeMixedImage(join(dir, 'img'), MiB << 20, 6);
  writeFileSync(join(dir, 'dst.img'), '');
  const sock = join(dir, 'in.sock');
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), MiB, [
    '-incoming',
    `unix:${sock}`,
  ]))!;
  assert.equal((await dst.qmp.queryMigrate()).status, 'setup');
  await assert.rejects(dst.qmp.migrateIncoming({ uri: 'tcp:127.0.0.1:0' }), /already been started/);
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'img'), MiB))!;
  await src.qmp.migrate({ uri: `unix:${sock}` });
  assert.equal((await waitMigration(src.qmp)).status, 'completed');
  await waitRunstate(dst.qmp, 'running');
  await dst.qmp.quit();
  assert.equal(await dst.exited, 0);
  assert.ok(
    readFileSync(join(dir, 'dst.img')).equals(readFileSync(join(dir, 'img'))),
    'backing file = migrated RAM',
  );
});

test('capabilities that change the wire format qmigrate does not speak are refused at migrate', async (t) => {
  const dir = tmp(t);
  writeMixedImage(join(dir, 'img'), MiB << 20, 1);
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'img'), MiB))!;
  await src.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'xbzrle', state: true }] });
  await assert.rejects(
    src.qmp.migrate({ uri: `file:${join(dir, 'x.mig')}` }),
    /Capability 'xbzrle' is not supported by qmigrate/,
  );
  // Refused before anything started, as QEMU's own checks refuse.
  assert.equal((await src.qmp.queryMigrate()).status, undefined);
  await waitRunstate(src.qmp, 'running');
});

test('max-bandwidth limits the rate: 24 MiB of random pages at 8 MiB/s take about 3 s', async (t) => {
  const dir = tmp(t);
  const { writeWorkloadImage } = await import('../helpers/guest.js');
  writeWorkloadImage(join(dir, 'img'), 24 << 20);
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'img'), 24))!;
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 8 << 20 });
  await src.qmp.migrate({ uri: `file:${join(dir, 'bw.mig')}` });
  const info = await waitMigration(src.qmp);
  assert.equal(info.status, 'completed');
  const seconds = Number(info['total-time']) / 1000;
  assert.ok(seconds > 2.4 && seconds < 4.5, `took ${seconds} s`);
  assert.ok(Number(info.ram?.mbps) < 8 * 8.4 * 1.1, `mbps ${info.ram?.mbps}`);
});
