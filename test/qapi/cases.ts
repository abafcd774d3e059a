/**
 * The argument and rule table: each case is one QMP command on a freshly started monitor,
 * after optional set-up commands, with the answer QEMU 10.0 gives. `checker-table.test.ts`
 * runs it against qmigrate's QAPI layer, `qemu-proof.test.ts` against a real QEMU 10.0, so
 * every expected text here is QEMU's own, not a guess. `$TMP` stands for a fresh directory.
 */
export type Expect = { error: string; class?: string } | { ok: true } | { return: Record<string, unknown> };

export interface Case {
  name: string;
  /** The -incoming option (default `defer`); null for none. */
  incoming?: string | null;
  setup?: [string, unknown][];
  execute: string;
  /** Arguments as a value, or as JSON text where the number form matters (`1.0`, 2^64). */
  args?: unknown;
  rawArgs?: string;
  expect: Expect;
  /** Where QEMU 10.0 answers differently from qmigrate on purpose: QEMU's answer, or 'crash'. */
  qemu?: Expect | 'crash';
  why?: string;
}

const err = (desc: string, cls = 'GenericError'): Expect => ({ error: desc, class: cls });
const ok: Expect = { ok: true };
const main = (addr: Record<string, unknown>) => ({ channels: [{ 'channel-type': 'main', addr }] });
const inet = (extra: Record<string, unknown> = {}) => ({
  transport: 'socket',
  type: 'inet',
  host: '127.0.0.1',
  port: '0',
  ...extra,
});
const caps = (...names: string[]): [string, unknown] => [
  'migrate-set-capabilities',
  { capabilities: names.map((capability) => ({ capability, state: true })) },
];
const params = (p: Record<string, unknown>): [string, unknown] => ['migrate-set-parameters', p];

