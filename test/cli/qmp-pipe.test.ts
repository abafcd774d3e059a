// `qmigrate qmp ADDR` with standard input not a terminal: one request per line, one JSON reply
// per line, the exit codes its --help lists; what the server received is checked on a
// scripted QMP server (test/helpers/qmp-fake-server.ts).
import assert from 'node:assert/strict';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { startBareVm } from '../helpers/peers.js';
import { runQmigrate, spawnQmigrate } from '../helpers/qmigrate.js';
import { type FakeQmp, startFakeQmp } from '../helpers/qmp-fake-server.js';
import { makePki, pkiRoot } from '../helpers/tls-certs.js';
import { freePort, tlsMonitorArgs } from '../helpers/tls-monitor.js';

const requests = (received: Record<string, unknown>[]) =>
  received.filter((m) => m.execute !== 'qmp_capabilities');

test('dotted keys build nested arguments and lists; a raw JSON line goes out with its id kept', async (t) => {
  const fake = await startFakeQmp(t, { answer: (m) => ({ return: { echo: m.arguments ?? null } }) });
  const input = [
    'migrate channels.0.channel-type=main channels.0.addr.transport=socket channels.0.addr.type=unix channels.0.addr.path=/run/m.sock detach=true',
    'set x.n=12 x.s="two words" x.o={"a": [1, null]} x.u=tcp:0:4444 x.f=false',
    '# a comment, and a blank line',
    '',
    '{"execute": "query-status", "arguments": {"k": 1}, "id": {"mine": 7}}',
  ].join('\n');
  const r = await runQmigrate(['qmp', fake.path], `${input}\n`);
  assert.equal(r.code, 0, r.stderr);
  const sent = requests(fake.received);
  assert.deepEqual(
    sent.map(({ id, ...m }) => m),
    [
      {
        execute: 'migrate',
        arguments: {
          channels: [
            { 'channel-type': 'main', addr: { transport: 'socket', type: 'unix', path: '/run/m.sock' } },
          ],
          detach: true,
        },
      },
      {
        execute: 'set',
        arguments: { x: { n: 12, s: 'two words', o: { a: [1, null] }, u: 'tcp:0:4444', f: false } },
      },
      { execute: 'query-status', arguments: { k: 1 } },
    ],
  );
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 3, r.stdout);
  assert.deepEqual(JSON.parse(lines[0]!), {
    return: { echo: (sent[0] as { arguments: unknown }).arguments },
  });
  assert.deepEqual(JSON.parse(lines[2]!), { return: { echo: { k: 1 } }, id: { mine: 7 } });
});

test('exit 1 when a command fails; each reply is the whole reply object on one line', async (t) => {
  const fake = await startFakeQmp(t, {
    answer: (m) =>
      m.execute === 'nope'
        ? { error: { class: 'CommandNotFound', desc: 'The command nope has not been found' } }
        : { return: { status: 'running' } },
  });
  const r = await runQmigrate(['qmp', fake.path], 'query-status\nnope\nquery-status\n');
  assert.equal(r.code, 1, r.stderr);
  assert.deepEqual(
    r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l)),
    [
      { return: { status: 'running' } },
      { error: { class: 'CommandNotFound', desc: 'The command nope has not been found' } },
      { return: { status: 'running' } },
    ],
  );
});

test('exit 2 for lines that do not parse: nothing sent for them, the other lines run', async (t) => {
  const fake = await startFakeQmp(t);
  const bad = [
    'x a=1 a=2',
    'x a=1 a.b=2',
    'x a={"b": ',
    'x novalue',
    '{"execute": 1}',
    'x l.1=z',
    'x s="\\ud800"',
    'x n=1e999',
  ];
  const r = await runQmigrate(['qmp', fake.path], `${bad.join('\n')}\nok-1\n`);
  assert.equal(r.code, 2);
  assert.deepEqual(
    requests(fake.received).map((m) => m.execute),
    ['ok-1'],
  );
  assert.equal(r.stdout, '{"return": {}}\n');
  const errs = r.stderr.trimEnd().split('\n');
  assert.deepEqual(errs, [
    "qmigrate: line 1: 'a' is given more than once (not sent)",
    "qmigrate: line 2: 'a' is used both as a value and as an object (not sent)",
    'qmigrate: line 3: unclosed bracket in \'a={"b":\' (not sent)',
    "qmigrate: line 4: expected key=value, got 'novalue' (not sent)",
    "qmigrate: line 5: a JSON request needs 'execute' (or 'exec-oob') with a command name (not sent)",
    "qmigrate: line 6: list 'l' has no element 0 (indexes must run 0, 1, 2, ...) (not sent)",
    "qmigrate: line 7: the value of 's' holds a lone UTF-16 surrogate, which QMP's JSON cannot carry (not sent)",
    "qmigrate: line 8: the value of 'n' is not a finite number (not sent)",
  ]);
});

