// The node:tls options a client-side credentials object gives (what a migration source uses)
// work against QEMU 10.0's GnuTLS: tls-creds-x509 (endpoint=client) and tls-creds-psk reach a
// QEMU 10.0 QMP monitor over TLS that verifies the client, and the x509 options check the
// server's name (a wrong one fails with Node's hostname error).
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import * as tls from 'node:tls';
import { loadPskCreds } from '../../src/migration/tls/psk.js';
import type { TlsCreds } from '../../src/migration/tls/types.js';
import { loadX509Creds } from '../../src/migration/tls/x509.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';
import { makePki, pkiRoot } from '../helpers/tls-certs.js';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

/** The first line the server sends, or the error that ended the session. */
function firstLine(port: number, creds: TlsCreds, servername: string): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({
      ...(creds.tlsOptions as tls.ConnectionOptions),
      host: '127.0.0.1',
      port,
      servername,
    });
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) {
        s.destroy();
        resolve(buf.split('\n')[0]!);
      }
    });
    s.on('error', (e) => resolve(`error: ${e.message}`));
    s.on('close', () => resolve(`closed: ${buf}`));
  });
}

test("client credentials objects' node:tls options meet QEMU 10.0's TLS monitors", async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const root = pkiRoot(t);
  const pki = makePki(root);
  const psk = join(root, 'psk');
  mkdirSync(psk);
  writeFileSync(join(psk, 'keys.psk'), `migrator:${'5a'.repeat(32)}\n`);
  const [x509Port, pskPort] = [await freePort(), await freePort()];
  const q = await startQemu(bin, [
    ...['-object', `tls-creds-x509,id=t0,dir=${pki.server},endpoint=server,verify-peer=on`],
    ...['-object', `tls-creds-psk,id=p0,dir=${psk},endpoint=server`],
    ...['-qmp', `tcp:127.0.0.1:${x509Port},server=on,wait=off,tls-creds=t0`],
    ...['-qmp', `tcp:127.0.0.1:${pskPort},server=on,wait=off,tls-creds=p0`],
  ]);
  t.after(() => q.stop());
  const x509 = loadX509Creds({ id: 'c0', dir: pki.client, endpoint: 'client' });
  assert.match(await firstLine(x509Port, x509, 'localhost'), /^\{"QMP": /);
  assert.match(
    await firstLine(x509Port, x509, 'wronghost'),
    /^error: Hostname\/IP does not match certificate's altnames/,
  );
  const p = loadPskCreds({ id: 'c1', dir: psk, endpoint: 'client', username: 'migrator' });
  assert.match(await firstLine(pskPort, p, 'localhost'), /^\{"QMP": /);
});