/** Input-visitor errors: paths, types, enums, ranges. */
const visitor: Case[] = [
  {
    name: 'inet port missing',
    execute: 'migrate',
    args: main({ transport: 'socket', type: 'inet', host: 'h' }),
    expect: err("Parameter 'channels[0].addr.port' is missing"),
  },
  {
    name: 'inet port as number',
    execute: 'migrate',
    args: main(inet({ port: 4444 })),
    expect: err("Invalid parameter type for 'channels[0].addr.port', expected: string"),
  },
  {
    name: 'unknown transport',
    execute: 'migrate',
    args: main({ transport: 'carrier-pigeon' }),
    expect: err("Parameter 'transport' does not accept value 'carrier-pigeon'"),
  },
  {
    name: 'unexpected top-level member',
    execute: 'migrate',
    args: { bogus: 1 },
    expect: err("Parameter 'bogus' is unexpected"),
  },
  {
    name: 'channels not a list',
    execute: 'migrate',
    args: { channels: {} },
    expect: err("Invalid parameter type for 'channels', expected: array"),
  },
  {
    name: 'channel not an object',
    execute: 'migrate',
    args: { channels: ['x'] },
    expect: err("Invalid parameter type for 'channels[0]', expected: object"),
  },
  {
    name: 'channel-type missing',
    execute: 'migrate',
    args: { channels: [{ addr: inet() }] },
    expect: err("Parameter 'channels[0].channel-type' is missing"),
  },
  {
    name: 'channel-type unknown',
    execute: 'migrate',
    args: { channels: [{ 'channel-type': 'bogus', addr: inet() }] },
    expect: err("Parameter 'channel-type' does not accept value 'bogus'"),
  },
  {
    name: 'channel-type not a string',
    execute: 'migrate',
    args: { channels: [{ 'channel-type': 1, addr: inet() }] },
    expect: err("Invalid parameter type for 'channels[0].channel-type', expected: string"),
  },
  {
    name: 'addr missing',
    execute: 'migrate',
    args: { channels: [{ 'channel-type': 'main' }] },
    expect: err("Parameter 'channels[0].addr' is missing"),
  },
  {
    name: 'addr not an object',
    execute: 'migrate',
    args: { channels: [{ 'channel-type': 'main', addr: 'tcp:1:2' }] },
    expect: err("Invalid parameter type for 'channels[0].addr', expected: object"),
  },
  {
    name: 'transport missing',
    execute: 'migrate',
    args: main({ type: 'inet' }),
    expect: err("Parameter 'channels[0].addr.transport' is missing"),
  },
  {
    name: 'socket type missing',
    execute: 'migrate',
    args: main({ transport: 'socket', host: 'h', port: '1' }),
    expect: err("Parameter 'channels[0].addr.type' is missing"),
  },
  {
    name: 'socket type unknown',
    execute: 'migrate',
    args: main({ transport: 'socket', type: 'ipx' }),
    expect: err("Parameter 'type' does not accept value 'ipx'"),
  },
  {
    name: 'inet given a path',
    execute: 'migrate',
    args: main(inet({ path: '/x' })),
    expect: err("Parameter 'channels[0].addr.path' is unexpected"),
  },
  {
    name: 'rdma given a type',
    execute: 'migrate',
    args: main({ transport: 'rdma', type: 'inet', host: 'h', port: '1' }),
    expect: err("Parameter 'channels[0].addr.type' is unexpected"),
  },
  {
    name: 'unexpected member in channel',
    execute: 'migrate',
    args: { channels: [{ 'channel-type': 'main', addr: inet(), extra: true }] },
    expect: err("Parameter 'channels[0].extra' is unexpected"),
  },
  {
    name: 'missing beats unexpected',
    execute: 'migrate',
    args: main({ transport: 'socket', type: 'inet', host: 'h', zzz: 1 }),
    expect: err("Parameter 'channels[0].addr.port' is missing"),
  },
  {
    name: 'file offset as string',
    execute: 'migrate',
    args: main({ transport: 'file', filename: '/x', offset: '0x1000' }),
    expect: err("Parameter 'channels[0].addr.offset' expects uint64"),
  },
  {
    name: 'file offset missing',
    execute: 'migrate',
    args: main({ transport: 'file', filename: '/x' }),
    expect: err("Parameter 'channels[0].addr.offset' is missing"),
  },
  {
    name: 'file offset as double',
    execute: 'migrate',
    rawArgs:
      '{"channels":[{"channel-type":"main","addr":{"transport":"file","filename":"/x","offset":1.5}}]}',
    expect: err("Parameter 'channels[0].addr.offset' expects uint64"),
  },
  {
    name: 'file filename as number',
    execute: 'migrate',
    args: main({ transport: 'file', filename: 7, offset: 0 }),
    expect: err("Invalid parameter type for 'channels[0].addr.filename', expected: string"),
  },
  {
    name: 'exec args not a list',
    execute: 'migrate',
    args: main({ transport: 'exec', args: 'cat' }),
    expect: err("Invalid parameter type for 'channels[0].addr.args', expected: array"),
  },
  {
    name: 'exec arg not a string',
    execute: 'migrate',
    args: main({ transport: 'exec', args: ['cat', 1] }),
    expect: err("Invalid parameter type for 'channels[0].addr.args[1]', expected: string"),
  },
  {
    name: 'exec args missing',
    execute: 'migrate',
    args: main({ transport: 'exec' }),
    expect: err("Parameter 'channels[0].addr.args' is missing"),
  },
  {
    name: 'inet to above uint16',
    execute: 'migrate',
    args: main(inet({ to: 70000 })),
    expect: err("Parameter 'to' expects uint16_t"),
  },
  {
    name: 'inet to negative',
    execute: 'migrate',
    args: main(inet({ to: -1 })),
    expect: err("Parameter 'to' expects uint16_t"),
  },
  {
    name: 'inet to as string',
    execute: 'migrate',
    args: main(inet({ to: '5' })),
    expect: err("Parameter 'channels[0].addr.to' expects uint64"),
  },
  {
    name: 'inet ipv4 as string',
    execute: 'migrate',
    args: main(inet({ ipv4: 'yes' })),
    expect: err("Invalid parameter type for 'channels[0].addr.ipv4', expected: boolean"),
  },
  {
    name: 'inet keep-alive as number',
    execute: 'migrate',
    args: main(inet({ 'keep-alive': 1 })),
    expect: err("Invalid parameter type for 'channels[0].addr.keep-alive', expected: boolean"),
  },
  {
    name: 'unix path missing',
    execute: 'migrate',
    args: main({ transport: 'socket', type: 'unix' }),
    expect: err("Parameter 'channels[0].addr.path' is missing"),
  },
  {
    name: 'unix abstract as string',
    execute: 'migrate',
    args: main({ transport: 'socket', type: 'unix', path: '/x', abstract: 'on' }),
    expect: err("Invalid parameter type for 'channels[0].addr.abstract', expected: boolean"),
  },
  {
    name: 'vsock cid as number',
    execute: 'migrate',
    args: main({ transport: 'socket', type: 'vsock', cid: 3, port: '1' }),
    expect: err("Invalid parameter type for 'channels[0].addr.cid', expected: string"),
  },
  {
    name: 'fd str missing',
    execute: 'migrate',
    args: main({ transport: 'socket', type: 'fd' }),
    expect: err("Parameter 'channels[0].addr.str' is missing"),
  },
  {
    name: 'second channel bad',
    execute: 'migrate',
    args: {
      channels: [
        { 'channel-type': 'main', addr: inet() },
        { 'channel-type': 'cpr', addr: { transport: 'file' } },
      ],
    },
    expect: err("Parameter 'channels[1].addr.filename' is missing"),
  },
  {
    name: 'uri as number',
    execute: 'migrate',
    args: { uri: 5 },
    expect: err("Invalid parameter type for 'uri', expected: string"),
  },
  {
    name: 'uri null',
    execute: 'migrate',
    args: { uri: null },
    expect: err("Invalid parameter type for 'uri', expected: string"),
  },
  {
    name: 'resume as string',
    execute: 'migrate',
    args: { uri: 'exec:cat', resume: 'no' },
    expect: err("Invalid parameter type for 'resume', expected: boolean"),
  },
  {
    name: 'arguments not an object',
    execute: 'migrate',
    args: [],
    expect: err("QMP input member 'arguments' must be an object"),
  },
  {
    name: 'unknown command',
    execute: 'migrate-sideways',
    args: {},
    expect: err('The command migrate-sideways has not been found', 'CommandNotFound'),
  },
  {
    name: 'exit-on-error as string',
    execute: 'migrate-incoming',
    args: { uri: 'tcp:127.0.0.1:0', 'exit-on-error': 'no' },
    expect: err("Invalid parameter type for 'exit-on-error', expected: boolean"),
  },
  {
    name: 'incoming channel port as number',
    execute: 'migrate-incoming',
    args: main(inet({ port: 0 })),
    expect: err("Invalid parameter type for 'channels[0].addr.port', expected: string"),
  },
  {
    name: 'capabilities missing',
    execute: 'migrate-set-capabilities',
    args: {},
    expect: err("Parameter 'capabilities' is missing"),
  },
  {
    name: 'capability unknown',
    execute: 'migrate-set-capabilities',
    args: { capabilities: [{ capability: 'teleport', state: true }] },
    expect: err("Parameter 'capability' does not accept value 'teleport'"),
  },
  {
    name: 'capability state missing',
    execute: 'migrate-set-capabilities',
    args: { capabilities: [{ capability: 'events' }] },
    expect: err("Parameter 'capabilities[0].state' is missing"),
  },
  {
    name: 'capability state as string',
    execute: 'migrate-set-capabilities',
    args: { capabilities: [{ capability: 'events', state: 'on' }] },
    expect: err("Invalid parameter type for 'capabilities[0].state', expected: boolean"),
  },
  {
    name: 'capabilities not a list',
    execute: 'migrate-set-capabilities',
    args: { capabilities: { events: true } },
    expect: err("Invalid parameter type for 'capabilities', expected: array"),
  },
  {
    name: 'capability extra member',
    execute: 'migrate-set-capabilities',
    args: { capabilities: [{ capability: 'events', state: true, why: 1 }] },
    expect: err("Parameter 'capabilities[0].why' is unexpected"),
  },
  {
    name: 'multifd-channels above uint8',
    execute: 'migrate-set-parameters',
    args: { 'multifd-channels': 256 },
    expect: err("Parameter 'multifd-channels' expects uint8_t"),
  },
  {
    name: 'multifd-channels as double',
    execute: 'migrate-set-parameters',
    rawArgs: '{"multifd-channels": 2.0}',
    expect: err("Parameter 'multifd-channels' expects uint64"),
  },
  {
    name: 'multifd-channels as string',
    execute: 'migrate-set-parameters',
    args: { 'multifd-channels': '2' },
    expect: err("Parameter 'multifd-channels' expects uint64"),
  },
  {
    name: 'max-bandwidth 2^64',
    execute: 'migrate-set-parameters',
    rawArgs: '{"max-bandwidth": 18446744073709551616}',
    expect: err("Parameter 'max-bandwidth' expects uint64"),
  },
  {
    name: 'tls-creds as number',
    execute: 'migrate-set-parameters',
    args: { 'tls-creds': 1 },
    expect: err("Invalid parameter type for 'tls-creds', expected: StrOrNull"),
  },
  {
    name: 'multifd-compression unknown',
    execute: 'migrate-set-parameters',
    args: { 'multifd-compression': 'qpl' },
    expect: err("Parameter 'multifd-compression' does not accept value 'qpl'"),
  },
  {
    name: 'mode unknown',
    execute: 'migrate-set-parameters',
    args: { mode: 'teleport' },
    expect: err("Parameter 'mode' does not accept value 'teleport'"),
  },
  {
    name: 'zero-page-detection unknown',
    execute: 'migrate-set-parameters',
    args: { 'zero-page-detection': 'magic' },
    expect: err("Parameter 'zero-page-detection' does not accept value 'magic'"),
  },
  {
    name: 'downtime-limit as string',
    execute: 'migrate-set-parameters',
    args: { 'downtime-limit': '300' },
    expect: err("Parameter 'downtime-limit' expects uint64"),
  },
  {
    name: 'tailslow as number',
    execute: 'migrate-set-parameters',
    args: { 'cpu-throttle-tailslow': 1 },
    expect: err("Invalid parameter type for 'cpu-throttle-tailslow', expected: boolean"),
  },
  {
    name: 'bitmap mapping node-name missing',
    execute: 'migrate-set-parameters',
    args: { 'block-bitmap-mapping': [{}] },
    expect: err("Parameter 'block-bitmap-mapping[0].node-name' is missing"),
  },
  {
    name: 'unknown parameter',
    execute: 'migrate-set-parameters',
    args: { 'multifd-lanes': 4 },
    expect: err("Parameter 'multifd-lanes' is unexpected"),
  },
  {
    name: 'migrate-continue state missing',
    execute: 'migrate-continue',
    args: {},
    expect: err("Parameter 'state' is missing"),
  },
  {
    name: 'migrate-continue state unknown',
    execute: 'migrate-continue',
    args: { state: 'paused' },
    expect: err("Parameter 'state' does not accept value 'paused'"),
  },
  {
    name: 'pmemsave val missing',
    execute: 'pmemsave',
    args: { size: 4096, filename: '/x' },
    expect: err("Parameter 'val' is missing"),
  },
  {
    name: 'pmemsave size as string',
    execute: 'pmemsave',
    args: { val: 0, size: '4k', filename: '/x' },
    expect: err("Parameter 'size' expects uint64"),
  },
  {
    name: 'pmemsave val as double',
    execute: 'pmemsave',
    rawArgs: '{"val": 1.0, "size": 1, "filename": "/x"}',
    expect: err("Parameter 'val' expects uint64"),
  },
  {
    name: 'pmemsave filename as number',
    execute: 'pmemsave',
    args: { val: 0, size: 1, filename: 2 },
    expect: err("Invalid parameter type for 'filename', expected: string"),
  },
  {
    name: 'migrate-recover uri missing',
    execute: 'migrate-recover',
    args: {},
    expect: err("Parameter 'uri' is missing"),
  },
  {
    name: 'hmp command-line missing',
    execute: 'human-monitor-command',
    args: {},
    expect: err("Parameter 'command-line' is missing"),
  },
  {
    name: 'hmp cpu-index as string',
    execute: 'human-monitor-command',
    args: { 'command-line': 'info status', 'cpu-index': '0' },
    expect: err("Invalid parameter type for 'cpu-index', expected: integer"),
  },
  {
    name: 'hmp cpu-index as double',
    execute: 'human-monitor-command',
    rawArgs: '{"command-line": "info status", "cpu-index": 1.5}',
    expect: err("Invalid parameter type for 'cpu-index', expected: integer"),
  },
  {
    name: 'add-fd fdset-id above int64',
    execute: 'add-fd',
    rawArgs: '{"fdset-id": 9223372036854775808}',
    expect: err("Invalid parameter type for 'fdset-id', expected: integer"),
  },
  { name: 'getfd fdname missing', execute: 'getfd', args: {}, expect: err("Parameter 'fdname' is missing") },
  {
    name: 'closefd fdname as number',
    execute: 'closefd',
    args: { fdname: 3 },
    expect: err("Invalid parameter type for 'fdname', expected: string"),
  },
  {
    name: 'query-status takes no arguments',
    execute: 'query-status',
    args: { verbose: true },
    expect: err("Parameter 'verbose' is unexpected"),
  },
  {
    name: 'stop takes no arguments',
    execute: 'stop',
    args: { now: 1 },
    expect: err("Parameter 'now' is unexpected"),
  },
  {
    name: 'migrate_cancel takes no arguments',
    execute: 'migrate_cancel',
    args: { force: true },
    expect: err("Parameter 'force' is unexpected"),
  },
  {
    name: 'query-migrate takes no arguments',
    execute: 'query-migrate',
    args: { x: 1 },
    expect: err("Parameter 'x' is unexpected"),
  },
];

