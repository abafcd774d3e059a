/**
 * Fuzz target: the migration URI parser (src/qapi/uri.ts, QEMU's migrate_uri_parse). Valid URIs
 * of every scheme are built, then bytes inserted, deleted or replaced: the parser answers with a
 * MigrationAddress or a QapiError, and an address it gives survives address -> URI -> address.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { QapiError } from '../../../src/qapi/errors.js';
import { addressToUri, parseMigrationUri } from '../../../src/qapi/uri.js';
import type { FuzzTarget } from './target.js';

const valid = fc.oneof(
  fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 65535 })).map(([h, p]) => `tcp:${h}:${p}`),
  fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 65535 })).map(([h, p]) => `tcp:[${h}]:${p},ipv6`),
  fc.string({ minLength: 1, maxLength: 40 }).map((p) => `unix:${p}`),
  fc.string({ maxLength: 40 }).map((c) => `exec:${c}`),
  fc
    .tuple(fc.string({ minLength: 1 }), fc.bigInt({ min: 0n, max: 1n << 64n }))
    .map(([f, o]) => `file:${f},offset=${o}`),
  fc.tuple(fc.nat(), fc.nat()).map(([c, p]) => `vsock:${c}:${p}`),
  fc.string({ minLength: 1, maxLength: 20 }).map((n) => `fd:${n}`),
  fc.tuple(fc.domain(), fc.nat(65535)).map(([h, p]) => `rdma:${h}:${p}`),
);

/** One edit of a string: insert, delete or replace a piece at a position. */
const mutated = fc
  .tuple(valid, fc.array(fc.tuple(fc.nat(), fc.nat(4), fc.string({ maxLength: 4 })), { maxLength: 4 }))
  .map(([uri, edits]) =>
    edits.reduce((s, [at, del, ins]) => {
      const i = s.length === 0 ? 0 : at % (s.length + 1);
      return s.slice(0, i) + ins + s.slice(i + del);
    }, uri),
  );

export const targets: FuzzTarget[] = [
  {
    name: 'qapi/uri',
    ciRuns: 5000,
    property: () =>
      fc.property(mutated, (uri) => {
        let addr: ReturnType<typeof parseMigrationUri>;
        try {
          addr = parseMigrationUri(uri);
        } catch (e) {
          assert.ok(e instanceof QapiError, `${JSON.stringify(uri)}: not a QapiError: ${e}`);
          return;
        }
        const again = addressToUri(addr);
        if (again !== undefined) assert.deepEqual(parseMigrationUri(again), addr);
      }),
  },
];