test('exit 3 when the monitor is not there, or does not greet within --timeout', async (t) => {
  const fake = await startFakeQmp(t);
  const missing = await runQmigrate(['qmp', join(fake.path, '..', 'none.sock')], 'query-status\n');
  assert.equal(missing.code, 3);
  assert.match(
    missing.stderr,
    /^qmigrate: cannot reach the monitor at unix:.*none\.sock: .*No such file or directory\n$/,
  );

  const silent = await startFakeQmp(t, { greet: false });
  const started = Date.now();
  const r = await runQmigrate(['qmp', '--timeout', '1', silent.path], 'query-status\n');
  assert.equal(r.code, 3);
  // The message names the bound; the time only shows it did not hang (a loaded machine starts tsx slowly).
  assert.ok(Date.now() - started < 20_000, 'bounded by --timeout');
  assert.match(
    r.stderr,
    /^qmigrate: cannot reach the monitor at unix:.*: no QMP session within 1000 ms \(a QEMU monitor serves one client at a time/,
  );
  assert.equal(r.stdout, '');
});

test('the monitor closing mid-session ends the shell with a clear line and exit 1', async (t) => {
  const fake = await startFakeQmp(t, {
    answer: (m) => {
      if (m.execute === 'drop') setImmediate(() => fake.dropClients());
      return { return: {} };
    },
  });
  const r = await runQmigrate(['qmp', fake.path], 'drop\nquery-status\nquery-status\n');
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '{"return": {}}\n');
  assert.equal(
    r.stderr,
    "qmigrate: line 2: the monitor closed the connection; 'query-status' was not answered\n",
  );
});

test('events are JSON lines on stderr, or on stdout with --events stdout', async (t) => {
  const fake = await startFakeQmp(t, {
    answer: (m) => {
      if (m.execute === 'stop') fake.event('STOP');
      return { return: {} };
    },
  });
  const r = await runQmigrate(['qmp', fake.path], 'stop\n');
  assert.equal(r.code, 0);
  assert.equal(r.stdout, '{"return": {}}\n');
  assert.deepEqual(JSON.parse(r.stderr), {
    event: 'STOP',
    timestamp: { seconds: 1700000000, microseconds: 0 },
  });
  const mixed = await runQmigrate(['qmp', '--events', 'stdout', fake.path], 'stop\n');
  assert.deepEqual(
    mixed.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l)),
    [{ event: 'STOP', timestamp: { seconds: 1700000000, microseconds: 0 } }, { return: {} }],
  );
});

test('usage errors exit 2 before connecting', async () => {
  const r = await runQmigrate(['qmp', 'host:99999'], '');
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /^qmigrate: QMP address 'host:99999' has port '99999'; a port is 1-65535\n\(run qmigrate qmp --help for usage\)\n$/,
  );
  const tls = await runQmigrate(['qmp', '--tls', '/nonexistent', '/run/x.sock'], '');
  assert.equal(tls.code, 2);
  assert.match(tls.stderr, /--tls applies to a monitor over TCP/);
});

test('replies into a reader that reads one line: exit 141, no stack trace', async (t) => {
  const fake = await startFakeQmp(t, {
    answer: () => ({ return: { status: 'running', pad: 'x'.repeat(200) } }),
  });
  const child = spawnQmigrate(['qmp', fake.path]);
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  child.stdin?.on('error', () => {});
  child.stdin?.end('query-status\n'.repeat(20_000));
  child.stdout?.once('data', () => child.stdout?.destroy());
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  assert.equal(code, 141, stderr);
  assert.doesNotMatch(stderr, /^\s+at /m, 'no stack trace');
});