/** The legacy URI grammar, through migrate-incoming on a -incoming defer monitor. */
const uriError = (uri: string, desc: string, why?: string): Case => ({
  name: `uri ${JSON.stringify(uri)}`,
  execute: 'migrate-incoming',
  args: { uri },
  expect: err(desc),
  why,
});
const host65 = 'h'.repeat(65);
const uris: Case[] = [
  uriError('tcp:127.0.0.1', "error parsing address '127.0.0.1'"),
  uriError('tcp:[::1]', "error parsing IPv6 address '[::1]'"),
  uriError('tcp:', "error parsing address ''"),
  uriError('tcp::', "error parsing port in address ':'"),
  uriError('tcp:[::1]:', "error parsing IPv6 address '[::1]:'"),
  uriError('tcp:[]:5', "error parsing IPv6 address '[]:5'"),
  uriError('tcp:1.2.3.4:5,to=abc', 'error parsing to= argument'),
  uriError('tcp:1.2.3.4:5,to=5x', 'error parsing to= argument'),
  uriError('tcp:1.2.3.4:5,ipv4=maybe', "error parsing 'ipv4' flag '=maybe'"),
  uriError('tcp:1.2.3.4:5,ipv6=on,,x', "error parsing 'ipv6' flag '=on,,x'"),
  uriError('tcp:1.2.3.4:5,keep-alive=1,to=4', "error parsing 'keep-alive' flag '=1,to=4'"),
  uriError('tcp:1.2.3.4:5,mptcp=yes', "error parsing 'mptcp' flag '=yes'"),
  uriError(
    `tcp:${host65}:1`,
    `error parsing address '${host65}:1'`,
    'sscanf reads at most 64 host characters',
  ),
  uriError('unix:', 'invalid Unix socket address'),
  uriError('vsock:1:2,x', "trailing characters in address '1:2,x'"),
  uriError('vsock:1', "error parsing address '1'"),
  uriError('vsock:', "error parsing address ''"),
  uriError('fd:', 'invalid file descriptor address'),
  uriError('file:/tmp/x,offset=abc', 'file URI has bad offset abc: Invalid argument'),
  uriError('file:/tmp/x,offset=1.5', 'file URI has bad offset 1.5: Invalid argument'),
  uriError('file:/tmp/x,offset=-1', 'file URI has bad offset -1: Numerical result out of range'),
  uriError('file:/tmp/x,offset=', 'file URI has bad offset : Invalid argument'),
  uriError('file:/tmp/x,offset=0x', 'file URI has bad offset 0x: Invalid argument'),
  uriError('file:/tmp/x,offset=0x10M', 'file URI has bad offset 0x10M: Invalid argument'),
  uriError('file:/tmp/x,offset=16E', 'file URI has bad offset 16E: Numerical result out of range'),
  uriError(
    'file:/tmp/x,offset=99999999999999999999',
    'file URI has bad offset 99999999999999999999: Numerical result out of range',
  ),
  uriError('file:/tmp/x,offset=1,offset=2', 'file URI has bad offset 1,offset=2: Invalid argument'),
  uriError('foo:bar', 'unknown migration protocol: foo:bar'),
  uriError('TCP:127.0.0.1:1', 'unknown migration protocol: TCP:127.0.0.1:1'),
  uriError('defer', 'unknown migration protocol: defer'),
  uriError('', 'unknown migration protocol: '),
  {
    ...uriError('rdma:127.0.0.1', "error parsing address '127.0.0.1'"),
    qemu: 'crash',
    why: 'QEMU 10.0 frees a member of the address on this path and aborts',
  },
  {
    name: 'uri tcp port 0 accepted',
    execute: 'migrate-incoming',
    args: { uri: 'tcp:127.0.0.1:0' },
    expect: ok,
  },
  {
    name: 'uri tcp options accepted',
    execute: 'migrate-incoming',
    args: { uri: 'tcp:127.0.0.1:0,to=70000,ipv4=on,keep-alive' },
    expect: ok,
  },
  {
    name: 'uri tcp unknown option ignored (10.0)',
    execute: 'migrate-incoming',
    args: { uri: 'tcp:127.0.0.1:0,foo=bar' },
    expect: ok,
  },
  { name: 'uri unix accepted', execute: 'migrate-incoming', args: { uri: 'unix:$TMP/in.sock' }, expect: ok },
  { name: 'uri exec accepted', execute: 'migrate-incoming', args: { uri: 'exec:sleep 5' }, expect: ok },
  {
    name: 'channels unix accepted',
    execute: 'migrate-incoming',
    args: main({ transport: 'socket', type: 'unix', path: '$TMP/in2.sock' }),
    expect: ok,
  },
  {
    name: 'uri file with hex offset',
    incoming: null,
    execute: 'migrate',
    args: { uri: 'file:$TMP/out.mig,offset=0x1000' },
    expect: ok,
  },
  {
    name: 'uri file with suffix offset',
    incoming: null,
    execute: 'migrate',
    args: { uri: 'file:$TMP/out.mig,offset=1.5K' },
    expect: ok,
  },
];

