// `qmigrate check COMMAND ARGS` answers as a freshly started qmigrate VM does, from the same
// code: each case goes through runCheck (and a few through the CLI itself), through a real
// qmigrate Vm (its QMP dispatcher, command handlers and Migration; a recording engine
// stands in for the transports), and through a fresh QEMU 10.0 where QEMU's answer is the
// same (or, where qmigrate refuses on purpose, QEMU's different answer is shown).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCheck } from '../../src/cli/commands/check.js';
import type { MigrationEngine } from '../../src/migration/migration.js';
import { QapiError } from '../../src/qapi/errors.js';
import { parseJson, stringifyJson } from '../../src/qapi/json.js';
import { Vm } from '../../src/vm/vm.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';
import { runQmigrate } from '../helpers/qmigrate.js';

type Answer = { ok: true } | { error: string };

interface Case {
  name: string;
  command: string;
  args: unknown;
  expect: Answer;
  /** QEMU 10.0's answer where qmigrate refuses on purpose (docs/options.md says why). */
  qemu?: Answer;
}

const ok: Answer = { ok: true };
const err = (error: string): Answer => ({ error });
const main = (addr: Record<string, unknown>) => ({ channels: [{ 'channel-type': 'main', addr }] });
const inet = (o: Record<string, unknown>) =>
  main({ transport: 'socket', type: 'inet', host: '127.0.0.1', port: '0', ...o });
const bbm = (alias: string) => ({ 'block-bitmap-mapping': [{ 'node-name': 'n', alias, bitmaps: [] }] });
const caps = (...names: string[]) => ({
  capabilities: names.map((capability) => ({ capability, state: true })),
});

const CASES: Case[] = [
  {
    name: 'downtime-limit above 2000 s',
    command: 'migrate-set-parameters',
    args: { 'downtime-limit': 5000000 },
    expect: err("Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms"),
  },
  {
    name: 'downtime-limit at 2000 s',
    command: 'migrate-set-parameters',
    args: { 'downtime-limit': 2000000 },
    expect: ok,
  },
  {
    name: 'multifd-channels 0',
    command: 'migrate-set-parameters',
    args: { 'multifd-channels': 0 },
    expect: err("Parameter 'multifd_channels' expects a value between 1 and 255"),
  },
  {
    name: 'block-bitmap-mapping alias not well-formed',
    command: 'migrate-set-parameters',
    args: bbm('a b'),
    expect: err("Invalid mapping given for block-bitmap-mapping: The node alias 'a b' is not well-formed"),
  },
  { name: 'block-bitmap-mapping well-formed', command: 'migrate-set-parameters', args: bbm('a'), expect: ok },
  {
    name: 'tls-creds is accepted when set',
    command: 'migrate-set-parameters',
    args: { 'tls-creds': 'tls0' },
    expect: ok,
  },
  {
    name: 'dirty-limit without KVM',
    command: 'migrate-set-capabilities',
    args: caps('dirty-limit'),
    expect: err("dirty-limit requires KVM with accelerator property 'dirty-ring-size' set"),
  },
  {
    name: 'switchover-ack without return-path',
    command: 'migrate-set-capabilities',
    args: caps('switchover-ack'),
    expect: err("Capability 'switchover-ack' requires capability 'return-path'"),
  },
  {
    name: 'postcopy-ram with multifd',
    command: 'migrate-set-capabilities',
    args: caps('postcopy-ram', 'multifd'),
    expect: err('Postcopy is not yet compatible with multifd'),
  },
  {
    name: 'xbzrle can be set (migrate refuses it)',
    command: 'migrate-set-capabilities',
    args: caps('xbzrle'),
    expect: ok,
  },
  {
    name: 'migrate with uri and channels',
    command: 'migrate',
    args: {
      uri: 'unix:/nonexistent/x',
      ...main({ transport: 'socket', type: 'unix', path: '/nonexistent/x' }),
    },
    expect: err("need either 'uri' or 'channels' argument"),
  },
  {
    name: 'migrate resume with nothing paused',
    command: 'migrate',
    args: { uri: 'unix:/nonexistent/x', resume: true },
    expect: err('Cannot resume if there is no paused migration'),
  },
  { name: 'migrate to a unix socket', command: 'migrate', args: { uri: 'unix:/nonexistent/x' }, expect: ok },
  {
    name: 'migrate with a cpr channel in mode normal',
    command: 'migrate',
    args: {
      channels: [
        { 'channel-type': 'main', addr: { transport: 'socket', type: 'unix', path: '/nonexistent/x' } },
        { 'channel-type': 'cpr', addr: { transport: 'socket', type: 'unix', path: '/nonexistent/y' } },
      ],
    },
    expect: err("A 'cpr' channel is used only in migration mode 'cpr-transfer' (the mode is 'normal')"),
    qemu: ok,
  },
  {
    name: 'migrate with mptcp',
    command: 'migrate',
    args: inet({ port: '1', mptcp: true }),
    expect: err("Socket option 'mptcp' is not supported by qmigrate: Node has no IPPROTO_MPTCP"),
    qemu: ok,
  },
  {
    name: 'migrate-incoming with two channels',
    command: 'migrate-incoming',
    args: {
      channels: [
        { 'channel-type': 'main', addr: { transport: 'socket', type: 'unix', path: '/nonexistent/x' } },
        { 'channel-type': 'cpr', addr: { transport: 'socket', type: 'unix', path: '/nonexistent/y' } },
      ],
    },
    expect: err("Channel list must have only one entry, for type 'main'"),
  },
  { name: 'migrate-incoming on tcp port 0', command: 'migrate-incoming', args: inet({}), expect: ok },
  {
    name: 'listener: numeric with a host name',
    command: 'migrate-incoming',
    args: inet({ host: 'localhost', numeric: true }),
    expect: err('address resolution failed for localhost:0: Name or service not known'),
  },
  {
    name: 'listener: IPv4 and IPv6 both off',
    command: 'migrate-incoming',
    args: inet({ ipv4: false, ipv6: false }),
    expect: err('Cannot disable IPv4 and IPv6 at same time'),
  },
  {
    name: 'listener: an IPv4 address with ipv6 on',
    command: 'migrate-incoming',
    args: inet({ ipv6: true }),
    expect: err('address resolution failed for 127.0.0.1:0: Address family for hostname not supported'),
  },
  {
    name: 'listener: an IPv6 address with ipv4 on',
    command: 'migrate-incoming',
    args: inet({ host: '::1', ipv4: true }),
    expect: err('address resolution failed for ::1:0: Address family for hostname not supported'),
  },
  {
    name: 'listener: an IPv6 address with ipv4 off',
    command: 'migrate-incoming',
    args: inet({ host: '::1', ipv4: false }),
    expect: ok,
  },
  {
    name: "listener: a port range ('to')",
    command: 'migrate-incoming',
    args: inet({ port: '0', to: 10 }),
    expect: err("Socket option 'to' is not supported by qmigrate: it listens on the one port given"),
    qemu: ok,
  },
  {
    name: 'listener: a unix path longer than sun_path',
    command: 'migrate-incoming',
    args: main({ transport: 'socket', type: 'unix', path: `/nonexistent/${'x'.repeat(120)}` }),
    expect: err(`UNIX socket path '/nonexistent/${'x'.repeat(120)}' is too long`),
  },
  {
    name: 'listener: a port that is no number nor service',
    command: 'migrate-incoming',
    args: inet({ port: 'no-such-service' }),
    expect: err(
      'address resolution failed for 127.0.0.1:no-such-service: Servname not supported for ai_socktype',
    ),
  },
  {
    name: 'migrate-continue with nothing to continue',
    command: 'migrate-continue',
    args: { state: 'pre-switchover' },
    expect: err('Migration not in expected state: none'),
  },
  {
    name: 'migrate-start-postcopy without the capability',
    command: 'migrate-start-postcopy',
    args: {},
    expect: err('Enable postcopy with migrate_set_capability before the start of migration'),
  },
];

