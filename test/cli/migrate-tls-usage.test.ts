// `qmigrate migrate`'s TLS flags, refused before any monitor is touched (exit 2, one line
// naming the fix): half a per-host pair, a relative directory, --tls-hostname without TLS,
// tls-creds also given as --parameter, a unix stream without --tls-hostname, monitor TLS for
// a unix monitor, and a monitor TLS dir without ca-cert.pem.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runQmigrate } from '../helpers/qmigrate.js';

const base = ['migrate', '--from', '/nonexistent/src.qmp', '--to', '/nonexistent/dst.qmp'];

for (const [args, want] of [
  [
    [...base, '--tcp', 'h:1', '--to-tls-creds', '/pki'],
    /^qmigrate: --to-tls-creds names one host's directory: add --from-tls-creds DIR, or --tls-creds DIR for both$/m,
  ],
  [
    [...base, '--tcp', 'h:1', '--tls-creds', 'pki'],
    /^error: option '--tls-creds <dir>' argument 'pki' is invalid\. Give an absolute path/m,
  ],
  [
    [...base, '--tcp', 'h:1', '--tls-hostname', 'x'],
    /^qmigrate: --tls-hostname applies to TLS only: add --tls-creds DIR$/m,
  ],
  [
    [...base, '--tcp', 'h:1', '--tls-creds', '/pki', '--parameter', 'tls-creds=mine'],
    /^qmigrate: --parameter tls-creds and --tls-creds both set TLS/m,
  ],
  [
    [...base, '--unix', '/m.sock', '--tls-creds', '/pki'],
    /^qmigrate: --tls-creds over a unix socket needs --tls-hostname NAME/m,
  ],
  [
    [...base, '--tcp', 'h:1', '--from-qmp-tls', '/pki'],
    /^qmigrate: --from-qmp-tls applies to a monitor over TCP/m,
  ],
  [
    [
      'migrate',
      '--from',
      '127.0.0.1:1',
      '--to',
      '/x.qmp',
      '--tcp',
      'h:1',
      '--from-qmp-tls',
      '/nonexistent/pki',
    ],
    /^qmigrate: --from-qmp-tls: TLS credentials directory \/nonexistent\/pki has no ca-cert\.pem$/m,
  ],
] as const) {
  test(`usage: ${args.slice(5).join(' ')}`, async () => {
    const r = await runQmigrate(args as unknown as string[]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, want);
  });
}
