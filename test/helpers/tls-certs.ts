// Certificates made at test time with Debian's openssl, laid out as QEMU's tls-creds-x509 reads
// a `dir=` (crypto/tlscredsx509.h: ca-cert.pem, server-cert.pem, server-key.pem,
// client-cert.pem, client-key.pem). Nothing here is committed: every key is new per test run.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/** A certificate authority: its key and self-signed certificate (PEM files). */
export interface TestCa {
  readonly name: string;
  readonly key: string;
  readonly cert: string;
}

/** One leaf certificate's wishes. Dates are openssl `ca` form, e.g. `20200101000000Z`. */
export interface LeafOptions {
  /** Subject, as openssl's `-subj` (`/CN=localhost/O=qmigrate`; kept in this order). */
  readonly subject: string;
  /** Subject alternative names, e.g. `['DNS:localhost', 'IP:127.0.0.1']`. */
  readonly san?: readonly string[];
  readonly usage: 'server' | 'client';
  /** extendedKeyUsage instead of the usage's own (serverAuth or clientAuth), e.g. `emailProtection`. */
  readonly purpose?: string;
  /** Mark extendedKeyUsage critical (QEMU refuses a wrong purpose only then). */
  readonly criticalPurpose?: boolean;
  readonly notBefore?: string;
  readonly notAfter?: string;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw new Error(`openssl ${args[0]} failed: ${(e as { stderr?: Buffer }).stderr ?? e}`);
  }
}

/** A scratch directory removed after the test. */
export function pkiRoot(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-pki-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A new CA (RSA 2048, CA:TRUE, keyCertSign) named `name`, in `root/name/`. */
export function makeCa(root: string, name: string): TestCa {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'ca-key.pem',
      '-out',
      'ca-cert.pem',
      '-days',
      '30',
      '-subj',
      `/O=qmigrate tests/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  return { name, key: join(dir, 'ca-key.pem'), cert: join(dir, 'ca-cert.pem') };
}

/**
 * Signs a new leaf certificate with `ca`; writes `prefix-cert.pem` and `prefix-key.pem` into
 * `dir`. Server certificates carry serverAuth, client ones clientAuth, as QEMU's
 * tls-creds-x509 checks (crypto/tlscredsx509.c).
 */
export function makeLeaf(ca: TestCa, dir: string, prefix: string, o: LeafOptions): void {
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(dir, '.leaf-'));
  try {
    writeFileSync(join(work, 'index.txt'), '');
    writeFileSync(join(work, 'serial'), `${randomBytes(8).toString('hex')}\n`);
    const ext = [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      `extendedKeyUsage=${o.criticalPurpose ? 'critical,' : ''}${o.purpose ?? (o.usage === 'server' ? 'serverAuth' : 'clientAuth')}`,
      ...(o.san?.length ? [`subjectAltName=${o.san.join(',')}`] : []),
    ];
    writeFileSync(
      join(work, 'ca.cnf'),
      [
        '[ca]',
        'default_ca = test',
        '[test]',
        `dir = ${work}`,
        'database = $dir/index.txt',
        'serial = $dir/serial',
        'new_certs_dir = $dir',
        'default_md = sha256',
        'policy = any',
        'unique_subject = no',
        'copy_extensions = none',
        'x509_extensions = leaf',
        '[any]',
        'commonName = optional',
        'organizationName = optional',
        'countryName = optional',
        'localityName = optional',
        'stateOrProvinceName = optional',
        'organizationalUnitName = optional',
        'domainComponent = optional',
        'userId = optional',
        'emailAddress = optional',
        '[leaf]',
        ...ext,
        '',
      ].join('\n'),
    );
    const key = join(dir, `${prefix}-key.pem`);
    openssl(
      ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', 'req.pem', '-subj', o.subject],
      work,
    );
    openssl(
      [
        'ca',
        '-batch',
        '-notext',
        '-preserveDN',
        '-config',
        'ca.cnf',
        '-cert',
        ca.cert,
        '-keyfile',
        ca.key,
        '-in',
        'req.pem',
        '-out',
        join(dir, `${prefix}-cert.pem`),
        '-startdate',
        o.notBefore ?? yesterday(),
        '-enddate',
        o.notAfter ?? inDays(30),
      ],
      work,
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function stamp(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}
function yesterday(): string {
  return stamp(new Date(Date.now() - 86_400_000));
}
function inDays(n: number): string {
  return stamp(new Date(Date.now() + n * 86_400_000));
}

/** A certificate that expired last year (openssl `ca` dates). */
export const EXPIRED = {
  notBefore: stamp(new Date(Date.now() - 2 * 365 * 86_400_000)),
  notAfter: inDays(-365),
};

/**
 * A credentials directory as QEMU reads it for one endpoint (`server` or `client`): the CA's
 * certificate as ca-cert.pem and a leaf signed by `ca`.
 */
export function makeCredsDir(
  ca: TestCa,
  dir: string,
  endpoint: 'server' | 'client',
  o?: Partial<LeafOptions>,
): string {
  mkdirSync(dir, { recursive: true });
  copyFileSync(ca.cert, join(dir, 'ca-cert.pem'));
  makeLeaf(ca, dir, endpoint, {
    subject: endpoint === 'server' ? '/CN=localhost/O=qmigrate tests' : '/CN=client/O=qmigrate tests',
    san: endpoint === 'server' ? ['DNS:localhost', 'IP:127.0.0.1'] : undefined,
    usage: endpoint,
    ...o,
  });
  return dir;
}

/**
 * The usual pair: one CA, a `server/` dir (CN=localhost, SAN localhost and 127.0.0.1) and a
 * `client/` dir (CN=client), plus `both/` holding all five files, as libvirt lays out one host's
 * directory that serves either end.
 */
export function makePki(root: string): { ca: TestCa; server: string; client: string; both: string } {
  const ca = makeCa(root, 'ca');
  const server = makeCredsDir(ca, join(root, 'server'), 'server');
  const client = makeCredsDir(ca, join(root, 'client'), 'client');
  const both = join(root, 'both');
  mkdirSync(both);
  for (const [d, f] of [
    [server, 'ca-cert.pem'],
    [server, 'server-cert.pem'],
    [server, 'server-key.pem'],
    [client, 'client-cert.pem'],
    [client, 'client-key.pem'],
  ] as const) {
    copyFileSync(join(d, f), join(both, f));
  }
  return { ca, server, client, both };
}
