// A runnable tour of the QMP client: connect to a QMP socket (QEMU's or `qmigrate vm`'s),
// detect `channels`, configure migration, watch events, read the status.
//   qmigrate vm -machine none -qmp unix:/tmp/qmp.sock,server=on,wait=off &
//   npx tsx examples/qmp-client.ts /tmp/qmp.sock
import { QmpClient, QmpError } from 'qmigrate';

const path = process.argv[2] ?? '/tmp/qmp.sock';
const qmp = await QmpClient.connect(path, { commandTimeout: 5000 });
const v = qmp.greeting.QMP.version;
console.log(`connected to ${v.package || 'QEMU'} (QEMU ${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro})`);

const { channels } = await qmp.features();
console.log(`migrate takes channels: ${channels}`);

await qmp.migrateSetCapabilities({ capabilities: [{ capability: 'events', state: true }] });
await qmp.migrateSetParameters({ 'downtime-limit': 500, 'max-bandwidth': 1 << 30 });
const params = await qmp.queryMigrateParameters();
console.log(`downtime-limit ${params['downtime-limit']} ms, max-bandwidth ${params['max-bandwidth']} B/s`);

// Events are iterators (or callbacks with qmp.on); they never mix with replies.
const runstate = qmp.listen('STOP', 'RESUME');
await qmp.stop();
await qmp.cont();
for (const e of [await runstate.get(), await runstate.get()]) console.log(`event ${e?.event}`);
runstate.close();

try {
  await qmp.migrate({ channels: [{ 'channel-type': 'main', addr: { transport: 'exec', args: [] } }] });
} catch (e) {
  if (e instanceof QmpError) console.log(`refused: ${e.errorClass}: ${e.desc}`);
}

console.log(
  `status: ${(await qmp.queryStatus()).status}, migration: ${JSON.stringify(await qmp.queryMigrate())}`,
);
await qmp.close();
