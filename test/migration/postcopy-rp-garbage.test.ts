// A return path that says something wrong after the switchover (a misaligned page request, a
// message of an unknown type) must not cost the guest its pages: the source holds the only
// copy of those not yet sent, so it pauses as on a broken link, keeps the error as error-desc,
// and a recovery finishes the migration with RAM equal. QEMU 10.0 as source, observed here
// through the same injection, records the same error text and ends in postcopy-paused too
// once the link goes (migration/migration.c source_return_path_thread, postcopy_pause).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitMigration, waitMigrationStatus } from '../helpers/peers.js';
import { assertPostcopyRam, MiB, postcopyPair, writingPair } from '../helpers/postcopy.js';

/** A return-path message: be16 type, be16 length, payload. */
function rpMessage(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(payload.length, 2);
  return Buffer.concat([h, payload]);
}

/** REQ_PAGES (4) for 4096 bytes at byte 123 of the last block: misaligned. */
const MISALIGNED = rpMessage(4, Buffer.from('000000000000007b00001000', 'hex'));
const UNKNOWN = rpMessage(200, Buffer.alloc(4));

/**
 * Forwards `listen` to `target`; once the source has sent `after` bytes, writes `junk` to it
 * as if from the destination and forwards nothing more from the destination.
 */
async function injector(
  t: TestContext,
  listen: string,
  target: string,
  after: number,
  junk: Buffer,
): Promise<{ injected: () => boolean; close: () => void }> {
  let sent = 0;
  let injected = false;
  const socks: Socket[] = [];
  const server: Server = createServer((c) => {
    const u = connect(target);
    socks.push(c, u);
    c.on('error', () => {});
    u.on('error', () => {});
    c.on('data', (d: Buffer) => {
      sent += d.length;
      u.write(d);
      if (!injected && sent > after) {
        injected = true;
        c.write(junk);
      }
    });
    u.on('data', (d: Buffer) => {
      if (!injected) c.write(d);
    });
    c.on('close', () => u.destroy());
    u.on('close', () => c.destroy());
  });
  await new Promise<void>((r) => server.listen(listen, () => r()));
  const close = () => {
    for (const s of socks) s.destroy();
    server.close();
  };
  t.after(close);
  return { injected: () => injected, close };
}

async function until(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

for (const [name, junk, text] of [
  [
    'a misaligned page request',
    MISALIGNED,
    'MIG_RP_MSG_REQ_PAGES: Misaligned page request, start:7b len: 4096',
  ],
  ['a message of an unknown type', UNKNOWN, 'Received invalid message 0x00c8 length 0x0004'],
] as const) {
  test(`qmigrate source in postcopy, ${name} on the return path: postcopy-paused, then recovered`, async (t) => {
    const { dir, src, dst } = await writingPair(t, 'qmigrate-pc-rpjunk-');
    const on = [{ capability: 'postcopy-ram' as const, state: true }];
    await src.qmp.migrateSetCapabilities({ capabilities: on });
    await dst.qmp.migrateSetCapabilities({ capabilities: on });
    const target = join(dir, 'm.sock');
    await dst.qmp.migrateIncoming({ uri: `unix:${target}` });
    await src.qmp.migrateSetParameters({ 'max-bandwidth': 4 << 20, 'max-postcopy-bandwidth': 4 << 20 });
    // Past the switchover (about 1 MiB of precopy at 4 MiB/s before it), well before the end.
    const mitm = await injector(t, join(dir, 'mitm.sock'), target, 6 << 20, junk);
    await src.qmp.migrate({ uri: `unix:${join(dir, 'mitm.sock')}` });
    await sleep(200);
    await src.qmp.migrateStartPostcopy();
    await until(mitm.injected, 20_000);
    await waitMigrationStatus(src.qmp, 'postcopy-paused', 10_000);
    assert.equal((await src.qmp.queryMigrate())['error-desc'], text);
    assert.equal((await src.qmp.queryStatus()).status, 'finish-migrate', 'the source guest stays stopped');
    mitm.close();
    await waitMigrationStatus(dst.qmp, 'postcopy-paused', 10_000);
    const r = `unix:${join(dir, 'r.sock')}`;
    await dst.qmp.migrateRecover({ uri: r });
    await src.qmp.migrate({ uri: r, resume: true });
    const info = await waitMigration(src.qmp, 60_000);
    assert.equal(info.status, 'completed', JSON.stringify(info));
    assert.equal((await waitMigration(dst.qmp, 20_000)).status, 'completed');
    await dst.qmp.stop();
    await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 's.dump') });
    await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'd.dump') });
    assertPostcopyRam(readFileSync(join(dir, 'd.dump')), readFileSync(join(dir, 's.dump')));
  });
}

test('QEMU 10.0 source in postcopy, a misaligned page request: same error text, postcopy-paused once the link goes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-pc-rpjunk-q-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pair = await postcopyPair(t, dir);
  if (!pair) return;
  const { src, addr } = pair;
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 4 << 20, 'max-postcopy-bandwidth': 4 << 20 });
  const mitm = await injector(t, join(dir, 'mitm.sock'), addr.path, 3 << 20, MISALIGNED);
  await src.qmp.migrate({ uri: `unix:${join(dir, 'mitm.sock')}` });
  await src.qmp.migrateStartPostcopy();
  await until(mitm.injected, 20_000);
  await sleep(500);
  const info = await src.qmp.queryMigrate();
  assert.equal(info['error-desc'], 'MIG_RP_MSG_REQ_PAGES: Misaligned page request, start:7b len: 4096');
  assert.notEqual(info.status, 'failed');
  mitm.close();
  await waitMigrationStatus(src.qmp, 'postcopy-paused', 10_000);
});
