// The installed `qmigrate` bin: --help, --version and usage errors with their exit codes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../bin/qmigrate.js', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));

test('--version prints the package version', () => {
  const r = run('--version');
  assert.equal(r.status, 0);
  assert.equal(r.stdout.trim(), pkg.version);
});

test('--help describes the tool and its exit codes', () => {
  const r = run('--help');
  assert.equal(r.status, 0);
  assert.match(r.stdout, /^Usage: qmigrate/);
  assert.match(r.stdout, /Exit codes:/);
  assert.match(r.stdout, /130 +interrupted/);
});

test('an unknown option is a usage error (exit 2) that names the fix', () => {
  const r = run('--bogus');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown option '--bogus'/);
  assert.match(r.stderr, /qmigrate --help/);
});

test('qmigrate uri shows the channel QEMU builds, or QEMU’s error (exit 1)', () => {
  const good = run('uri', 'tcp:[::1]:4444');
  assert.equal(good.status, 0);
  assert.match(good.stdout, /"port": "4444", "host": "::1"/);
  assert.match(good.stdout, /canonical uri: tcp:\[::1\]:4444/);
  const bad = run('uri', 'foo:bar');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /unknown migration protocol: foo:bar/);
});

test('qmigrate check answers with QEMU’s error text, and 2 for unparsable JSON', () => {
  const r = run('check', 'migrate', '{"channels": []}');
  assert.equal(r.status, 1);
  assert.equal(
    r.stdout.trim(),
    `{"error": {"class": "GenericError", "desc": "need either 'uri' or 'channels' argument"}}`,
  );
  const typed = run('check', 'migrate-set-parameters', '{"max-bandwidth": -1}');
  assert.equal(typed.status, 0);
  assert.match(typed.stdout, /"max-bandwidth": 18446744073709551615/);
  assert.equal(run('check', 'migrate', '{').status, 2);
});
