// The audit of every capability, parameter, mode, channel type, transport, socket address
// member and command argument the schema accepts: each has a decision here (honoured,
// vacuous for a RAM-only guest as in QEMU 10.0, or refused), the same decision in
// docs/options.md, and its proof. A refusal is run here on the VM's own Migration object
// (nothing reaches the engine, nothing changes); the others name the tests that prove them.
// A new schema entry without a decision fails this file.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { MigrationEngine } from '../../src/migration/migration.js';
import { Migration } from '../../src/migration/migration.js';
import { QapiError } from '../../src/qapi/errors.js';
import { schema } from '../../src/qapi/schema.js';
import type {
  InetSocketAddress,
  MigrateSetParameters,
  MigrationAddress,
  MigrationCapability,
  RunState,
} from '../../src/qapi/types.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

interface Refusal {
  side: 'source' | 'destination';
  /** Refused by migrate-set-capabilities (QEMU's own check) rather than at the command. */
  atSet?: true;
  caps?: MigrationCapability[];
  params?: MigrateSetParameters;
  /** The main channel (default: a unix socket). */
  addr?: MigrationAddress;
  cpr?: MigrationAddress;
  unsharedRam?: string[];
  error: string;
  /** QEMU's listener errors come after the incoming state moved to setup. */
  state?: 'setup';
}

interface Decision {
  /** As docs/options.md words it. */
  status: string;
  /** Tests that prove it: `path: a fragment of the test's title` (`{}` for a placeholder). */
  proof?: string[];
  refusals?: Refusal[];
}

const UNIX: MigrationAddress = {
  transport: 'socket',
  type: 'unix',
  path: '/nonexistent/qmigrate-audit.sock',
};
const FILE: MigrationAddress = { transport: 'file', filename: '/nonexistent/qmigrate-audit.mig', offset: 0 };
const inet = (
  o: Omit<InetSocketAddress, 'host' | 'port'> & { host?: string; port?: string },
): MigrationAddress => ({
  transport: 'socket',
  type: 'inet',
  host: '127.0.0.1',
  port: '0',
  ...o,
});
const SHARED: string[] = [];

const VACUOUS = 'test/migration/options-effects.test.ts: the vacuous options change nothing';
const notImplemented = (
  cap: MigrationCapability,
  why: string,
  caps: MigrationCapability[] = [cap],
  addr: MigrationAddress = UNIX,
) => {
  const error = `Capability '${caps.find((c) => c !== 'multifd' && c !== 'return-path') ?? cap}' is not supported by qmigrate: ${why}`;
  return (['source', 'destination'] as const).map((side): Refusal => ({ side, caps, addr, error }));
};
const PREEMPT = 'postcopy preempt (a second channel for requested pages) is not implemented';

