// tls-creds naming an object that does not exist (test/migration/tls-*.test.ts have the ones
// that do): QEMU 10.0 accepts the parameter and the command, then fails the
// channel once it is there, before a byte of the stream. qmigrate does the same, with the
// same text, on both sides; nothing goes out in clear text. tls-hostname and tls-authz, which
// QEMU ignores without tls-creds, are refused instead.
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { untilIncludes } from '../helpers/qemu.js';
import { finished, KINDS, sharedGuest, startVm, tmpDir, waitInfo } from './options-peers.js';

const NO_CREDS = "No TLS credentials with id 'tls0'";

/** A plain TCP listener that counts connections and bytes. */
async function listener(t: import('node:test').TestContext) {
  const seen = { connections: 0, bytes: 0 };
  const socks: Socket[] = [];
  const server = createServer((s) => {
    seen.connections++;
    socks.push(s);
    s.on('data', (d) => {
      seen.bytes += d.length;
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of socks) s.destroy();
    server.close();
  });
  return { seen, port: (server.address() as { port: number }).port };
}

for (const kind of KINDS) {
  test(`${kind} source: tls-creds fails the connected channel, no byte sent, guest running`, async (t) => {
    const dir = tmpDir(t);
    const src = await startVm(t, kind, sharedGuest(dir), dir);
    if (!src) return;
    const { seen, port } = await listener(t);
    await src.ok('migrate-set-parameters', { 'tls-creds': 'tls0' });
    assert.deepEqual(await src.x('migrate', { uri: `tcp:127.0.0.1:${port}` }), { return: {} });
    const info = await waitInfo(src, finished);
    assert.deepEqual(info, { status: 'failed', 'error-desc': NO_CREDS });
    await sleep(100);
    assert.deepEqual(seen, { connections: 1, bytes: 0 }, 'connected, then nothing sent');
    assert.deepEqual(await src.ok('query-status'), { status: 'running', running: true });

    // A file channel fails the same way, and gets no stream either.
    const file = join(dir, `${kind}.mig`);
    assert.deepEqual(await src.x('migrate', { uri: `file:${file}` }), { return: {} });
    assert.deepEqual(await waitInfo(src, finished), { status: 'failed', 'error-desc': NO_CREDS });
    assert.ok(!existsSync(file) || statSync(file).size === 0, 'nothing written to the file');
  });

  test(`${kind} source: a connect error comes before the TLS error`, async (t) => {
    const dir = tmpDir(t);
    const src = await startVm(t, kind, sharedGuest(dir), dir);
    if (!src) return;
    await src.ok('migrate-set-parameters', { 'tls-creds': 'tls0' });
    await src.ok('migrate', { uri: `unix:${join(dir, 'nobody.sock')}` });
    const info = await waitInfo(src, finished);
    assert.equal(info.status, 'failed');
    assert.match(
      String(info['error-desc']),
      /^Failed to connect to '.*nobody\.sock': No such file or directory$/,
    );
  });

  for (const exitOnError of [false, true]) {
    test(`${kind} destination, exit-on-error=${exitOnError}: fails when the channel arrives`, async (t) => {
      const dir = tmpDir(t);
      const dst = await startVm(t, kind, [...sharedGuest(dir), '-incoming', 'defer'], dir);
      if (!dst) return;
      await dst.ok('migrate-set-parameters', { 'tls-creds': 'tls0' });
      await dst.ok('migrate-incoming', { uri: 'tcp:127.0.0.1:0', 'exit-on-error': exitOnError });
      const listening = await dst.ok('query-migrate');
      assert.equal(listening.status, 'setup', 'migrate-incoming is accepted');
      const port = Number((listening['socket-address'] as { port: string }[])[0]!.port);
      const c = connect(port, '127.0.0.1');
      c.on('error', () => {});
      t.after(() => c.destroy());
      if (exitOnError) {
        const code = await Promise.race([dst.exited, sleep(15_000).then(() => 'still running')]);
        assert.equal(code, 1);
        assert.match(await untilIncludes(dst.stderr, `: ${NO_CREDS}\n`), new RegExp(`: ${NO_CREDS}\\n`));
        return;
      }
      const info = await waitInfo(dst, (i) => i.status === 'failed');
      // QEMU 10.0 reports no error-desc for an incoming failure; qmigrate says what failed.
      if (kind === 'qmigrate') assert.equal(info['error-desc'], NO_CREDS);
      else assert.equal(info['error-desc'], undefined);
      assert.deepEqual(await dst.ok('query-status'), { status: 'inmigrate', running: false });
    });
  }
}

test("QEMU 10.0 -> qmigrate, both asking for TLS: both fail with QEMU's text, nothing loaded", async (t) => {
  const dir = tmpDir(t);
  const src = await startVm(t, '10.0', sharedGuest(dir), dir);
  if (!src) return;
  const dst = (await startVm(t, 'qmigrate', [...sharedGuest(dir, 'dst.img'), '-incoming', 'defer'], dir))!;
  for (const vm of [src, dst]) await vm.ok('migrate-set-parameters', { 'tls-creds': 'tls0' });
  await dst.ok('migrate-incoming', { uri: `unix:${join(dir, 'm.sock')}`, 'exit-on-error': false });
  await src.ok('migrate', { uri: `unix:${join(dir, 'm.sock')}` });
  assert.deepEqual(await waitInfo(src, finished), { status: 'failed', 'error-desc': NO_CREDS });
  const info = await waitInfo(dst, (i) => i.status === 'failed');
  assert.equal(info['error-desc'], NO_CREDS);
});

test('tls-hostname / tls-authz without tls-creds: QEMU 10.0 ignores them, qmigrate refuses', async (t) => {
  const dir = tmpDir(t);
  for (const p of ['tls-hostname', 'tls-authz'] as const) {
    const qemu = await startVm(t, '10.0', sharedGuest(dir), dir);
    if (!qemu) return;
    await qemu.ok('migrate-set-parameters', { [p]: 'x' });
    await qemu.ok('migrate', { uri: `file:${join(dir, `${p}.mig`)}` });
    assert.equal((await waitInfo(qemu, finished)).status, 'completed', 'QEMU migrates without TLS');

    const src = (await startVm(t, 'qmigrate', sharedGuest(dir), dir))!;
    await src.ok('migrate-set-parameters', { [p]: 'x' });
    assert.deepEqual(await src.x('migrate', { uri: `file:${join(dir, `${p}-q.mig`)}` }), {
      error: {
        class: 'GenericError',
        desc: `Parameter '${p}' is set but 'tls-creds' is empty: without TLS it would be ignored`,
      },
    });
    assert.deepEqual(await src.ok('query-migrate'), {}, 'nothing started');
    const dst = (await startVm(t, 'qmigrate', [...sharedGuest(dir, 'dst.img'), '-incoming', 'defer'], dir))!;
    await dst.ok('migrate-set-parameters', { [p]: 'x' });
    // One path per round: the last round's destination still listens on its own.
    const r = await dst.x('migrate-incoming', { uri: `unix:${join(dir, `in-${p}.sock`)}` });
    assert.match(JSON.stringify(r), new RegExp(`Parameter '${p}' is set but 'tls-creds' is empty`));
    await dst.ok('migrate-set-parameters', { [p]: '' });
    await dst.ok('migrate-incoming', { uri: `unix:${join(dir, `in-${p}.sock`)}` });
  }
});
