/**
 * Fuzz target: the command line of `qmigrate vm` (src/vm/cmdline.ts and the keyval and JSON forms
 * of src/qapi/object-option.ts; QEMU's system/vl.c and util/keyval.c). Command lines QEMU 10.0
 * takes for a RAM-only guest, then mutated: a configuration, or a UsageError with a message.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { QmigrateError } from '../../../src/errors.js';
import { parseObjectOption } from '../../../src/qapi/object-option.js';
import { parseVmArgs, UsageError } from '../../../src/vm/cmdline.js';
import type { FuzzTarget } from './target.js';

const size = fc.oneof(
  fc.nat(4096).map(String),
  fc.constantFrom('64M', '1G', '0', '8k', '1.5G', 'size=128M', '18446744073709551615', '16E'),
);
const path = fc.constantFrom('/tmp/q.sock', '', 'a,b', '@abstract', '/nonexistent/dir/x');
const option = fc.oneof(
  fc.constant(['-machine', 'none']),
  fc.constantFrom(['-M', 'none,memory-backend=mem'], ['-machine', 'help'], ['-machine', 'none,help']),
  size.map((s) => ['-m', s]),
  fc.constantFrom(['-S'], ['-nodefaults'], ['-no-user-config'], ['-display', 'none'], ['-name', 'guest=g']),
  fc.constantFrom(
    ['-object', 'memory-backend-ram,id=mem,size=64M'],
    ['-object', 'memory-backend-file,id=mem,size=64M,mem-path=/dev/shm/x,share=on'],
    ['-object', 'memory-backend-memfd,id=mem,size=64M,share=on'],
    ['-object', 'authz-simple,id=a,identity=CN=x'],
    ['-object', 'tls-creds-psk,id=p,dir=/nonexistent,endpoint=server'],
    ['-object', '{"qom-type":"authz-list","id":"l","policy":"deny","rules":[]}'],
    ['-object', 'qmigrate-workload,id=w,rate=100'],
  ),
  fc
    .constantFrom('defer', 'tcp:127.0.0.1:0', 'unix:/tmp/x', 'exec:cat', 'file:/tmp/f,offset=4096')
    .map((u) => ['-incoming', u]),
  fc
    .tuple(
      fc.constantFrom('-qmp', '-qmp-pretty', '-monitor'),
      path,
      fc.constantFrom('', ',server=on,wait=off', ',server=off'),
    )
    .map(([o, p, f]) => [o, `unix:${p}${f}`]),
  fc.constantFrom(
    ['-qmp', 'tcp:127.0.0.1:0,server=on,wait=off'],
    ['-qmp', 'stdio'],
    ['-monitor', 'none'],
    ['-chardev', 'socket,id=c,path=/tmp/m.sock,server=on,wait=off'],
    ['-mon', 'chardev=c,mode=control'],
    ['-mon', 'chardev=c,mode=readline,pretty=on'],
    ['-run-with', 'exit-with-parent=on'],
    ['-add-fd', 'fd=3,set=1,opaque=x'],
    ['-accel', 'tcg'],
  ),
);

const argv = fc
  .tuple(
    fc.array(option, { maxLength: 7 }),
    fc.array(fc.tuple(fc.nat(), fc.nat(2), fc.string({ maxLength: 3 })), { maxLength: 3 }),
    fc.array(fc.tuple(fc.nat(), fc.constantFrom('-m', '--m', '-object', '-bogus', '', ',', '=', 'help')), {
      maxLength: 2,
    }),
  )
  .map(([opts, edits, inserts]) => {
    const args = opts.flat();
    // Characters edited inside arguments, and whole words inserted or left dangling.
    for (const [at, del, ins] of edits) {
      if (!args.length) break;
      const k = at % args.length;
      const a = args[k]!;
      const i = at % (a.length + 1);
      args[k] = a.slice(0, i) + ins + a.slice(i + del);
    }
    for (const [at, w] of inserts) args.splice(at % (args.length + 1), 0, w);
    return args;
  });

export const targets: FuzzTarget[] = [
  {
    name: 'vm/cmdline',
    ciRuns: 3000,
    property: () =>
      fc.property(argv, (args) => {
        try {
          parseVmArgs(args);
        } catch (e) {
          assert.ok(e instanceof UsageError, `${JSON.stringify(args)}: ${(e as Error)?.stack ?? e}`);
          assert.ok(e.message.length > 0 && !/undefined|\[object /.test(e.message), e.message);
        }
      }),
  },
  {
    name: 'vm/object-option',
    ciRuns: 3000,
    property: () =>
      fc.property(
        option.filter((o) => o[0] === '-object').map((o) => o[1]!),
        fc.array(fc.tuple(fc.nat(), fc.nat(2), fc.string({ maxLength: 3 })), { maxLength: 4 }),
        (text, edits) => {
          const t = edits.reduce((s, [at, del, ins]) => {
            const i = at % (s.length + 1);
            return s.slice(0, i) + ins + s.slice(i + del);
          }, text);
          try {
            parseObjectOption(t);
          } catch (e) {
            assert.ok(e instanceof QmigrateError, `${JSON.stringify(t)}: ${(e as Error)?.stack ?? e}`);
          }
        },
      ),
  },
];
