// Property tests of the URI codec: every address with a URI survives address -> URI ->
// address, every URI QEMU accepts survives URI -> address -> URI -> address, for every scheme.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { QapiError } from '../../src/qapi/errors.js';
import { intValue } from '../../src/qapi/json.js';
import type { InetSocketAddress, MigrationAddress } from '../../src/qapi/types.js';
import { addressToUri, parseMigrationUri } from '../../src/qapi/uri.js';

const text = (min: number, max: number, without = '') =>
  fc
    .string({
      minLength: min,
      maxLength: max,
      unit: fc.oneof(fc.constantFrom('é', '€', '/', ' '), fc.string({ minLength: 1, maxLength: 1 })),
    })
    .filter((s) => ![...without].some((c) => s.includes(c)));

const flags = fc.record(
  {
    to: fc.integer({ min: 0, max: 65535 }),
    ipv4: fc.boolean(),
    ipv6: fc.boolean(),
    'keep-alive': fc.boolean(),
    mptcp: fc.boolean(),
  },
  { requiredKeys: [] },
);

const inet: fc.Arbitrary<InetSocketAddress> = fc
  .tuple(
    fc.oneof(
      fc.ipV4(),
      fc.domain().filter((d) => d.length <= 64),
      fc.ipV6().filter((h) => h.length <= 64),
      fc.constant(''),
      text(1, 64, ':'),
      text(1, 64, ']'),
    ),
    fc.oneof(fc.integer({ min: 0, max: 65535 }).map(String), text(1, 32, ',')),
    flags,
  )
  .map(([host, port, opts]) => ({ host, port, ...opts }));

const address: fc.Arbitrary<MigrationAddress> = fc.oneof(
  inet.map((a) => ({ transport: 'socket' as const, type: 'inet' as const, ...a })),
  inet.map((a) => ({ transport: 'rdma' as const, ...a })),
  text(1, 200).map((path) => ({ transport: 'socket' as const, type: 'unix' as const, path })),
  fc
    .tuple(text(1, 32, ':'), text(1, 32, ','))
    .map(([cid, port]) => ({ transport: 'socket' as const, type: 'vsock' as const, cid, port })),
  text(1, 50).map((str) => ({ transport: 'socket' as const, type: 'fd' as const, str })),
  text(0, 200).map((cmd) => ({ transport: 'exec' as const, args: ['/bin/sh', '-c', cmd] })),
  fc
    .tuple(
      text(0, 200).filter((f) => !f.includes(',offset=')),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    )
    .map(([filename, off]) => ({ transport: 'file' as const, filename, offset: intValue(off) })),
);

test('address -> URI -> address is the identity for every address with a URI', () => {
  fc.assert(
    fc.property(address, (addr) => {
      const uri = addressToUri(addr);
      if (uri === undefined) return addr.transport === 'socket' || addr.transport === 'rdma';
      assert.deepEqual(parseMigrationUri(uri), addr);
      assert.equal(addressToUri(parseMigrationUri(uri)), uri);
      return true;
    }),
    { numRuns: 3000 },
  );
});

test('every scheme has addresses with a URI', () => {
  const seen = new Set<string>();
  fc.assert(
    fc.property(address, (addr) => {
      const uri = addressToUri(addr);
      if (uri) seen.add(uri.slice(0, uri.indexOf(':')));
      return true;
    }),
    { numRuns: 2000 },
  );
  assert.deepEqual([...seen].sort(), ['exec', 'fd', 'file', 'rdma', 'tcp', 'unix', 'vsock']);
});

const scheme = fc.constantFrom(
  'tcp:',
  'rdma:',
  'unix:',
  'vsock:',
  'fd:',
  'exec:',
  'file:',
  '',
  'TCP:',
  'foo:',
);
const tail = fc.oneof(
  text(0, 80),
  fc
    .array(
      fc.oneof(
        text(0, 5),
        fc.constantFrom(':', '[', ']', ',', ',to=', ',ipv4', '=on', '=off', ',offset=', '0x'),
      ),
    )
    .map((a) => a.join('')),
);

test('URI -> address -> URI -> address: parsing a canonical URI gives the same address', () => {
  fc.assert(
    fc.property(scheme, tail, (s, rest) => {
      let addr: MigrationAddress;
      try {
        addr = parseMigrationUri(s + rest);
      } catch (e) {
        assert.ok(e instanceof QapiError, `non-QMP error ${e}`);
        return true;
      }
      const uri = addressToUri(addr);
      if (uri !== undefined) assert.deepEqual(parseMigrationUri(uri), addr);
      return true;
    }),
    { numRuns: 5000 },
  );
});
