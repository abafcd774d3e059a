// Migration modes and the cpr channel. QEMU 10.0 refuses cpr-transfer for RAM that is not
// shared (its CPR blocker) and otherwise hands RAM over as fds on the cpr channel, which Node
// cannot; cpr-reboot stops the guest before saving it. qmigrate gives QEMU's text where QEMU
// refuses and says it does not support the rest, at migrate, with nothing started, instead of
// running plain precopy. A cpr-reboot destination loads as in mode normal, in QEMU as here.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  channels,
  emptyGuest,
  finished,
  KINDS,
  sharedGuest,
  startVm,
  tmpDir,
  unixAddr,
  waitInfo,
} from './options-peers.js';

const error = (desc: string) => ({ error: { class: 'GenericError', desc } });

/** A unix listener that counts connections. */
async function listener(t: TestContext, path: string) {
  const seen = { connections: 0 };
  const socks: Socket[] = [];
  const server = createServer((s) => {
    seen.connections++;
    socks.push(s);
    s.resume();
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.after(() => {
    for (const s of socks) s.destroy();
    server.close();
  });
  return seen;
}

const both = (dir: string) =>
  channels(['main', unixAddr(join(dir, 'main.sock'))], ['cpr', unixAddr(join(dir, 'cpr.sock'))]);

for (const kind of KINDS) {
  test(`${kind}: cpr-transfer with RAM that is not shared is refused with QEMU's CPR blocker`, async (t) => {
    const dir = tmpDir(t);
    const src = await startVm(t, kind, ['-machine', 'none', '-m', '16M'], dir);
    if (!src) return;
    await src.ok('migrate-set-parameters', { mode: 'cpr-transfer' });
    assert.deepEqual(
      await src.x('migrate', both(dir)),
      error(
        'Memory region ram is not compatible with CPR. share=on is required for memory-backend objects, and aux-ram-share=on is required.',
      ),
    );
    assert.equal((await src.ok('query-migrate')).status, undefined, 'no migration started');
    assert.deepEqual(await src.ok('query-status'), { status: 'running', running: true });
  });

  test(`${kind}: a cpr channel that is not a unix socket gets QEMU's text`, async (t) => {
    const dir = tmpDir(t);
    const src = await startVm(t, kind, sharedGuest(dir), dir);
    if (!src) return;
    await src.ok('migrate-set-parameters', { mode: 'cpr-transfer' });
    const r = await src.x(
      'migrate',
      channels(
        ['main', unixAddr(join(dir, 'main.sock'))],
        ['cpr', { transport: 'exec', args: ['/bin/true'] }],
      ),
    );
    assert.deepEqual(r, error('bad cpr channel address; must be unix'));
  });
}

test('cpr-transfer with shared RAM: QEMU 10.0 opens the cpr channel, qmigrate refuses and opens nothing', async (t) => {
  const dir = tmpDir(t);
  const qemu = await startVm(t, '10.0', sharedGuest(dir), dir);
  if (!qemu) return;
  const main = await listener(t, join(dir, 'main.sock'));
  const cpr = await listener(t, join(dir, 'cpr.sock'));
  await qemu.ok('migrate-set-parameters', { mode: 'cpr-transfer' });
  await qemu.ok('migrate', both(dir));
  // QEMU connects the cpr channel inside `migrate`; this process may see its reply before the
  // accepted connection.
  for (let i = 0; i < 100 && cpr.connections === 0; i++) await sleep(10);
  assert.equal(cpr.connections, 1, 'QEMU sent its CPR state on the cpr channel');
  await waitInfo(qemu, finished);
  assert.equal(main.connections, 1, 'then the main stream');

  const src = (await startVm(t, 'qmigrate', sharedGuest(dir, 'q.img'), dir))!;
  await src.ok('migrate-set-parameters', { mode: 'cpr-transfer' });
  assert.deepEqual(
    await src.x('migrate', both(dir)),
    error(
      "Migration mode 'cpr-transfer' is not supported by qmigrate: it hands guest RAM over as file descriptors on the cpr channel, which Node cannot send",
    ),
  );
  assert.deepEqual(await src.ok('query-migrate'), {});
  assert.deepEqual(await src.ok('query-status'), { status: 'running', running: true });
  assert.equal(cpr.connections, 1, 'qmigrate did not connect the cpr channel');
  assert.equal(main.connections, 1, 'nor the main one');

  const dst = (await startVm(t, 'qmigrate', [...sharedGuest(dir, 'd.img'), '-incoming', 'defer'], dir))!;
  await dst.ok('migrate-set-parameters', { mode: 'cpr-transfer' });
  assert.deepEqual(
    await dst.x('migrate-incoming', { uri: `unix:${join(dir, 'in.sock')}` }),
    error(
      "Migration mode 'cpr-transfer' is not supported by qmigrate: it takes guest RAM over as file descriptors on the cpr channel, which Node cannot receive",
    ),
  );
});

test('cpr-reboot: QEMU 10.0 stops the guest and saves it; a qmigrate source refuses, guest running', async (t) => {
  const dir = tmpDir(t);
  const qemu = await startVm(t, '10.0', sharedGuest(dir), dir);
  if (!qemu) return;
  await qemu.ok('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
  await qemu.ok('migrate-set-parameters', { mode: 'cpr-reboot' });
  await qemu.ok('migrate', { uri: `file:${join(dir, 'reboot.mig')}` });
  const info = await waitInfo(qemu, finished);
  assert.equal(info.status, 'completed');
  assert.equal(
    (info.ram as Record<string, number>)['precopy-bytes'],
    0,
    'all of it sent with the guest stopped',
  );
  assert.equal((await qemu.ok('query-status')).status, 'postmigrate');

  const src = (await startVm(t, 'qmigrate', sharedGuest(dir, 'q.img'), dir))!;
  await src.ok('migrate-set-parameters', { mode: 'cpr-reboot' });
  assert.deepEqual(
    await src.x('migrate', { uri: `file:${join(dir, 'q.mig')}` }),
    error(
      "Migration mode 'cpr-reboot' is not supported by qmigrate: the source would migrate the guest live instead of stopping it first",
    ),
  );
  assert.deepEqual(await src.ok('query-migrate'), {});
  assert.deepEqual(await src.ok('query-status'), { status: 'running', running: true });
});

test("cpr-reboot destination: QEMU 10.0's cpr-reboot stream loads on both, as in mode normal", async (t) => {
  const dir = tmpDir(t);
  const qemu = await startVm(t, '10.0', sharedGuest(dir), dir);
  if (!qemu) return;
  await qemu.ok('migrate-set-parameters', { mode: 'cpr-reboot' });
  await qemu.ok('migrate', { uri: `file:${join(dir, 'reboot.mig')}` });
  assert.equal((await waitInfo(qemu, finished)).status, 'completed');
  for (const kind of KINDS) {
    const dst = (await startVm(t, kind, [...emptyGuest(dir, `${kind}-dst.img`), '-incoming', 'defer'], dir))!;
    await dst.ok('migrate-set-parameters', { mode: 'cpr-reboot' });
    await dst.ok('migrate-incoming', { uri: `file:${join(dir, 'reboot.mig')}`, 'exit-on-error': false });
    assert.equal(
      (await waitInfo(dst, (i) => i.status === 'completed' || i.status === 'failed')).status,
      'completed',
    );
    assert.equal((await dst.ok('query-status')).status, 'running', `${kind}: the guest runs on`);
    await dst.ok('pmemsave', { val: 0, size: 16 << 20, filename: join(dir, `${kind}.dump`) });
    assert.ok(readFileSync(join(dir, `${kind}.dump`)).equals(readFileSync(join(dir, 'img'))), `${kind}: RAM`);
  }
});

test('a cpr channel in mode normal: QEMU 10.0 never opens it; qmigrate refuses it', async (t) => {
  const dir = tmpDir(t);
  const qemu = await startVm(t, '10.0', sharedGuest(dir), dir);
  if (!qemu) return;
  const dst = (await startVm(t, 'qmigrate', [...sharedGuest(dir, 'dst.img'), '-incoming', 'defer'], dir))!;
  await dst.ok('migrate-incoming', { uri: `unix:${join(dir, 'main.sock')}` });
  const cpr = await listener(t, join(dir, 'cpr.sock'));
  await qemu.ok('migrate', both(dir));
  assert.equal((await waitInfo(qemu, finished)).status, 'completed');
  assert.equal(cpr.connections, 0, 'QEMU ignored the cpr channel');

  const src = (await startVm(t, 'qmigrate', sharedGuest(dir, 'q.img'), dir))!;
  assert.deepEqual(
    await src.x('migrate', both(dir)),
    error("A 'cpr' channel is used only in migration mode 'cpr-transfer' (the mode is 'normal')"),
  );
  assert.deepEqual(await src.ok('query-migrate'), {});
});