const CAPABILITIES: Record<string, Decision> = {
  xbzrle: {
    status: 'refused',
    refusals: notImplemented('xbzrle', 'XBZRLE page encoding is not implemented'),
    proof: ['test/migration/features.test.ts: capabilities that change the wire format'],
  },
  'rdma-pin-all': { status: 'vacuous', proof: [VACUOUS] },
  'auto-converge': {
    status: 'refused (source), vacuous (destination)',
    refusals: [
      {
        side: 'source',
        caps: ['auto-converge'],
        error: "Capability 'auto-converge' is not supported by qmigrate: the guest workload is not throttled",
      },
    ],
    proof: [VACUOUS],
  },
  'zero-blocks': { status: 'vacuous', proof: [VACUOUS] },
  events: {
    status: 'honoured',
    proof: [
      'test/migration/query-migrate-qemu.test.ts: MIGRATION events match QEMU 10.0',
      'test/migration/workload-live.test.ts: a writing guest migrates live',
    ],
  },
  'postcopy-ram': {
    status: 'honoured (socket, fd), refused (file, exec)',
    refusals: [
      {
        side: 'source',
        caps: ['postcopy-ram'],
        addr: FILE,
        error: "Capability 'postcopy-ram' needs a transport that carries replies; a file cannot",
      },
      {
        side: 'source',
        caps: ['postcopy-ram'],
        addr: { transport: 'exec', args: ['/bin/true'] },
        error:
          "Capability 'postcopy-ram' over exec is not supported by qmigrate: the child's output is not read",
      },
    ],
    proof: [
      'test/migration/options-effects.test.ts: postcopy-ram over a file',
      'test/migration/postcopy-source-qemu.test.ts: postcopy after a non-converging precopy completes with RAM equal',
      'test/migration/postcopy-source-qemu.test.ts: a link cut in postcopy pauses both sides',
      'test/migration/postcopy-source-requests.test.ts: requested pages come before their turn',
      'test/migration/postcopy-dest-qemu.test.ts: QEMU 10.0 -> qmigrate postcopy',
    ],
  },
  'x-colo': { status: 'refused', refusals: notImplemented('x-colo', 'COLO is not implemented') },
  'release-ram': { status: 'vacuous', proof: [VACUOUS] },
  'return-path': {
    status: 'honoured (socket, fd), refused (file, exec)',
    refusals: [
      {
        side: 'source',
        caps: ['return-path'],
        addr: FILE,
        error: "Capability 'return-path' needs a transport that carries replies; a file cannot",
      },
      {
        side: 'source',
        caps: ['return-path'],
        addr: { transport: 'exec', args: ['/bin/true'] },
        error:
          "Capability 'return-path' over exec is not supported by qmigrate: the child's output is not read",
      },
    ],
    proof: [
      'test/migration/migrate-pairs.test.ts: return path: qmigrate -> 10.0',
      'test/migration/multifd-pairs.test.ts: multifd with return-path',
      'test/migration/options-effects.test.ts: return-path over a file',
    ],
  },
  'pause-before-switchover': {
    status: 'honoured',
    proof: ['test/migration/features.test.ts: pause-before-switchover waits in pre-switchover'],
  },
  multifd: { status: 'honoured', proof: ['test/migration/multifd-pairs.test.ts: {} channels'] },
  'dirty-bitmaps': {
    status: 'refused',
    refusals: notImplemented(
      'dirty-bitmaps',
      'block dirty bitmap migration (and the postcopy it implies) is not implemented',
    ),
  },
  'postcopy-blocktime': {
    status: 'honoured (destination)',
    proof: ['test/migration/postcopy-dest-qemu.test.ts: blocktime counted the waits'],
  },
  'late-block-activate': { status: 'vacuous', proof: [VACUOUS] },
  'x-ignore-shared': {
    status: 'refused',
    refusals: notImplemented('x-ignore-shared', 'shared RAM is always sent'),
  },
  'validate-uuid': { status: 'vacuous', proof: [VACUOUS] },
  'background-snapshot': {
    status: 'refused (when set)',
    refusals: [
      {
        side: 'source',
        atSet: true,
        caps: ['background-snapshot'],
        error: 'Background-snapshot is not supported by host kernel',
      },
    ],
  },
  'zero-copy-send': {
    status: 'refused',
    refusals: notImplemented(
      'zero-copy-send',
      'Node cannot send with MSG_ZEROCOPY',
      ['multifd', 'zero-copy-send'],
      inet({}),
    ),
  },
  'postcopy-preempt': {
    status: 'refused',
    refusals: (['source', 'destination'] as const).map(
      (side): Refusal => ({
        side,
        caps: ['postcopy-ram', 'postcopy-preempt'],
        addr: inet({}),
        error: `Capability 'postcopy-preempt' is not supported by qmigrate: ${PREEMPT}`,
      }),
    ),
  },
  'switchover-ack': {
    status: 'refused',
    refusals: notImplemented('switchover-ack', 'the switchover handshake is not implemented', [
      'return-path',
      'switchover-ack',
    ]),
  },
  'dirty-limit': {
    status: 'refused (when set)',
    refusals: [
      {
        side: 'source',
        atSet: true,
        caps: ['dirty-limit'],
        error: "dirty-limit requires KVM with accelerator property 'dirty-ring-size' set",
      },
    ],
  },
  'mapped-ram': {
    status: 'refused',
    refusals: notImplemented(
      'mapped-ram',
      'the mapped-ram file layout is not implemented',
      ['mapped-ram'],
      FILE,
    ),
  },
};

