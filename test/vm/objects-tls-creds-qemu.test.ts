// tls-creds-x509 and tls-creds-psk objects: each way of failing at creation (missing dir or
// file, a file that cannot be read, garbage PEM, expired or not yet valid certificates, a
// critical purpose for the other end, a key of another certificate, a certificate of another
// CA) is run through object-add on a real QEMU 10.0 and on a qmigrate VM; the replies must be
// equal. Then object-add / object-del / duplicate ids / unknown types, and `-object` on the
// command line, against QEMU 10.0 the same way.
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import type { genericError } from '../../src/qapi/errors.js';
import { Vm } from '../../src/vm/vm.js';
import { qemuStderr, requireQemu, startQemu } from '../helpers/qemu.js';
import { runQmigrate } from '../helpers/qmigrate.js';
import {
  EXPIRED,
  makeCa,
  makeCredsDir,
  makeLeaf,
  makePki,
  pkiRoot,
  type TestCa,
} from '../helpers/tls-certs.js';

/** A leaf whose extended key usage is critical and `purpose` only (openssl x509 -req). */
function criticalPurposeDir(ca: TestCa, dir: string, endpoint: 'server' | 'client', purpose: string): string {
  mkdirSync(dir, { recursive: true });
  copyFileSync(ca.cert, join(dir, 'ca-cert.pem'));
  makeLeaf(ca, dir, endpoint, { subject: '/CN=x', usage: endpoint, purpose, criticalPurpose: true });
  return dir;
}

/** The credential directories of every case, under `root`. */
function cases(root: string): { name: string; args: Record<string, unknown> }[] {
  const pki = makePki(root);
  const variant = (name: string, from: string, change: (dir: string) => void) => {
    const dir = join(root, name);
    cpSync(from, dir, { recursive: true });
    change(dir);
    return dir;
  };
  const replace = (file: string, text: string) => (dir: string) => writeFileSync(join(dir, file), text);
  const remove = (file: string) => (dir: string) => rmSync(join(dir, file));
  const asDir = (file: string) => (dir: string) => {
    rmSync(join(dir, file));
    mkdirSync(join(dir, file));
  };
  const other = makeCa(root, 'other');
  const x509 = (id: string, dir: string, endpoint: string, extra: Record<string, unknown> = {}) => ({
    name: id,
    args: { 'qom-type': 'tls-creds-x509', id, dir, endpoint, ...extra },
  });
  return [
    x509('ok-server', pki.server, 'server'),
    x509('ok-client', pki.client, 'client'),
    x509('ok-both-as-client', pki.both, 'client'),
    x509('no-dir', join(root, 'nonexistent'), 'server'),
    x509('no-ca', variant('no-ca', pki.server, remove('ca-cert.pem')), 'server'),
    x509('no-server-cert', variant('no-server-cert', pki.server, remove('server-cert.pem')), 'server'),
    x509('no-server-key', variant('no-server-key', pki.server, remove('server-key.pem')), 'server'),
    x509(
      'client-without-cert',
      variant('client-without-cert', pki.client, remove('client-cert.pem')),
      'client',
    ),
    x509('no-ca-verify-off', variant('no-ca-verify-off', pki.server, remove('ca-cert.pem')), 'server', {
      'verify-peer': false,
    }),
    x509('cert-is-dir', variant('cert-is-dir', pki.server, asDir('server-cert.pem')), 'server'),
    x509('key-is-dir', variant('key-is-dir', pki.server, asDir('server-key.pem')), 'server'),
    x509('ca-is-dir', variant('ca-is-dir', pki.server, asDir('ca-cert.pem')), 'server'),
    x509(
      'garbage-cert',
      variant('garbage-cert', pki.server, replace('server-cert.pem', 'garbage\n')),
      'server',
    ),
    x509('garbage-ca', variant('garbage-ca', pki.server, replace('ca-cert.pem', 'garbage\n')), 'server'),
    x509('garbage-key', variant('garbage-key', pki.server, replace('server-key.pem', 'garbage\n')), 'server'),
    x509('expired-server', makeCredsDir(pki.ca, join(root, 'expired-server'), 'server', EXPIRED), 'server'),
    x509('expired-client', makeCredsDir(pki.ca, join(root, 'expired-client'), 'client', EXPIRED), 'client'),
    x509(
      'future-server',
      makeCredsDir(pki.ca, join(root, 'future-server'), 'server', {
        notBefore: '20990101000000Z',
        notAfter: '20991231000000Z',
      }),
      'server',
    ),
    x509(
      'client-cert-as-server',
      criticalPurposeDir(pki.ca, join(root, 'purpose-s'), 'server', 'clientAuth'),
      'server',
    ),
    x509(
      'server-cert-as-client',
      criticalPurposeDir(pki.ca, join(root, 'purpose-c'), 'client', 'serverAuth'),
      'client',
    ),
    x509(
      'key-mismatch',
      variant('key-mismatch', pki.server, (d) =>
        copyFileSync(join(pki.client, 'client-key.pem'), join(d, 'server-key.pem')),
      ),
      'server',
    ),
    x509(
      'other-ca',
      variant('other-ca', pki.server, (d) => copyFileSync(other.cert, join(d, 'ca-cert.pem'))),
      'server',
    ),
    x509('expired-no-sanity', join(root, 'expired-server'), 'server', { 'sanity-check': false }),
    x509('no-dir-property', '', 'server'),
    x509('passwordid', pki.server, 'server', { passwordid: 'sec0' }),
    {
      name: 'psk-no-file',
      args: { 'qom-type': 'tls-creds-psk', id: 'psk-no-file', dir: pki.server, endpoint: 'server' },
    },
  ].map((c) => (c.name === 'no-dir-property' ? { ...c, args: { ...c.args, dir: undefined } } : c));
}

