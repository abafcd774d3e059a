// Usage errors: commander's own messages naming the flag as typed, exit 2 everywhere
// (subcommands too), never a stack trace; help that shows each default once and says what
// 0 means; exit codes in --help that the commands really return.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runQmigrate } from '../helpers/qmigrate.js';

const noStack = (s: string) => assert.doesNotMatch(s, /^\s+at |internal error/m, `a stack trace: ${s}`);

for (const [args, want] of [
  [['demo', '--size', '0'], /^error: option '--size <MiB>' argument '0' is invalid\. .*from 2 .*$/m],
  [['demo', '--size', '1'], /^error: option '--size <MiB>' argument '1' is invalid\. .*1 MiB.*$/m],
  [['demo', '--size', '1e9'], /^error: option '--size <MiB>' argument '1e9' is invalid\./m],
  [['demo', '--size', '1000000'], /^error: option '--size <MiB>' argument '1000000' is invalid\./m],
  [['demo', '--size', '1.5'], /^error: option '--size <MiB>' argument '1\.5' is invalid\./m],
  [['demo', '--rate', '-1'], /^error: option '--rate <pages\/s>' argument '-1' is invalid\./m],
  [['demo', '--downtime-limit', 'x'], /^error: option '--downtime-limit <ms>' argument 'x' is invalid\./m],
  [['demo', '--downtime-limit', '2000001'], /^error: option '--downtime-limit <ms>' argument '2000001'/m],
  [['demo', '--max-bandwidth', 'lots'], /^error: option '--max-bandwidth <bytes\/s>' argument 'lots'/m],
  [['demo', '--size'], /^error: option '--size <MiB>' argument missing$/m],
  [['demo', '--bogus'], /^error: unknown option '--bogus'$/m],
  [['demo', 'extra'], /^error: too many arguments for 'demo'/m],
  [['uri'], /^error: missing required argument 'uri'$/m],
  [['check'], /^error: missing required argument 'command'$/m],
  [['nosuch'], /^error: unknown command 'nosuch'$/m],
] as [string[], RegExp][]) {
  test(`qmigrate ${args.join(' ')}: exit 2, one clear error`, async () => {
    const r = await runQmigrate(args);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, want);
    noStack(r.stderr);
    assert.doesNotMatch(r.stderr, /downtimeLimit|maxBandwidth/, 'the camelCase property, not the flag');
    if (args[0] !== 'nosuch') assert.match(r.stderr, new RegExp(`run qmigrate ${args[0]} --help for usage`));
  });
}

test('demo --help shows each default once and says what 0 means', async () => {
  const r = await runQmigrate(['demo', '--help']);
  assert.equal(r.code, 0);
  const help = r.stdout.replace(/\n\s+/g, ' ');
  for (const flag of ['--size', '--transport', '--rate', '--downtime-limit', '--max-bandwidth']) {
    const entry = new RegExp(`${flag} <[^>]+> (.*?)(?= --|$)`).exec(help)?.[1] ?? '';
    assert.equal(entry.match(/default/g)?.length, 1, `${flag}: ${entry}`);
  }
  assert.match(help, /--rate <pages\/s> .*0 = as fast as it can/);
  assert.match(help, /--max-bandwidth <bytes\/s> .*0 = unlimited/);
  assert.match(help, /--json .*JSON line on stdout/);
});

test('--help lists the exit codes, with the commands that return 3 and the signal codes', async () => {
  const r = await runQmigrate(['--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^ {2}3 +a peer cannot be reached \(demo: /m);
  assert.match(r.stdout, /^ {2}129 +hung up \(SIGHUP\)$/m);
  assert.match(r.stdout, /^ {2}130 +interrupted \(SIGINT, Ctrl-C\)$/m);
  assert.match(r.stdout, /^ {2}141 +the output was closed/m);
  assert.match(r.stdout, /^ {2}143 +terminated \(SIGTERM; migrate: 130, as it lists\)$/m);
});