const TLS_ONLY = (p: 'tls-hostname' | 'tls-authz') =>
  (['source', 'destination'] as const).map(
    (side): Refusal => ({
      side,
      params: { [p]: 'x' },
      error: `Parameter '${p}' is set but 'tls-creds' is empty: without TLS it would be ignored`,
    }),
  );

const PARAMETERS: Record<string, Decision> = {
  'announce-initial': { status: 'vacuous', proof: [VACUOUS] },
  'announce-max': { status: 'vacuous', proof: [VACUOUS] },
  'announce-rounds': { status: 'vacuous', proof: [VACUOUS] },
  'announce-step': { status: 'vacuous', proof: [VACUOUS] },
  'throttle-trigger-threshold': { status: 'vacuous', proof: [VACUOUS] },
  'cpu-throttle-initial': { status: 'vacuous', proof: [VACUOUS] },
  'cpu-throttle-increment': { status: 'vacuous', proof: [VACUOUS] },
  'cpu-throttle-tailslow': { status: 'vacuous', proof: [VACUOUS] },
  'tls-creds': {
    status: 'honoured (tcp, unix, fd), refused (file, exec) on the channel',
    proof: [
      'test/migration/tls-pairs.test.ts: multifd 4 over tcp, authz',
      'test/migration/tls-pairs.test.ts: one channel over unix with return path',
      'test/migration/tls-transports.test.ts: qmigrate source and destination refuse, saying why',
      'test/migration/options-tls.test.ts: source: tls-creds fails the connected channel',
    ],
  },
  'tls-hostname': {
    status: 'honoured (with tls-creds), refused (without)',
    refusals: TLS_ONLY('tls-hostname'),
    proof: [
      'test/migration/tls-pairs.test.ts: one channel over unix with return path',
      'test/migration/tls-refusals.test.ts: qmigrate source, QEMU 10.0 destination: each refusal',
    ],
  },
  'tls-authz': {
    status: 'honoured (with tls-creds), refused (without)',
    refusals: TLS_ONLY('tls-authz'),
    proof: [
      'test/migration/tls-pairs.test.ts: multifd 4 over tcp, authz',
      'test/migration/tls-refusals.test.ts: QEMU 10.0 source, qmigrate destination: each refusal',
    ],
  },
  'max-bandwidth': {
    status: 'honoured',
    proof: ['test/migration/features.test.ts: max-bandwidth limits the rate'],
  },
  'avail-switchover-bandwidth': {
    status: 'honoured',
    proof: ['test/migration/options-effects.test.ts: avail-switchover-bandwidth replaces the measured rate'],
  },
  'downtime-limit': {
    status: 'honoured',
    proof: ['test/migration/options-effects.test.ts: downtime-limit decides how much is left'],
  },
  'x-checkpoint-delay': { status: 'vacuous', proof: [VACUOUS] },
  'multifd-channels': { status: 'honoured', proof: ['test/migration/multifd-pairs.test.ts: {} channels'] },
  'xbzrle-cache-size': { status: 'vacuous', proof: [VACUOUS] },
  'max-postcopy-bandwidth': {
    status: 'honoured',
    proof: ['test/migration/postcopy-source-qemu.test.ts: a link cut in postcopy pauses both sides'],
  },
  'max-cpu-throttle': { status: 'vacuous', proof: [VACUOUS] },
  'multifd-compression': {
    status: 'honoured (none), refused (zlib, zstd with multifd), vacuous (without multifd)',
    refusals: (['source', 'destination'] as const).map((side) => ({
      side,
      caps: ['multifd'],
      params: { 'multifd-compression': 'zstd' },
      addr: inet({}),
      error: "multifd-compression 'zstd' is not supported by qmigrate (only 'none')",
    })),
    proof: [VACUOUS, 'test/migration/multifd-faults.test.ts: multifd-compression other than none'],
  },
  'multifd-zlib-level': { status: 'vacuous', proof: [VACUOUS] },
  'multifd-qatzip-level': { status: 'vacuous', proof: [VACUOUS] },
  'multifd-zstd-level': { status: 'vacuous', proof: [VACUOUS] },
  'block-bitmap-mapping': {
    status: 'vacuous',
    proof: [VACUOUS, 'test/qapi/cases.ts: block-bitmap-mapping: '],
  },
  'x-vcpu-dirty-limit-period': { status: 'vacuous', proof: [VACUOUS] },
  'vcpu-dirty-limit': { status: 'vacuous', proof: [VACUOUS] },
  mode: { status: 'see modes' },
  'zero-page-detection': {
    status: 'honoured',
    proof: [
      'test/migration/multifd-pairs.test.ts: zero-page-detection={}',
      'test/migration/options-effects.test.ts: zero-page-detection=none without multifd',
    ],
  },
  'direct-io': { status: 'vacuous', proof: [VACUOUS] },
};

