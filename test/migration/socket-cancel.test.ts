// migrate_cancel while a transport is still being set up: a tcp connect to a peer that never
// answers, a unix listener whose backlog is full, a multifd channel's connect, an exec child
// that never reads. QEMU 10.0 cancels at once; so must qmigrate, leaving the source guest
// running with its RAM intact and ready for the next migrate (QEMU 10.0 refuses that one
// with "duplicate yank instance" while its abandoned connect is still pending).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationAddress } from '../../src/qapi/types.js';
import { startBlackhole } from '../helpers/blackhole.js';
import { writeMixedImage } from '../helpers/guest.js';
import { type Peer, type PeerKind, startPeer, waitMigration, waitRunstate } from '../helpers/peers.js';

const MiB = 16;
/** How soon a cancel must end in `cancelled`: "at once", with room for a loaded machine. */
const PROMPT_MS = 1500;

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-cancel-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function source(t: TestContext, kind: PeerKind, dir: string) {
  const image = join(dir, `src-${kind}.img`);
  writeMixedImage(image, MiB << 20, 3);
  const src = await startPeer(t, kind, dir, `src-${kind}`, image, MiB);
  return src && { src, image };
}

/** Starts `migrate`, checks it is still in setup after a while, cancels, times the cancel. */
async function cancelDuringSetup(src: Peer, addr: MigrationAddress, caps: string[] = []): Promise<number> {
  if (caps.length) {
    await src.qmp.migrateSetCapabilities({
      capabilities: caps.map((c) => ({ capability: c as 'multifd', state: true })),
    });
  }
  await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr }] });
  await sleep(600);
  assert.equal((await src.qmp.queryMigrate()).status, 'setup', 'the transport is still pending');
  const t0 = Date.now();
  await src.qmp.migrateCancel();
  const info = await waitMigration(src.qmp, 30_000);
  const took = Date.now() - t0;
  assert.equal(info.status, 'cancelled');
  return took;
}

/** The source runs, its RAM is its image, and a new migrate to a real destination completes. */
async function assertReusable(t: TestContext, src: Peer, image: string, dir: string): Promise<void> {
  await waitRunstate(src.qmp, 'running');
  const dump = join(dir, 'after.dump');
  await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: dump });
  assert.ok(readFileSync(dump).equals(readFileSync(image)), 'source RAM changed');
  writeFileSync(join(dir, 'dst.img'), '');
  const dst = (await startPeer(t, 'qmigrate', dir, 'dst', join(dir, 'dst.img'), MiB, [
    '-incoming',
    'defer',
  ]))!;
  const addr = { transport: 'socket' as const, type: 'unix' as const, path: join(dir, 'again.sock') };
  await dst.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr }] });
  await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr }] });
  assert.equal((await waitMigration(src.qmp)).status, 'completed');
}

for (const kind of ['qmigrate', '10.0'] as const) {
  test(`${kind}: migrate_cancel while the tcp connect is pending ends it at once`, async (t) => {
    const dir = tmp(t);
    const s = await source(t, kind, dir);
    if (!s) return;
    const hole = await startBlackhole(t, 'tcp');
    const addr = { transport: 'socket', type: 'inet', host: '127.0.0.1', port: String(hole.port) } as const;
    const took = await cancelDuringSetup(s.src, addr);
    assert.ok(took < PROMPT_MS, `cancel took ${took} ms`);
    await waitRunstate(s.src.qmp, 'running');
    if (kind === 'qmigrate') await assertReusable(t, s.src, s.image, dir);
  });

  test(`${kind}: migrate_cancel while waiting for a full unix backlog ends it at once`, async (t) => {
    const dir = tmp(t);
    const s = await source(t, kind, dir);
    if (!s) return;
    const hole = await startBlackhole(t, 'unix', { path: join(dir, 'full.sock') });
    const addr = { transport: 'socket', type: 'unix', path: hole.path } as const;
    const took = await cancelDuringSetup(s.src, addr);
    assert.ok(took < PROMPT_MS, `cancel took ${took} ms`);
    await waitRunstate(s.src.qmp, 'running');
    if (kind === 'qmigrate') await assertReusable(t, s.src, s.image, dir);
  });
}

test('qmigrate: migrate_cancel while a multifd channel connect is pending ends it at once', async (t) => {
  const dir = tmp(t);
  const { src, image } = (await source(t, 'qmigrate', dir))!;
  // The listener's queue takes two connections (main and channel 1); channel 2 waits.
  const hole = await startBlackhole(t, 'tcp', { fill: 0 });
  await src.qmp.migrateSetParameters({ 'multifd-channels': 2 });
  const addr = { transport: 'socket', type: 'inet', host: '127.0.0.1', port: String(hole.port) } as const;
  const took = await cancelDuringSetup(src, addr, ['multifd']);
  assert.ok(took < PROMPT_MS, `cancel took ${took} ms`);
  await src.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: false }] });
  await assertReusable(t, src, image, dir);
});

// QEMU 10.0 does not stop the child: its migration thread stays blocked writing to the pipe
// and the state stays `cancelling` for as long as the child lives. qmigrate kills the child.
for (const kind of ['qmigrate', '10.0'] as const) {
  test(`${kind}: migrate_cancel while the exec child does not read`, async (t) => {
    const dir = tmp(t);
    const s = await source(t, kind, dir);
    if (!s) return;
    // A child that never reads its standard input: the stream stops at the pipe's capacity.
    // It writes its pid, so that it is killed with the test whatever became of its parent.
    const pidFile = join(dir, 'child.pid');
    t.after(() => {
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
      } catch {}
    });
    const addr = {
      transport: 'exec' as const,
      args: ['/bin/sh', '-c', `echo $$ > ${pidFile}; exec sleep 600`],
    };
    await s.src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr }] });
    await sleep(600);
    assert.notEqual((await s.src.qmp.queryMigrate()).status, 'completed');
    const t0 = Date.now();
    await s.src.qmp.migrateCancel();
    if (kind === '10.0') {
      await sleep(PROMPT_MS);
      assert.equal((await s.src.qmp.queryMigrate()).status, 'cancelling', 'QEMU 10.0 hangs here');
      return;
    }
    const info = await waitMigration(s.src.qmp, 30_000);
    const took = Date.now() - t0;
    assert.equal(info.status, 'cancelled');
    assert.ok(took < PROMPT_MS, `cancel took ${took} ms`);
    await assertReusable(t, s.src, s.image, dir);
  });
}