async function qmigrateReply(vm: Vm, args: Record<string, unknown>): Promise<unknown> {
  try {
    return { return: await vm.execute('object-add', args) };
  } catch (e) {
    return { error: (e as ReturnType<typeof genericError>).toQmp() };
  }
}

test('tls-creds objects fail at creation with QEMU 10.0 texts, case by case', async (t: TestContext) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const root = pkiRoot(t);
  const list = cases(root);
  const q = await startQemu(bin);
  t.after(() => q.stop());
  const vm = new Vm();
  t.after(() => vm.close());
  for (const c of list) {
    const args = JSON.parse(JSON.stringify(c.args)) as Record<string, unknown>;
    const theirs = await q.qmp.execute('object-add', args);
    const ours = await qmigrateReply(vm, args);
    assert.deepEqual(ours, theirs, c.name);
  }
});

test('object-add and object-del: ids, duplicates, types, authz and psk objects answer as QEMU 10.0', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const root = pkiRoot(t);
  const pki = makePki(root);
  mkdirSync(join(root, 'psk'));
  writeFileSync(join(root, 'psk', 'keys.psk'), `qemu:${'ab'.repeat(32)}\nother:${'cd'.repeat(32)}\n`);
  const psk = join(root, 'psk');
  const machine = ['-machine', 'none,memory-backend=m0', '-object', 'memory-backend-ram,id=m0,size=8M'];
  const q = await startQemu(bin, [], machine);
  t.after(() => q.stop());
  const vm = new Vm({ memdevs: [{ id: 'm0' } as never] });
  t.after(() => vm.close());
  const steps: [string, Record<string, unknown>][] = [
    ['object-add', { 'qom-type': 'tls-creds-x509', id: 't0', dir: pki.server, endpoint: 'server' }],
    ['object-add', { 'qom-type': 'tls-creds-x509', id: 't0', dir: pki.server, endpoint: 'server' }],
    ['object-add', { 'qom-type': 'tls-creds-x509', id: 'm0', dir: pki.client }],
    ['object-add', { 'qom-type': 'tls-creds-x509', id: 't1', dir: pki.server, endpoint: 'server', bogus: 1 }],
    ['object-add', { 'qom-type': 'tls-creds-x509', id: 't2', dir: pki.server, endpoint: 'sideways' }],
    ['object-add', { 'qom-type': 'tls-creds-x509', id: 'bad id', dir: pki.client }],
    ['object-add', { 'qom-type': 'tls-creds-x509', dir: pki.client }],
    ['object-add', { id: 'x' }],
    ['object-add', { 'qom-type': 'no-such-type', id: 'x' }],
    ['object-add', { 'qom-type': 'authz-simple', id: 'a0', identity: 'CN=client,O=qmigrate tests' }],
    ['object-add', { 'qom-type': 'authz-simple', id: 'a1' }],
    [
      'object-add',
      {
        'qom-type': 'authz-list',
        id: 'a2',
        policy: 'deny',
        rules: [{ match: 'CN=*', policy: 'allow', format: 'glob' }],
      },
    ],
    ['object-add', { 'qom-type': 'authz-list', id: 'a3', rules: [{ match: 'CN=x' }] }],
    [
      'object-add',
      { 'qom-type': 'authz-list', id: 'a4', rules: [{ match: 'CN=x', policy: 'allow', format: 'regex' }] },
    ],
    ['object-add', { 'qom-type': 'authz-list', id: 'a5' }],
    ['object-add', { 'qom-type': 'tls-creds-psk', id: 'p0', dir: psk, endpoint: 'server' }],
    ['object-add', { 'qom-type': 'tls-creds-psk', id: 'p1', dir: psk, endpoint: 'server', username: 'qemu' }],
    ['object-add', { 'qom-type': 'tls-creds-psk', id: 'p2', dir: psk }],
    ['object-add', { 'qom-type': 'tls-creds-psk', id: 'p3', dir: psk, username: 'other' }],
    ['object-add', { 'qom-type': 'tls-creds-psk', id: 'p4', dir: psk, username: 'nobody' }],
    ['object-del', { id: 'no-such-object' }],
    ['object-del', { id: 'm0' }],
    ['object-del', { id: 't0' }],
    ['object-del', { id: 't0' }],
    ['object-del', { id: 'a0' }],
    ['object-del', { id: 'p0' }],
    ['object-add', { 'qom-type': 'tls-creds-x509', id: 't0', dir: pki.client }],
  ];
  for (const [command, args] of steps) {
    const theirs = await q.qmp.execute(command, args);
    let ours: unknown;
    try {
      ours = { return: await vm.execute(command, args) };
    } catch (e) {
      ours = { error: (e as ReturnType<typeof genericError>).toQmp() };
    }
    assert.deepEqual(ours, theirs, `${command} ${JSON.stringify(args)}`);
  }
});