const CPR_CHANNEL: MigrationAddress = { transport: 'socket', type: 'unix', path: '/nonexistent/cpr.sock' };

const MODES: Record<string, Decision> = {
  normal: { status: 'honoured', proof: ['test/migration/migrate-pairs.test.ts: over {}'] },
  'cpr-reboot': {
    status: 'refused (source), honoured (destination)',
    refusals: [
      {
        side: 'source',
        params: { mode: 'cpr-reboot' },
        addr: FILE,
        error:
          "Migration mode 'cpr-reboot' is not supported by qmigrate: the source would migrate the guest live instead of stopping it first",
      },
    ],
    proof: [
      'test/migration/options-cpr.test.ts: a qmigrate source refuses',
      'test/migration/options-cpr.test.ts: cpr-reboot destination',
    ],
  },
  'cpr-transfer': {
    status: 'refused',
    refusals: [
      {
        side: 'source',
        params: { mode: 'cpr-transfer' },
        cpr: CPR_CHANNEL,
        unsharedRam: ['ram'],
        error:
          'Memory region ram is not compatible with CPR. share=on is required for memory-backend objects, and aux-ram-share=on is required.',
      },
      {
        side: 'source',
        params: { mode: 'cpr-transfer' },
        cpr: { transport: 'exec', args: ['/bin/true'] },
        unsharedRam: SHARED,
        error: 'bad cpr channel address; must be unix',
      },
      {
        side: 'source',
        params: { mode: 'cpr-transfer' },
        cpr: CPR_CHANNEL,
        unsharedRam: SHARED,
        error:
          "Migration mode 'cpr-transfer' is not supported by qmigrate: it hands guest RAM over as file descriptors on the cpr channel, which Node cannot send",
      },
      {
        side: 'destination',
        params: { mode: 'cpr-transfer' },
        error:
          "Migration mode 'cpr-transfer' is not supported by qmigrate: it takes guest RAM over as file descriptors on the cpr channel, which Node cannot receive",
      },
    ],
    proof: [
      'test/migration/options-cpr.test.ts: CPR blocker',
      'test/migration/options-cpr.test.ts: qmigrate refuses and opens nothing',
    ],
  },
};