/** `qmigrate check`'s answer, from its code. */
function check(c: Case): Answer {
  let printed = '';
  const code = runCheck(
    c.command,
    stringifyJson(c.args),
    (s) => {
      printed = s;
    },
    () => {},
  );
  const out = parseJson(printed) as { error?: { desc: string } };
  assert.equal(code, out.error ? 1 : 0);
  return out.error ? err(out.error.desc) : ok;
}

/** A fresh qmigrate VM's answer (running, or waiting for migrate-incoming). */
async function vm(c: Case): Promise<Answer> {
  const engine: MigrationEngine = {
    startOutgoing: () => ({ cancel: () => true, continue() {} }),
    startIncoming: () => ({ cancel() {} }),
  };
  const v = new Vm({ engine, ...(c.command === 'migrate-incoming' ? { incoming: 'defer' } : {}) });
  try {
    await v.execute(c.command, c.args as Record<string, unknown>);
    return ok;
  } catch (e) {
    if (e instanceof QapiError) return err(e.desc);
    throw e;
  } finally {
    await v.close();
  }
}

test('the table is large enough', () => assert.ok(CASES.length >= 20));

for (const c of CASES) {
  test(`check = vm: ${c.name}`, async () => {
    assert.deepEqual(check(c), c.expect, 'qmigrate check');
    assert.deepEqual(await vm(c), c.expect, 'qmigrate vm');
  });
}

test('the CLI itself gives the same answers', async () => {
  for (const c of [CASES[0]!, CASES.find((x) => x.name.startsWith('listener: numeric'))!]) {
    const r = await runQmigrate(['check', c.command, stringifyJson(c.args)]);
    assert.equal(r.code, 1);
    assert.deepEqual(JSON.parse(r.stdout), {
      error: { class: 'GenericError', desc: (c.expect as { error: string }).error },
    });
  }
});

for (const c of CASES) {
  test(`qemu 10.0: ${c.name}`, async (t) => {
    const bin = requireQemu(t, '10.0');
    if (!bin) return;
    const q = await startQemu(bin, c.command === 'migrate-incoming' ? ['-incoming', 'defer'] : []);
    try {
      const reply = (await q.qmp.execute(c.command, c.args)) as { error?: { desc: string } };
      assert.deepEqual(reply.error ? err(reply.error.desc) : ok, c.qemu ?? c.expect);
    } finally {
      await q.stop();
    }
  });
}
