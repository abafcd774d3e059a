// A migrate_cancel that comes after the whole stream is with an exec child cannot act (the
// child's copy may start the guest elsewhere, test/migration/exec-cancel-after-eof.test.ts).
// QEMU replies `{}` and says nothing; qmigrate replies `{}` too but says on stderr why nothing
// happened, so the user's cancel is not ignored in silence.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startBareVm, waitMigration } from '../helpers/peers.js';

test('a cancel too late for an exec child is answered {} and explained on stderr', async (t) => {
  const vm = await startBareVm(t);
  const qmp = vm.qmp;
  await qmp.migrate({
    channels: [
      {
        'channel-type': 'main',
        addr: { transport: 'exec', args: ['/bin/sh', '-c', 'cat > /dev/null; sleep 2'] },
      },
    ],
  });
  await sleep(700); // the child has read the whole stream by now and sleeps
  assert.deepEqual(await qmp.execute('migrate_cancel'), {});
  const info = await waitMigration(qmp, 10_000);
  assert.equal(info.status, 'completed');
  assert.match(vm.stderr(), /migrate_cancel: too late, the end of the stream is already with the peer/);
});