const CHANNEL_TYPES: Record<string, Decision> = {
  main: { status: 'honoured', proof: ['test/migration/migrate-pairs.test.ts: over {}'] },
  cpr: {
    status: 'refused',
    refusals: [
      {
        side: 'source',
        cpr: CPR_CHANNEL,
        error: "A 'cpr' channel is used only in migration mode 'cpr-transfer' (the mode is 'normal')",
      },
    ],
    proof: ['test/migration/options-cpr.test.ts: a cpr channel in mode normal'],
  },
};

const TRANSPORTS: Record<string, Decision> = {
  socket: { status: 'honoured', proof: ['test/migration/migrate-pairs.test.ts: over {}'] },
  exec: { status: 'honoured', proof: ['test/migration/migrate-pairs.test.ts: over {}'] },
  rdma: { status: 'refused', proof: ['test/migration/features.test.ts: rdma and vsock get a clear error'] },
  file: { status: 'honoured', proof: ['test/migration/migrate-pairs.test.ts: over {}'] },
  'socket inet': { status: 'honoured', proof: ['test/migration/migrate-pairs.test.ts: over {}'] },
  'socket unix': { status: 'honoured', proof: ['test/migration/migrate-pairs.test.ts: over {}'] },
  'socket vsock': {
    status: 'refused',
    proof: ['test/migration/features.test.ts: rdma and vsock get a clear error'],
  },
  'socket fd': { status: 'honoured', proof: ['test/migration/features.test.ts: fds inherited at start'] },
};

const ADDRESS_MEMBERS: Record<string, Decision> = {
  'inet host': { status: 'honoured', proof: ['test/migration/migrate-pairs.test.ts: over {}'] },
  'inet port': { status: 'honoured', proof: ['test/migration/migrate-pairs.test.ts: over {}'] },
  'inet numeric': {
    status: 'vacuous (source), honoured (listener)',
    refusals: [
      {
        side: 'destination',
        addr: inet({ host: 'localhost', numeric: true }),
        error: 'address resolution failed for localhost:0: Name or service not known',
        state: 'setup',
      },
    ],
    proof: [
      "test/migration/options-effects.test.ts: a source ignores 'numeric' and 'to'",
      'test/qapi/check-vs-vm.test.ts: listener',
    ],
  },
  'inet to': {
    status: 'vacuous (source), refused (listener)',
    refusals: [
      {
        side: 'destination',
        addr: inet({ to: 5 }),
        error: "Socket option 'to' is not supported by qmigrate: it listens on the one port given",
      },
    ],
    proof: ["test/migration/options-effects.test.ts: a source ignores 'numeric' and 'to'"],
  },
  ...Object.fromEntries(
    (['ipv4', 'ipv6'] as const).map((f) => [
      `inet ${f}`,
      {
        status: 'honoured (source; destination with an IP address), refused (destination with a host name)',
        refusals: [
          {
            side: 'destination',
            addr: inet({ host: 'localhost', [f]: true }),
            error:
              "Socket option 'ipv4' or 'ipv6' without an IP address is not supported by qmigrate: name resolution is not restricted to one address family",
          },
          {
            side: 'destination',
            addr: inet({ host: f === 'ipv4' ? '::1' : '127.0.0.1', [f]: true }),
            error: `address resolution failed for ${f === 'ipv4' ? '::1' : '127.0.0.1'}:0: Address family for hostname not supported`,
            state: 'setup',
          },
          {
            side: 'destination',
            addr: inet({ ipv4: false, ipv6: false }),
            error: 'Cannot disable IPv4 and IPv6 at same time',
            state: 'setup',
          },
        ],
        proof: ['test/qapi/check-vs-vm.test.ts: listener'],
      },
    ]),
  ),
  'inet keep-alive': {
    status: 'honoured',
    proof: ['test/migration/socket-address.test.ts: keep-alive'],
  },
  ...Object.fromEntries(
    (['mptcp'] as const).map((o) => [
      `inet ${o}`,
      {
        status: 'refused',
        refusals: (['source', 'destination'] as const).map(
          (side): Refusal => ({
            side,
            addr: inet({ [o]: true }),
            error: "Socket option 'mptcp' is not supported by qmigrate: Node has no IPPROTO_MPTCP",
          }),
        ),
      },
    ]),
  ),
  'unix path': { status: 'honoured', proof: ['test/migration/migrate-pairs.test.ts: over {}'] },
  'unix abstract': {
    status: 'honoured',
    proof: ['test/migration/socket-address.test.ts: abstract'],
  },
  'unix tight': {
    status: 'honoured',
    proof: ['test/migration/socket-address.test.ts: abstract'],
  },
};

