// The files of a credentials dir that are not what they should be: DH parameters that are a
// directory or garbage, PSK keys that are not hex, a dir given as "" or with a trailing
// slash (QEMU writes `dir/file` as is) are compared with QEMU 10.0 reply by reply; a FIFO or a
// huge file (QEMU 10.0 waits on a FIFO for ever) is refused at once while the monitor keeps
// answering; a PSK server never takes a prefix of a malformed key as the key.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import * as tls from 'node:tls';
import { loadPskCreds } from '../../src/migration/tls/psk.js';
import type { genericError } from '../../src/qapi/errors.js';
import { Vm } from '../../src/vm/vm.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';
import { makePki, pkiRoot } from '../helpers/tls-certs.js';

async function qmigrateReply(vm: Vm, args: Record<string, unknown>): Promise<unknown> {
  try {
    return { return: await vm.execute('object-add', args) };
  } catch (e) {
    return { error: (e as ReturnType<typeof genericError>).toQmp() };
  }
}

/** A copy of `from` as `root/name`, changed by `change`. */
function variant(root: string, name: string, from: string, change: (dir: string) => void): string {
  const dir = join(root, name);
  cpSync(from, dir, { recursive: true });
  change(dir);
  return dir;
}

function pskDir(root: string, name: string, text: string): string {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'keys.psk'), text);
  return dir;
}

test('odd files of a credentials dir: object-add answers as QEMU 10.0', async (t: TestContext) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const root = pkiRoot(t);
  const pki = makePki(root);
  const dh = (text: string) => (d: string) => writeFileSync(join(d, 'dh-params.pem'), text);
  const x509 = (id: string, dir: string, endpoint = 'server') => ({
    'qom-type': 'tls-creds-x509',
    id,
    dir,
    endpoint,
  });
  const psk = (id: string, dir: string, endpoint = 'client') => ({
    'qom-type': 'tls-creds-psk',
    id,
    dir,
    endpoint,
  });
  const dhDir = variant(root, 'dh-dir', pki.server, (d) => mkdirSync(join(d, 'dh-params.pem')));
  const cases: Record<string, unknown>[] = [
    x509('dh-is-dir', dhDir),
    x509('dh-garbage', variant(root, 'dh-garbage', pki.server, dh('garbage\n'))),
    x509(
      'dh-bad-base64',
      variant(
        root,
        'dh-b64',
        pki.server,
        dh('-----BEGIN DH PARAMETERS-----\n*!*\n-----END DH PARAMETERS-----\n'),
      ),
    ),
    x509(
      'dh-not-der',
      variant(
        root,
        'dh-der',
        pki.server,
        dh('-----BEGIN DH PARAMETERS-----\nAAAA\n-----END DH PARAMETERS-----\n'),
      ),
    ),
    psk('psk-dh-is-dir', pskDir(root, 'psk-dh', 'qemu:abcd\n'), 'server'),
    x509('empty-dir', ''),
    x509('slash', `${pki.client}/`),
    psk('psk-odd', pskDir(root, 'psk-odd', 'qemu:abc\n')),
    psk('psk-not-hex', pskDir(root, 'psk-nothex', 'qemu:zz11\n')),
    psk('psk-empty', pskDir(root, 'psk-empty', 'qemu:\n')),
    psk('psk-crlf', pskDir(root, 'psk-crlf', 'qemu:abcd\r\n')),
  ];
  mkdirSync(join(root, 'psk-dh', 'dh-params.pem'));
  const q = await startQemu(bin);
  t.after(() => q.stop());
  const vm = new Vm();
  t.after(() => vm.close());
  for (const args of cases) {
    const theirs = await q.qmp.execute('object-add', args);
    const ours = await qmigrateReply(vm, args);
    assert.deepEqual(ours, theirs, String(args.id));
  }
  // Valid DH parameters (RFC 7919's 2048-bit group, in PKCS#3 PEM) are taken.
  const good = variant(root, 'dh-good', pki.server, (d) =>
    execFileSync(
      'openssl',
      [
        'genpkey',
        '-genparam',
        '-algorithm',
        'DH',
        '-pkeyopt',
        'dh_param:ffdhe2048',
        '-out',
        join(d, 'dh-params.pem'),
      ],
      { stdio: 'ignore' },
    ),
  );
  const args = x509('dh-good', good);
  assert.deepEqual(await qmigrateReply(vm, args), await q.qmp.execute('object-add', args));
  assert.deepEqual(await qmigrateReply(vm, args), {
    error: {
      class: 'GenericError',
      desc: "attempt to add duplicate property 'dh-good' to object (type 'container')",
    },
  });
});