test('-object on the command line: keyval and JSON forms, refusals worded as QEMU 10.0', async (t) => {
  const root = pkiRoot(t);
  const pki = makePki(root);
  const lines: string[][] = [
    ['-object', `tls-creds-x509,id=t0,dir=${pki.server},endpoint=server,bogus=1`],
    ['-object', `tls-creds-x509,id=t0,dir=${pki.server},endpoint=sideways`],
    ['-object', `tls-creds-x509,id=t0,dir=${pki.server},endpoint=server,verify-peer=maybe`],
    ['-object', `tls-creds-x509,id=t0,dir=${pki.server},endpoint=server,loaded=on`],
    ['-object', `tls-creds-x509,id=t0,dir=${join(root, 'nonexistent')},endpoint=server`],
    [
      '-object',
      `tls-creds-x509,id=t0,dir=${pki.server},endpoint=server`,
      '-object',
      `tls-creds-x509,id=t0,dir=${pki.server},endpoint=server`,
    ],
    ['-object', 'no-such-type,id=s0'],
    ['-object', 'authz-simple,id=a0'],
    ['-object', 'tls-creds-x509,id=t0'],
    ['-object', `tls-creds-x509,dir=${pki.server}`],
    ['-object', '{"qom-type":"authz-list","id":"a0","rules":[{"match":"x"}],"policy":"allow"}'],
    [
      '-object',
      '{"qom-type":"authz-list","id":"a0","rules":[{"match":"x","policy":"allow","format":"regex"}]}',
    ],
  ];
  for (const args of lines) {
    const theirs = await qemuStderr(t, args);
    if (theirs === undefined) return;
    const ours = await runQmigrate(['vm', '-machine', 'none', '-display', 'none', '-nodefaults', ...args]);
    assert.equal(ours.code, 1, args.join(' '));
    assert.equal(ours.stderr.replaceAll('qmigrate: ', ''), theirs, args.join(' '));
  }
});