const ARGUMENTS: Record<string, Decision> = {
  'migrate uri': { status: 'honoured', proof: ['test/migration/migrate-pairs.test.ts: with uri'] },
  'migrate channels': {
    status: 'honoured',
    proof: ['test/migration/migrate-pairs.test.ts: over {}'],
  },
  'migrate detach': { status: 'vacuous', proof: [VACUOUS] },
  'migrate resume': {
    status: 'honoured',
    proof: [
      'test/qapi/cases.ts: migrate resume without a paused migration',
      'test/migration/postcopy-source-qemu.test.ts: migrate resume:true finishes it',
      'test/migration/postcopy-source-requests.test.ts: a peer that never answers the handshake',
    ],
  },
  'migrate-incoming uri': {
    status: 'honoured',
    proof: ['test/migration/faults.test.ts: truncated stream file'],
  },
  'migrate-incoming channels': {
    status: 'honoured',
    proof: ['test/migration/migrate-pairs.test.ts: over {}'],
  },
  'migrate-incoming exit-on-error': {
    status: 'honoured',
    proof: [
      'test/migration/faults.test.ts: default exit-on-error: the process exits 1',
      'test/migration/options-tls.test.ts: exit-on-error={}',
    ],
  },
};

/** Each section of docs/options.md, the schema's list for it, and the decisions. */
const SECTIONS: { heading: string; names: string[]; decisions: Record<string, Decision> }[] = [
  { heading: 'Capabilities', names: schema.enumValues('MigrationCapability'), decisions: CAPABILITIES },
  {
    heading: 'Parameters',
    names: schema.allMembers('MigrationParameters').map((m) => m.name),
    decisions: PARAMETERS,
  },
  { heading: 'Modes', names: schema.enumValues('MigMode'), decisions: MODES },
  { heading: 'Channel types', names: schema.enumValues('MigrationChannelType'), decisions: CHANNEL_TYPES },
  {
    heading: 'Transports',
    names: [
      ...schema.enumValues('MigrationAddressType'),
      ...schema.enumValues('SocketAddressType').map((t) => `socket ${t}`),
    ],
    decisions: TRANSPORTS,
  },
  {
    heading: 'Socket address options',
    names: [
      ...schema.allMembers('InetSocketAddress').map((m) => `inet ${m.name}`),
      ...schema.allMembers('UnixSocketAddress').map((m) => `unix ${m.name}`),
    ],
    decisions: ADDRESS_MEMBERS,
  },
  {
    heading: 'Command arguments',
    names: (['migrate', 'migrate-incoming'] as const).flatMap((c) =>
      schema.allMembers(schema.commands.get(c)!.argType!).map((m) => `${c} ${m.name}`),
    ),
    decisions: ARGUMENTS,
  },
];