test('a FIFO or a huge file in a credentials dir is refused at once; the monitor goes on', async (t) => {
  const root = pkiRoot(t);
  const pki = makePki(root);
  const fifo = (file: string) => (d: string) => {
    rmSync(join(d, file), { force: true });
    execFileSync('mkfifo', [join(d, file)]);
  };
  const vm = new Vm();
  t.after(() => vm.close());
  const cases: [Record<string, unknown>, string][] = [
    [
      {
        'qom-type': 'tls-creds-x509',
        id: 'f1',
        endpoint: 'server',
        dir: variant(root, 'f1', pki.server, fifo('ca-cert.pem')),
      },
      `Cannot load CA cert list ${root}/f1/ca-cert.pem: Error reading file “${root}/f1/ca-cert.pem”: Not a regular file`,
    ],
    [
      {
        'qom-type': 'tls-creds-x509',
        id: 'f2',
        endpoint: 'server',
        dir: variant(root, 'f2', pki.server, fifo('server-key.pem')),
      },
      `Cannot load certificate '${root}/f2/server-cert.pem' & key '${root}/f2/server-key.pem': Error while reading file.`,
    ],
    [
      {
        'qom-type': 'tls-creds-x509',
        id: 'f3',
        endpoint: 'server',
        dir: variant(root, 'f3', pki.server, fifo('dh-params.pem')),
      },
      `Error reading file “${root}/f3/dh-params.pem”: Not a regular file`,
    ],
    [
      { 'qom-type': 'tls-creds-psk', id: 'f4', dir: variant(root, 'f4', pki.server, fifo('keys.psk')) },
      `Cannot read PSK file ${root}/f4/keys.psk: Failed to open file “${root}/f4/keys.psk”: Not a regular file`,
    ],
    [
      {
        'qom-type': 'tls-creds-x509',
        id: 'f5',
        endpoint: 'server',
        dir: variant(root, 'f5', pki.server, (d) => {
          writeFileSync(join(d, 'ca-crl.pem'), '');
          truncateSync(join(d, 'ca-crl.pem'), 1 << 30);
        }),
      },
      `Cannot load CRL '${root}/f5/ca-crl.pem': Error reading file “${root}/f5/ca-crl.pem”: File is larger than 16 MiB (1073741824 bytes)`,
    ],
  ];
  for (const [args, desc] of cases) {
    const t0 = performance.now();
    assert.deepEqual(
      await qmigrateReply(vm, args),
      { error: { class: 'GenericError', desc } },
      String(args.id),
    );
    assert.ok(performance.now() - t0 < 2000, `${args.id} answered within 2 s`);
    assert.deepEqual(await vm.execute('query-status'), { status: 'running', running: true });
  }
});

/** Whether a TLS 1.2 PSK client with `key` completes a handshake with a server of `creds`' options. */
async function pskHandshake(serverOpts: tls.TlsOptions, key: Buffer): Promise<boolean> {
  const server = tls.createServer({ ...serverOpts, maxVersion: 'TLSv1.2' }, (s) => s.end());
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  try {
    return await new Promise<boolean>((res) => {
      const c = tls.connect({
        host: '127.0.0.1',
        port,
        maxVersion: 'TLSv1.2',
        ciphers: serverOpts.ciphers,
        pskCallback: () => ({ identity: 'qemu', psk: key }),
        checkServerIdentity: () => undefined,
      });
      c.once('secureConnect', () => {
        c.destroy();
        res(true);
      });
      c.once('error', () => res(false));
    });
  } finally {
    server.close();
  }
}

test('a PSK server never takes a malformed key in keys.psk for its valid prefix', async (t) => {
  const root = pkiRoot(t);
  const dir = pskDir(root, 'odd', 'qemu:abc\n');
  const creds = loadPskCreds({ id: 'p', dir, endpoint: 'server' });
  const opts = creds.tlsOptions as tls.TlsOptions;
  // Node's hex decoder reads 'abc' as the one byte 0xab: that key must not get in.
  assert.equal(await pskHandshake(opts, Buffer.from([0xab])), false);
  writeFileSync(join(dir, 'keys.psk'), 'qemu:abcd\n');
  assert.equal(await pskHandshake(opts, Buffer.from([0xab, 0xcd])), true);
});
