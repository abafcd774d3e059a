// `qmigrate migrate` usage errors: exit 2 with one clear line naming the flag, before any
// monitor is touched (the monitors named here do not exist: reaching them would exit 3), and
// --help with the options, the output modes and the exit codes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runQmigrate } from '../helpers/qmigrate.js';

const base = ['migrate', '--from', '/nonexistent/src.qmp', '--to', '/nonexistent/dst.qmp'];

for (const [args, want] of [
  [['migrate', '--to', 'b', '--unix', '/x'], /^error: required option '--from <qmp>' not specified$/m],
  [
    [...base],
    /^qmigrate: say where the stream goes: --tcp HOST:PORT, --unix PATH, --uri URI or --channel JSON$/m,
  ],
  [
    [...base, '--tcp', 'h:1', '--unix', '/x'],
    /^error: option '--tcp <host:port>' cannot be used with option '--unix <path>'$/m,
  ],
  [
    [...base, '--unix', '/x', '--json', '--quiet'],
    /^error: option '--json' cannot be used with option '--quiet'$/m,
  ],
  [
    [...base, '--unix', '/x', '--multifd', '0'],
    /^error: option '--multifd <n>' argument '0' is invalid\. .*1 to 255/m,
  ],
  [
    [...base, '--unix', '/x', '--timeout', '0'],
    /^error: option '--timeout <seconds>' argument '0' is invalid\./m,
  ],
  [
    [...base, '--unix', '/x', '--on-timeout', 'later'],
    /^error: option '--on-timeout <policy>' argument 'later' is invalid\. Allowed choices are cancel, pause, postcopy\.$/m,
  ],
  [
    [...base, '--unix', '/x', '--max-bandwidth', '1Q'],
    /^error: option '--max-bandwidth <size>' argument '1Q' is invalid\. .*100M/m,
  ],
  [
    [...base, '--unix', '/x', '--capability', 'nosuch'],
    /^qmigrate: --capability: 'nosuch' is not a migration capability; QEMU 10\.0 has: xbzrle, /m,
  ],
  [
    [...base, '--unix', '/x', '--parameter', 'downtime-limit=soon'],
    /^qmigrate: --parameter: Parameter 'downtime-limit' expects uint64$/m,
  ],
  [[...base, '--tcp', 'nohost'], /^qmigrate: --tcp: error parsing address 'nohost'$/m],
  [
    [...base, '--unix', '/x', '--timeout', '5', '--on-timeout', 'postcopy'],
    /^qmigrate: --on-timeout postcopy switches to postcopy, which needs postcopy-ram on both sides: add --postcopy$/m,
  ],
  [
    [...base, '--unix', '/x', '--resume', '--max-bandwidth', '1M'],
    /^error: option '--resume' cannot be used with option '--max-bandwidth <size>'$/m,
  ],
  [
    [...base, '--unix', '/x', '--postcopy', '--multifd', '2'],
    /^qmigrate: --postcopy with --multifd: Postcopy is not yet compatible with multifd \(QEMU 10\.0 refuses the pair\)$/m,
  ],
  [
    [...base, '--unix', '/x', '--resume', '--on-timeout', 'pause'],
    /^error: option '--resume' cannot be used with option '--on-timeout <policy>'$/m,
  ],
  [
    [...base, '--unix', '/x', '--on-timeout', 'pause'],
    /^qmigrate: --on-timeout pause applies at the --timeout: add --timeout SECONDS$/m,
  ],
  [
    [...base, '--unix', '/x', '--postcopy', '--postcopy-after-passes', '-1'],
    /^error: option '--postcopy-after-passes <n>' argument '-1' is invalid\. Expected a whole number of passes, 0 or more\.$/m,
  ],
  [
    ['migrate', '--from', 'tcp:h:x', '--to', 'b', '--unix', '/x'],
    /^qmigrate: --from: QMP address 'tcp:h:x' has port 'x'; a port is 1-65535$/m,
  ],
] as [string[], RegExp][]) {
  test(`qmigrate ${args.slice(1).join(' ')}: exit 2, one clear error`, async () => {
    const r = await runQmigrate(args);
    assert.equal(r.code, 2, r.stderr);
    // With --json (even beside a flag it conflicts with) stdout holds the error line only.
    if (args.includes('--json')) assert.equal(JSON.parse(r.stdout).type, 'error');
    else assert.equal(r.stdout, '');
    assert.match(r.stderr, want);
    assert.match(r.stderr, /\(run qmigrate migrate --help for usage\)\n$/);
    assert.doesNotMatch(r.stderr, /^\s+at |internal error/m, 'no stack trace');
  });
}

test('migrate --help: the stream flags, the output modes and every exit code', async () => {
  const r = await runQmigrate(['migrate', '--help']);
  assert.equal(r.code, 0);
  for (const flag of [
    '--from <qmp>',
    '--to <qmp>',
    '--tcp <host:port>',
    '--unix <path>',
    '--uri <uri>',
    '--channel <json>',
    '--multifd <n>',
    '--downtime-limit <ms>',
    '--max-bandwidth <size>',
    '--capability <name[=on|off]>',
    '--parameter <name=value>',
    '--timeout <seconds>',
    '--on-timeout <policy>',
    '--json',
    '--quiet',
    '--dry-run',
    '--postcopy',
    '--postcopy-after-passes <n>',
    '--resume',
  ]) {
    assert.ok(r.stdout.includes(`  ${flag} `), flag);
  }
  for (const code of ['0', '1', '2', '3', '4', '5', '130'])
    assert.match(r.stdout, new RegExp(`^ {2}${code} +\\S`, 'm'), code);
  assert.match(r.stdout, /with --json one\s+JSON object per line/);
});

test('qmigrate --help lists migrate and exit code 4', async () => {
  const r = await runQmigrate(['--help']);
  // The description may wrap anywhere: the term column is as wide as the longest command's.
  assert.match(
    r.stdout,
    /^ {2}migrate \[options\] +migrate a running guest live between two QMP\s+monitors/m,
  );
  assert.match(r.stdout, /^ {2}4 +migrate: the --timeout passed/m);
});

test("--json: commander's own usage errors are an error line on stdout too, and nothing else", async () => {
  for (const extra of [['--bogus'], ['--tcp', 'h:1'], ['--multifd', 'x']]) {
    const r = await runQmigrate([...base, '--unix', '/x', '--json', ...extra]);
    assert.equal(r.code, 2, `${extra}: ${r.stderr}`);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, `${extra}: ${r.stdout}`);
    const line = JSON.parse(lines[0]!);
    assert.equal(line.type, 'error');
    assert.equal(line.code, 'CLI_USAGE');
    assert.equal(line.exitCode, 2);
    assert.match(line.message, /^error: /);
    assert.match(r.stderr, /^error: /m, 'and the same on stderr');
  }
});
