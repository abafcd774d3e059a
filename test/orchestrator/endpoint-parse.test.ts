// parseQmpEndpoint: the forms a user types for a monitor (a path, unix:, HOST:PORT, tcp:,
// [v6]:PORT) and a clear error for each malformed one; connectQmpEndpoint names the side
// and the address of a monitor it cannot reach.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ArgumentError } from '../../src/errors.js';
import { connectQmpEndpoint, formatQmpEndpoint, parseQmpEndpoint } from '../../src/orchestrator/endpoint.js';
import { PreflightError } from '../../src/orchestrator/errors.js';

test('paths, unix: and tcp forms parse to their endpoint', () => {
  const cases: [string, ReturnType<typeof parseQmpEndpoint>][] = [
    ['/run/vm.qmp', { kind: 'unix', path: '/run/vm.qmp' }],
    ['vm.qmp', { kind: 'unix', path: 'vm.qmp' }],
    ['./a:1', { kind: 'unix', path: './a:1' }],
    ['unix:/tmp/q.sock', { kind: 'unix', path: '/tmp/q.sock' }],
    ['unix:host:4444', { kind: 'unix', path: 'host:4444' }],
    ['localhost:4444', { kind: 'tcp', host: 'localhost', port: 4444 }],
    ['tcp:10.0.0.1:1', { kind: 'tcp', host: '10.0.0.1', port: 1 }],
    ['[::1]:4444', { kind: 'tcp', host: '::1', port: 4444 }],
    ['tcp:[fe80::1]:65535', { kind: 'tcp', host: 'fe80::1', port: 65535 }],
  ];
  for (const [text, want] of cases) assert.deepEqual(parseQmpEndpoint(text), want, text);
});

test('malformed addresses fail with a clear ArgumentError', () => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['unix:', /no socket path/],
    ['host:0', /port '0'; a port is 1-65535/],
    ['host:65536', /port '65536'/],
    ['tcp:host', /not HOST:PORT/],
    ['tcp:host:x', /port 'x'/],
    [':4444', /has no host/],
    ['tcp:::1:4444', /write an IPv6 host as \[::1\]:PORT/],
    ['[::1]:', /port ''/],
  ];
  for (const [text, want] of cases) {
    assert.throws(
      () => parseQmpEndpoint(text),
      (e: unknown) => e instanceof ArgumentError && want.test(e.message),
      text,
    );
  }
});

test('formatQmpEndpoint writes what parseQmpEndpoint reads', () => {
  for (const text of ['unix:/tmp/x', 'tcp:h:1', 'tcp:[::1]:2']) {
    assert.equal(formatQmpEndpoint(parseQmpEndpoint(text)), text);
  }
});

test('an unreachable monitor is a PreflightError naming the side and the address', async () => {
  await assert.rejects(
    connectQmpEndpoint({ kind: 'unix', path: '/nonexistent/qmp.sock' }, 'destination', { timeoutMs: 2000 }),
    (e: unknown) =>
      e instanceof PreflightError &&
      e.code === 'MIGRATE_PREFLIGHT' &&
      /^cannot reach the destination's monitor at unix:\/nonexistent\/qmp.sock: .*ENOENT|No such file/.test(
        e.message,
      ),
  );
});