/** Command-level rules: uri xor channels, channel counts, state, transport, caps, params. */
/** block-bitmap-mapping: QEMU 10.0 checks it at set time although a RAM-only guest has no block node. */
function bitmapMappingCases(): Case[] {
  const node = (name: string, alias: string, bitmaps: { name: string; alias: string }[] = []) => ({
    'node-name': name,
    alias,
    bitmaps,
  });
  const bad = (name: string, mapping: unknown[], why: string, extra: Record<string, unknown> = {}): Case => ({
    name: `block-bitmap-mapping: ${name}`,
    execute: 'migrate-set-parameters',
    args: { 'block-bitmap-mapping': mapping, ...extra },
    expect: err(`Invalid mapping given for block-bitmap-mapping: ${why}`),
  });
  const x = (n: number) => 'x'.repeat(n);
  return [
    bad('node name twice', [node('n', 'a'), node('n', 'b')], "The node name 'n' is mapped twice"),
    bad(
      'node alias twice',
      [node('n', 'a'), node('m', 'b'), node('o', 'a')],
      "The node alias 'a' is used twice",
    ),
    bad('alias with a space', [node('n', 'a b')], "The node alias 'a b' is not well-formed"),
    bad('alias starting with a digit', [node('n', '1a')], "The node alias '1a' is not well-formed"),
    bad('alias not ASCII', [node('n', '\u00e9')], "The node alias '\u00e9' is not well-formed"),
    bad('alias of 256 bytes', [node(x(32), x(256))], `The node alias '${x(256)}' is longer than 255 bytes`),
    bad('node name of 32 bytes', [node(x(32), 'a')], `The node name '${x(32)}' is longer than 31 bytes`),
    bad(
      'bitmap alias of 256 bytes',
      [node('n', 'a', [{ name: x(1024), alias: x(256) }])],
      `The bitmap alias '${x(256)}' is longer than 255 bytes`,
    ),
    bad(
      'bitmap name of 1024 bytes',
      [node('n', 'a', [{ name: x(1024), alias: 'c' }])],
      `The bitmap name '${x(1024)}' is longer than 1023 bytes`,
    ),
    bad(
      'bitmap twice',
      [
        node('n', 'a', [
          { name: 'b', alias: 'c' },
          { name: 'd', alias: 'c' },
          { name: 'b', alias: 'e' },
        ]),
      ],
      "The bitmap 'n'/'b' is mapped twice",
    ),
    bad(
      'bitmap alias twice',
      [
        node('n', 'a', [
          { name: 'b', alias: 'c' },
          { name: 'd', alias: 'c' },
        ]),
      ],
      "The bitmap alias 'a'/'c' is used twice",
    ),
    bad(
      'name pass before bitmaps of the next node',
      [node('n', 'a'), node('n', 'b', [{ name: 'b', alias: x(256) }])],
      "The node name 'n' is mapped twice",
    ),
    bad('checked before vcpu-dirty-limit', [node('n', 'a b')], "The node alias 'a b' is not well-formed", {
      'vcpu-dirty-limit': 0,
    }),
    {
      name: 'block-bitmap-mapping: checked after announce-step',
      execute: 'migrate-set-parameters',
      args: { 'block-bitmap-mapping': [node('n', 'a b')], 'announce-step': 0 },
      expect: err("Parameter 'announce_step' expects a value between 0 and 10000"),
    },
    {
      name: 'block-bitmap-mapping: well-formed, at the limits, same bitmap names on two nodes',
      execute: 'migrate-set-parameters',
      args: {
        'block-bitmap-mapping': [
          node(x(31), 'A9', [{ name: x(1023), alias: x(255) }]),
          node('m', 'b.-_', [{ name: x(1023), alias: '1 \u00e9' }]),
        ],
      },
      expect: ok,
    },
  ];
}