test('--help explains the line syntax and the exit codes, with examples', async () => {
  const r = await runQmigrate(['qmp', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^Usage: qmigrate qmp \[options\] <addr>/);
  for (const flag of [
    '-H, --hmp',
    '-p, --pretty',
    '--history <file>',
    '--timeout <seconds>',
    '--events <where>',
  ])
    assert.ok(r.stdout.includes(flag), flag);
  assert.match(r.stdout, /a dotted key builds nested objects/);
  assert.match(r.stdout, /Exit codes:\n {2}0 /);
  assert.match(r.stdout, /Examples:\n {2}qmigrate qmp \/run\/vm\.qmp\n/);
  const top = await runQmigrate(['--help']);
  assert.match(top.stdout, /\n {2}qmp \[options\] <addr> +an interactive shell for a QMP monitor/);
});

test('quit: the monitor closing after it is exit 0; a line after it fails saying so', async (t) => {
  const fake = await startFakeQmp(t, {
    answer: (m) => {
      if (m.execute === 'quit') setImmediate(() => fake.dropClients());
      return { return: {} };
    },
  });
  const ok = await runQmigrate(['qmp', fake.path], 'quit\n');
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, '{"return": {}}\n');
  const late = await runQmigrate(['qmp', fake.path], 'quit\nquery-status\n');
  assert.equal(late.code, 1);
  assert.equal(
    late.stderr,
    "qmigrate: line 2: the monitor closed the connection (after quit); 'query-status' was not answered\n",
  );
});

test("--tls reaches a monitor with tls-creds (verify-peer=on) with this machine's client files", async (t) => {
  const pki = makePki(pkiRoot(t));
  const port = await freePort();
  await startBareVm(t, tlsMonitorArgs(pki.server, true, 'montls', port));
  const r = await runQmigrate(['qmp', '--tls', pki.client, `127.0.0.1:${port}`], 'query-status\n');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '{"return": {"status": "running", "running": true}}\n');
  // Without the client's certificate the monitor refuses the handshake: unreachable, saying why.
  const server = await runQmigrate(['qmp', '--tls', pki.server, `127.0.0.1:${port}`], 'query-status\n');
  assert.equal(server.code, 3);
  assert.match(server.stderr, /^qmigrate: cannot reach the monitor at tcp:127\.0\.0\.1:\d+: .*certificate/);
});

test('-H: blank lines and # comments are skipped, as without -H', async (t) => {
  const fake = await startFakeQmp(t, { answer: () => ({ return: 'VM status: running\r\n' }) });
  const r = await runQmigrate(['qmp', '-H', fake.path], '# a note\n   # indented\n\ninfo status\n');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(
    requests(fake.received).map(({ id, ...m }) => m),
    [{ execute: 'human-monitor-command', arguments: { 'command-line': 'info status' } }],
  );
  assert.equal(r.stdout, '{"return": "VM status: running\\r\\n"}\n');
});

test('exit 3 messages: an IPv6 address named once; a silent TCP monitor hints at --tls', async (t) => {
  const refused = await runQmigrate(['qmp', '[::1]:1'], 'query-status\n');
  assert.equal(refused.code, 3);
  assert.match(
    refused.stderr,
    /^qmigrate: cannot reach the monitor at tcp:\[::1\]:1: Failed to connect to '::1:1': /,
  );
  // A monitor with tls-creds says nothing until the client's TLS hello.
  const silent = createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => silent.close());
  const port = (silent.address() as AddressInfo).port;
  const r = await runQmigrate(['qmp', '--timeout', '1', `127.0.0.1:${port}`], 'query-status\n');
  assert.equal(r.code, 3);
  assert.match(
    r.stderr,
    /no QMP session within 1000 ms \(.* A monitor with tls-creds needs --tls DIR\.\)\n$/,
  );
});

test('a reply the shell cannot match (no id) ends the session saying so, not "the monitor closed"', async (t) => {
  const fake: FakeQmp = await startFakeQmp(t, {
    answer: () => {
      setImmediate(() =>
        fake.sendRaw(
          '{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'inf\'"}}',
        ),
      );
      return 'no reply';
    },
  });
  const r = await runQmigrate(['qmp', fake.path], 'query-status\nquery-status\n');
  assert.equal(r.code, 1);
  assert.equal(
    r.stderr,
    "qmigrate: line 1: the monitor sent an invalid QMP message (reply without our id); the connection is closed; 'query-status' was not answered\n",
  );
});