/** The rows of one `## heading` table in docs/options.md: name -> cells. */
function docRows(doc: string, heading: string): Map<string, string[]> {
  const start = doc.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `docs/options.md has no "## ${heading}" section`);
  const end = doc.indexOf('\n## ', start + 1);
  const rows = new Map<string, string[]>();
  for (const line of doc.slice(start, end < 0 ? undefined : end).split('\n')) {
    const m = /^\| `([^`]+)`\s*\|(.*)\|$/.exec(line);
    if (m)
      rows.set(
        m[1]!,
        m[2]!.split(' | ').map((c) => c.trim()),
      );
  }
  return rows;
}

const doc = readFileSync(`${root}docs/options.md`, 'utf8');

for (const { heading, names, decisions } of SECTIONS) {
  test(`${heading}: every one the schema accepts has a decision, documented as such`, () => {
    const rows = docRows(doc, heading);
    for (const name of names) {
      const d = decisions[name];
      assert.ok(d, `${heading}: '${name}' is in the schema but has no decision in options-audit.test.ts`);
      const row = rows.get(name);
      assert.ok(row, `${heading}: '${name}' has no row in docs/options.md`);
      assert.equal(
        row[0],
        d.status,
        `${heading}: '${name}' is '${d.status}' here, '${row[0]}' in docs/options.md`,
      );
      for (const r of d.refusals ?? []) {
        assert.ok(row.join(' ').includes(r.error), `docs/options.md's row for '${name}' quotes: ${r.error}`);
      }
    }
    const extra = [...Object.keys(decisions), ...rows.keys()].filter((n) => !names.includes(n));
    assert.deepEqual(extra, [], `${heading}: decided or documented but not in the schema`);
  });

  test(`${heading}: each honoured or vacuous one names tests that exist`, () => {
    for (const name of names) {
      const d = decisions[name]!;
      if (d.status !== 'see modes' && !d.refusals)
        assert.ok(d.proof?.length, `${heading}: '${name}' has no proof`);
      for (const p of d.proof ?? []) {
        const [file, fragment] = p.split(': ', 2) as [string, string];
        // Titles written as templates match with `{}` for each placeholder.
        const text = readFileSync(`${root}${file}`, 'utf8').replace(/\$\{[^}]*\}/g, '{}');
        assert.ok(text.includes(fragment), `${file} has no test "${fragment}" (proof of '${name}')`);
      }
    }
  });

  const refusals = Object.entries(decisions).flatMap(([name, d]) =>
    (d.refusals ?? []).map((r) => [name, r] as const),
  );
  for (const [name, r] of refusals) {
    test(`${heading}: '${name}' refused on the ${r.side}${r.atSet ? ' when set' : ''}: ${r.error.slice(0, 60)}`, async () => {
      await refuse(r);
    });
  }
}

/** Runs a refusal on a fresh VM's Migration; the engine must never be reached. */
async function refuse(r: Refusal): Promise<void> {
  const runstate: RunState = r.side === 'source' ? 'running' : 'inmigrate';
  const calls: string[] = [];
  const engine: MigrationEngine = {
    startOutgoing: () => {
      calls.push('startOutgoing');
      return { cancel: () => true, continue() {} };
    },
    startIncoming: () => {
      calls.push('startIncoming');
      return { cancel() {} };
    },
  };
  const m = new Migration(
    { runstate: () => runstate, emit: () => {}, unsharedRam: () => r.unsharedRam ?? ['ram'] },
    engine,
  );
  const set = () => {
    if (r.params) m.options.setParameters(r.params);
    if (r.caps) m.setCapabilities(r.caps.map((capability) => ({ capability, state: true })));
  };
  const isIt = (e: unknown) =>
    e instanceof QapiError && e.errorClass === 'GenericError' && e.message === r.error;
  if (r.atSet) {
    assert.throws(set, isIt);
    return;
  }
  set();
  const channels = [
    { 'channel-type': 'main' as const, addr: r.addr ?? UNIX },
    ...(r.cpr ? [{ 'channel-type': 'cpr' as const, addr: r.cpr }] : []),
  ];
  const run = r.side === 'source' ? m.migrate({ channels }) : m.migrateIncoming({ channels });
  await assert.rejects(run, (e) => {
    assert.equal((e as Error).message, r.error);
    return isIt(e);
  });
  assert.deepEqual(calls, [], 'the engine was not reached');
  assert.equal(r.side === 'source' ? m.status : m.incomingStatus, r.state ?? 'none');
}