const rules: Case[] = [
  {
    name: 'neither uri nor channels',
    execute: 'migrate',
    args: {},
    expect: err("need either 'uri' or 'channels' argument"),
  },
  {
    name: 'both uri and channels',
    execute: 'migrate',
    args: { uri: 'exec:cat', ...main(inet()) },
    expect: err("need either 'uri' or 'channels' argument"),
  },
  {
    name: 'empty channels alone',
    execute: 'migrate',
    args: { channels: [] },
    expect: err("need either 'uri' or 'channels' argument"),
  },
  {
    name: 'incoming with neither',
    execute: 'migrate-incoming',
    args: {},
    expect: err("need either 'uri' or 'channels' argument"),
  },
  {
    name: 'incoming empty channels alone',
    execute: 'migrate-incoming',
    args: { channels: [] },
    expect: err("need either 'uri' or 'channels' argument"),
  },
  {
    name: 'uri with empty channels is uri-only',
    incoming: null,
    execute: 'migrate',
    args: { uri: 'exec:cat > /dev/null', channels: [] },
    expect: ok,
  },
  {
    name: 'two main channels',
    execute: 'migrate',
    args: {
      channels: [
        { 'channel-type': 'main', addr: inet() },
        { 'channel-type': 'main', addr: { transport: 'exec', args: ['x'] } },
      ],
    },
    expect: err('Channel list has more than one main entry'),
  },
  {
    name: 'two cpr channels',
    execute: 'migrate',
    args: {
      channels: [
        { 'channel-type': 'cpr', addr: inet() },
        { 'channel-type': 'cpr', addr: { transport: 'exec', args: ['x'] } },
      ],
    },
    expect: err('Channel list has more than one cpr entry'),
  },
  {
    name: 'incoming with two channels',
    execute: 'migrate-incoming',
    args: {
      channels: [
        { 'channel-type': 'main', addr: inet() },
        { 'channel-type': 'cpr', addr: inet() },
      ],
    },
    expect: err("Channel list must have only one entry, for type 'main'"),
  },
  {
    name: 'migrate with only a cpr channel',
    incoming: null,
    execute: 'migrate',
    args: { channels: [{ 'channel-type': 'cpr', addr: inet() }] },
    expect: err('Channel list has no main entry'),
    qemu: 'crash',
    why: 'QEMU 10.0 dereferences the missing main channel',
  },
  {
    name: 'incoming with only a cpr channel',
    execute: 'migrate-incoming',
    args: { channels: [{ 'channel-type': 'cpr', addr: inet() }] },
    expect: err('Channel list has no main entry'),
    qemu: ok,
    why: 'QEMU 10.0 silently takes the cpr entry as main',
  },
  {
    name: 'exec with empty args',
    incoming: null,
    execute: 'migrate',
    args: main({ transport: 'exec', args: [] }),
    expect: err("exec migration needs a program to run: 'args' is empty"),
    qemu: 'crash',
    why: 'QEMU 10.0 passes an empty argv to g_spawn and crashes',
  },
  {
    name: 'migrate resume without a paused migration',
    execute: 'migrate',
    args: { uri: 'exec:cat', resume: true },
    expect: err('Cannot resume if there is no paused migration'),
  },
  {
    name: 'migrate on a destination',
    execute: 'migrate',
    args: { uri: 'exec:cat' },
    expect: err('Guest is waiting for an incoming migration'),
  },
  {
    name: 'incoming without -incoming',
    incoming: null,
    execute: 'migrate-incoming',
    args: { uri: 'tcp:127.0.0.1:0' },
    expect: err("'-incoming' was not specified on the command line"),
  },
  {
    name: 'incoming twice',
    setup: [['migrate-incoming', { uri: 'tcp:127.0.0.1:0' }]],
    execute: 'migrate-incoming',
    args: { uri: 'tcp:127.0.0.1:0' },
    expect: err('The incoming migration has already been started'),
  },
  {
    name: 'incoming after -incoming URI',
    incoming: 'tcp:127.0.0.1:0',
    execute: 'migrate-incoming',
    args: { uri: 'tcp:127.0.0.1:0' },
    expect: err('The incoming migration has already been started'),
  },
  {
    name: 'incoming: already-started beats bad arguments',
    incoming: 'tcp:127.0.0.1:0',
    execute: 'migrate-incoming',
    args: {},
    expect: err('The incoming migration has already been started'),
  },
  {
    name: 'multifd over exec',
    incoming: null,
    setup: [caps('multifd')],
    execute: 'migrate',
    args: { uri: 'exec:cat' },
    expect: err('Migration requires multi-channel URIs (e.g. tcp)'),
  },
  {
    name: 'multifd over fd',
    incoming: null,
    setup: [caps('multifd')],
    execute: 'migrate',
    args: main({ transport: 'socket', type: 'fd', str: 'nosuch' }),
    expect: err('Migration requires multi-channel URIs (e.g. tcp)'),
  },
  {
    name: 'multifd over file without mapped-ram',
    incoming: null,
    setup: [caps('multifd')],
    execute: 'migrate',
    args: { uri: 'file:$TMP/f' },
    expect: err('Migration requires multi-channel URIs (e.g. tcp)'),
  },
  {
    name: 'mapped-ram over tcp',
    incoming: null,
    setup: [caps('mapped-ram')],
    execute: 'migrate',
    args: { uri: 'tcp:127.0.0.1:1' },
    expect: err('Migration requires seekable transport (e.g. file)'),
  },
  {
    name: 'mapped-ram seekable check comes first',
    incoming: null,
    setup: [caps('mapped-ram', 'multifd')],
    execute: 'migrate',
    args: { uri: 'exec:cat' },
    expect: err('Migration requires seekable transport (e.g. file)'),
  },
  {
    name: 'multifd checked on the destination',
    setup: [caps('multifd')],
    execute: 'migrate-incoming',
    args: { uri: 'exec:cat' },
    expect: err('Migration requires multi-channel URIs (e.g. tcp)'),
  },
  {
    name: 'transport check before runstate check',
    setup: [caps('multifd')],
    execute: 'migrate',
    args: { uri: 'exec:cat' },
    expect: err('Migration requires multi-channel URIs (e.g. tcp)'),
  },
  {
    name: 'postcopy-preempt over exec',
    incoming: null,
    setup: [caps('postcopy-ram'), caps('postcopy-preempt')],
    execute: 'migrate',
    args: { uri: 'exec:cat' },
    expect: err('Migration requires multi-channel URIs (e.g. tcp)'),
  },
  {
    name: 'cpr-transfer needs a cpr channel',
    incoming: null,
    setup: [params({ mode: 'cpr-transfer' })],
    execute: 'migrate',
    args: main({ transport: 'socket', type: 'unix', path: '$TMP/m.sock' }),
    expect: err("missing 'cpr' migration channel"),
  },
  {
    name: 'cpr-transfer refuses file',
    incoming: null,
    setup: [params({ mode: 'cpr-transfer' })],
    execute: 'migrate',
    args: {
      channels: [
        { 'channel-type': 'main', addr: { transport: 'file', filename: '$TMP/f', offset: 0 } },
        { 'channel-type': 'cpr', addr: { transport: 'socket', type: 'unix', path: '$TMP/c.sock' } },
      ],
    },
    expect: err('Migration requires streamable transport (eg unix)'),
  },
  {
    name: 'cpr-reboot with postcopy',
    incoming: null,
    setup: [caps('postcopy-ram'), params({ mode: 'cpr-reboot' })],
    execute: 'migrate',
    args: { uri: 'exec:cat' },
    expect: err('Cannot use postcopy with CPR'),
  },
  {
    name: 'mapped-ram with TLS',
    incoming: null,
    setup: [caps('mapped-ram'), params({ 'tls-creds': 'tls0' })],
    execute: 'migrate',
    args: { uri: 'file:$TMP/f' },
    expect: err('Cannot use TLS with mapped-ram'),
  },
  {
    name: 'mapped-ram with compression',
    incoming: null,
    setup: [caps('mapped-ram'), params({ 'multifd-compression': 'zlib' })],
    execute: 'migrate',
    args: { uri: 'file:$TMP/f' },
    expect: err('Cannot use compression with mapped-ram'),
  },
  {
    name: 'multifd with postcopy-ram',
    execute: 'migrate-set-capabilities',
    args: {
      capabilities: [
        { capability: 'multifd', state: true },
        { capability: 'postcopy-ram', state: true },
      ],
    },
    expect: err('Postcopy is not yet compatible with multifd'),
  },
  {
    name: 'later list entries override earlier',
    execute: 'migrate-set-capabilities',
    args: {
      capabilities: [
        { capability: 'multifd', state: true },
        { capability: 'postcopy-ram', state: true },
        { capability: 'multifd', state: false },
      ],
    },
    expect: ok,
  },
  {
    name: 'zero-copy-send without multifd',
    execute: 'migrate-set-capabilities',
    args: { capabilities: [{ capability: 'zero-copy-send', state: true }] },
    expect: err('Zero copy only available for non-compressed non-TLS multifd migration'),
  },
  {
    name: 'zero-copy-send with multifd',
    execute: 'migrate-set-capabilities',
    args: {
      capabilities: [
        { capability: 'zero-copy-send', state: true },
        { capability: 'multifd', state: true },
      ],
    },
    expect: ok,
  },
  {
    name: 'postcopy-preempt alone',
    execute: 'migrate-set-capabilities',
    args: { capabilities: [{ capability: 'postcopy-preempt', state: true }] },
    expect: err('Postcopy preempt requires postcopy-ram'),
  },
  {
    name: 'switchover-ack without return-path',
    execute: 'migrate-set-capabilities',
    args: { capabilities: [{ capability: 'switchover-ack', state: true }] },
    expect: err("Capability 'switchover-ack' requires capability 'return-path'"),
  },
  {
    name: 'dirty-limit without KVM',
    execute: 'migrate-set-capabilities',
    args: { capabilities: [{ capability: 'dirty-limit', state: true }] },
    expect: err("dirty-limit requires KVM with accelerator property 'dirty-ring-size' set"),
  },
  {
    name: 'dirty-limit with auto-converge',
    execute: 'migrate-set-capabilities',
    args: {
      capabilities: [
        { capability: 'dirty-limit', state: true },
        { capability: 'auto-converge', state: true },
      ],
    },
    expect: err('dirty-limit conflicts with auto-converge either of then available currently'),
  },
  {
    name: 'multifd with xbzrle',
    execute: 'migrate-set-capabilities',
    args: {
      capabilities: [
        { capability: 'multifd', state: true },
        { capability: 'xbzrle', state: true },
      ],
    },
    expect: err('Multifd is not compatible with xbzrle'),
  },
  {
    name: 'mapped-ram with xbzrle',
    execute: 'migrate-set-capabilities',
    args: {
      capabilities: [
        { capability: 'mapped-ram', state: true },
        { capability: 'xbzrle', state: true },
      ],
    },
    expect: err('Mapped-ram migration is incompatible with xbzrle'),
  },
  {
    name: 'mapped-ram with postcopy',
    incoming: null,
    execute: 'migrate-set-capabilities',
    args: {
      capabilities: [
        { capability: 'mapped-ram', state: true },
        { capability: 'postcopy-ram', state: true },
      ],
    },
    expect: err('Mapped-ram migration is incompatible with postcopy'),
  },
  {
    name: 'postcopy with ignore-shared',
    incoming: null,
    execute: 'migrate-set-capabilities',
    args: {
      capabilities: [
        { capability: 'postcopy-ram', state: true },
        { capability: 'x-ignore-shared', state: true },
      ],
    },
    expect: err('Postcopy is not compatible with ignore-shared'),
  },
  {
    name: 'background-snapshot with return-path',
    incoming: null,
    execute: 'migrate-set-capabilities',
    args: {
      capabilities: [
        { capability: 'background-snapshot', state: true },
        { capability: 'return-path', state: true },
      ],
    },
    expect: err('Background-snapshot is not compatible with return-path'),
  },
  {
    name: 'multifd after incoming started',
    setup: [['migrate-incoming', { uri: 'tcp:127.0.0.1:0' }]],
    execute: 'migrate-set-capabilities',
    args: { capabilities: [{ capability: 'multifd', state: true }] },
    expect: err('Multifd must be set before incoming starts'),
  },
  {
    name: 'zero-copy then compression',
    setup: [caps('zero-copy-send', 'multifd')],
    execute: 'migrate-set-parameters',
    args: { 'multifd-compression': 'zlib' },
    expect: err('Zero copy only available for non-compressed non-TLS multifd migration'),
  },
  {
    name: 'multifd-channels 0',
    execute: 'migrate-set-parameters',
    args: { 'multifd-channels': 0 },
    expect: err("Parameter 'multifd_channels' expects a value between 1 and 255"),
  },
  {
    name: 'downtime-limit too high',
    execute: 'migrate-set-parameters',
    args: { 'downtime-limit': 2000001 },
    expect: err("Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms"),
  },
  {
    name: 'downtime-limit at the limit',
    execute: 'migrate-set-parameters',
    args: { 'downtime-limit': 2000000 },
    expect: ok,
  },
  {
    name: 'announce-step 0',
    execute: 'migrate-set-parameters',
    args: { 'announce-step': 0 },
    expect: err("Parameter 'announce_step' expects a value between 0 and 10000"),
  },
  {
    name: 'announce-initial too high',
    execute: 'migrate-set-parameters',
    args: { 'announce-initial': 100001 },
    expect: err("Parameter 'announce_initial' expects a value between 0 and 100000"),
  },
  {
    name: 'announce-max too high',
    execute: 'migrate-set-parameters',
    args: { 'announce-max': 100001 },
    expect: err("Parameter 'announce_max' expects a value between 0 and 100000"),
  },
  {
    name: 'announce-rounds too high',
    execute: 'migrate-set-parameters',
    args: { 'announce-rounds': 1001 },
    expect: err("Parameter 'announce_rounds' expects a value between 0 and 1000"),
  },
  {
    name: 'xbzrle-cache-size below a page',
    execute: 'migrate-set-parameters',
    args: { 'xbzrle-cache-size': 1024 },
    expect: err("Parameter 'xbzrle_cache_size' expects a power of two no less than the target page size"),
  },
  {
    name: 'xbzrle-cache-size not a power of two',
    execute: 'migrate-set-parameters',
    args: { 'xbzrle-cache-size': 12288 },
    expect: err("Parameter 'xbzrle_cache_size' expects a power of two no less than the target page size"),
  },
  {
    name: 'max-cpu-throttle below initial',
    execute: 'migrate-set-parameters',
    args: { 'max-cpu-throttle': 5 },
    expect: err("Parameter 'max_cpu_throttle' expects an integer in the range of cpu_throttle_initial to 99"),
  },
  {
    name: 'merged set is checked',
    setup: [params({ 'max-cpu-throttle': 50 })],
    execute: 'migrate-set-parameters',
    args: { 'cpu-throttle-initial': 60 },
    expect: err("Parameter 'max_cpu_throttle' expects an integer in the range of cpu_throttle_initial to 99"),
  },
  {
    name: 'cpu-throttle-initial 0',
    execute: 'migrate-set-parameters',
    args: { 'cpu-throttle-initial': 0 },
    expect: err("Parameter 'cpu_throttle_initial' expects an integer in the range of 1 to 99"),
  },
  {
    name: 'cpu-throttle-increment 100',
    execute: 'migrate-set-parameters',
    args: { 'cpu-throttle-increment': 100 },
    expect: err("Parameter 'cpu_throttle_increment' expects an integer in the range of 1 to 99"),
  },
  {
    name: 'throttle-trigger-threshold 101',
    execute: 'migrate-set-parameters',
    args: { 'throttle-trigger-threshold': 101 },
    expect: err("Parameter 'throttle_trigger_threshold' expects an integer in the range of 1 to 100"),
  },
  {
    name: 'multifd-zlib-level 10',
    execute: 'migrate-set-parameters',
    args: { 'multifd-zlib-level': 10 },
    expect: err("Parameter 'multifd_zlib_level' expects a value between 0 and 9"),
  },
  {
    name: 'multifd-zstd-level 21',
    execute: 'migrate-set-parameters',
    args: { 'multifd-zstd-level': 21 },
    expect: err("Parameter 'multifd_zstd_level' expects a value between 0 and 20"),
  },
  {
    name: 'multifd-qatzip-level 0',
    execute: 'migrate-set-parameters',
    args: { 'multifd-qatzip-level': 0 },
    expect: err("Parameter 'multifd_qatzip_level' expects a value between 1 and 9"),
  },
  {
    name: 'x-vcpu-dirty-limit-period 0',
    execute: 'migrate-set-parameters',
    args: { 'x-vcpu-dirty-limit-period': 0 },
    expect: err("Parameter 'x-vcpu-dirty-limit-period' expects a value between 1 and 1000"),
  },
  {
    name: 'vcpu-dirty-limit 0',
    execute: 'migrate-set-parameters',
    args: { 'vcpu-dirty-limit': 0 },
    expect: err("Parameter 'vcpu_dirty_limit' must be greater than 1 MB/s"),
  },
  ...bitmapMappingCases(),
  {
    name: 'max-bandwidth -1 wraps',
    setup: [params({ 'max-bandwidth': -1 })],
    execute: 'query-migrate-parameters',
    expect: { return: { 'max-bandwidth': 18446744073709551615n } },
  },
  {
    name: 'tls-creds null reads back empty',
    setup: [params({ 'tls-creds': null })],
    execute: 'query-migrate-parameters',
    expect: { return: { 'tls-creds': '' } },
  },
  {
    name: 'parameters keep their values',
    setup: [params({ 'multifd-channels': 8, 'downtime-limit': 42 })],
    execute: 'query-migrate-parameters',
    expect: { return: { 'multifd-channels': 8, 'downtime-limit': 42 } },
  },
  { name: 'query-migrate before any migration', execute: 'query-migrate', expect: { return: {} } },
  {
    name: 'migrate-continue in the wrong state',
    execute: 'migrate-continue',
    args: { state: 'pre-switchover' },
    expect: err('Migration not in expected state: none'),
  },
  { name: 'migrate_cancel when idle', execute: 'migrate_cancel', expect: ok },
  {
    name: 'start-postcopy without the capability',
    execute: 'migrate-start-postcopy',
    expect: err('Enable postcopy with migrate_set_capability before the start of migration'),
  },
  {
    name: 'start-postcopy before migration',
    incoming: null,
    setup: [caps('postcopy-ram')],
    execute: 'migrate-start-postcopy',
    expect: err('Postcopy must be started after migration has been started'),
  },
  {
    name: 'migrate-pause outside postcopy',
    execute: 'migrate-pause',
    expect: err('migrate-pause is currently only supported during postcopy-active or postcopy-recover state'),
  },
  {
    name: 'migrate-recover outside postcopy',
    execute: 'migrate-recover',
    args: { uri: 'tcp:127.0.0.1:0' },
    expect: err('Migrate recover can only be run when postcopy is paused.'),
  },
];

export const CASES: Case[] = [...visitor, ...uris, ...rules];
