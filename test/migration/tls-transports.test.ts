// TLS on the transports that are not sockets. QEMU 10.0 runs its handshake on whatever the
// channel is: over a file it fails with an I/O error of the handshake (checked below), over
// exec it waits for the command to answer, for ever (its monitor with it). qmigrate looks the
// credentials up first (their errors are QEMU's), then refuses with the reason; nothing of
// the stream is written or loaded. vsock: the connect error comes first, as in QEMU.
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { makePki, pkiRoot } from '../helpers/tls-certs.js';
import { finished, sharedGuest, startVm, tmpDir, waitInfo } from './options-peers.js';

const notOver = (kind: string, why: string) =>
  `TLS ('tls-creds') is not possible over ${kind}: ${why}; use a tcp or unix socket`;
const FILE = notOver('file', 'a file cannot answer a TLS handshake');
const EXEC = notOver('exec', "qmigrate does not read an exec command's output, which a TLS handshake needs");

test('TLS over file, exec and vsock: qmigrate source and destination refuse, saying why', async (t) => {
  const dir = tmpDir(t);
  const pki = makePki(pkiRoot(t));
  const creds = (ep: string) => [
    '-object',
    `tls-creds-x509,id=tls0,dir=${ep === 'client' ? pki.client : pki.server},endpoint=${ep}`,
  ];
  const src = (await startVm(t, 'qmigrate', [...sharedGuest(dir), ...creds('client')], dir))!;
  await src.ok('migrate-set-parameters', { 'tls-creds': 'tls0' });
  const file = join(dir, 'out.mig');
  for (const [uri, desc] of [
    [`file:${file}`, FILE],
    ['exec:cat > /dev/null', EXEC],
    ['vsock:3:1234', 'socket family AF_VSOCK unsupported'],
  ] as const) {
    assert.deepEqual(await src.x('migrate', { uri }), { return: {} });
    assert.deepEqual(await waitInfo(src, finished), { status: 'failed', 'error-desc': desc }, uri);
    assert.deepEqual(await src.ok('query-status'), { status: 'running', running: true });
  }
  assert.ok(!existsSync(file) || statSync(file).size === 0, 'nothing written to the file');

  // The credentials' own errors come first, with QEMU's texts.
  await src.ok('migrate-set-parameters', { 'tls-creds': 'nope' });
  await src.ok('migrate', { uri: `file:${file}` });
  assert.equal((await waitInfo(src, finished))['error-desc'], "No TLS credentials with id 'nope'");

  for (const [uri, desc] of [
    [`file:${file}`, FILE],
    ['exec:cat /dev/zero', EXEC],
  ] as const) {
    const dst = (await startVm(
      t,
      'qmigrate',
      [...sharedGuest(dir, 'd.img'), '-incoming', 'defer', ...creds('server')],
      dir,
    ))!;
    await dst.ok('migrate-set-parameters', { 'tls-creds': 'tls0' });
    await dst.ok('migrate-incoming', { uri, 'exit-on-error': false });
    const info = await waitInfo(dst, (i) => i.status === 'failed');
    assert.equal(info['error-desc'], desc, uri);
    assert.deepEqual(await dst.ok('query-status'), { status: 'inmigrate', running: false });
  }
});

test('QEMU 10.0 runs its TLS handshake over a file and fails on it', async (t) => {
  const dir = tmpDir(t);
  const pki = makePki(pkiRoot(t));
  const qemu = await startVm(
    t,
    '10.0',
    [...sharedGuest(dir), '-object', `tls-creds-x509,id=tls0,dir=${pki.client},endpoint=client`],
    dir,
  );
  if (!qemu) return;
  await qemu.ok('migrate-set-parameters', { 'tls-creds': 'tls0', 'tls-hostname': 'localhost' });
  await qemu.ok('migrate', { uri: `file:${join(dir, 'q.mig')}` });
  assert.deepEqual(await waitInfo(qemu, finished), {
    status: 'failed',
    'error-desc':
      'TLS handshake failed: Error in the pull function.: Unable to read from file: Bad file descriptor',
  });
});
