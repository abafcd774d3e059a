// The live line, the plain line and the final report, as exact strings from fixed samples;
// the live line fits the terminal by dropping its least important fields; the ETA is smoothed
// and absent while the migration does not converge.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  EtaEstimator,
  formatBytes,
  formatEta,
  formatPlainLine,
  formatProgressLine,
  formatReport,
} from '../../src/orchestrator/progress.js';
import type { MigrationReport, ProgressSample } from '../../src/orchestrator/types.js';

const MiB = 2 ** 20;

const sample: ProgressSample = {
  type: 'progress',
  elapsedMs: 12_040,
  status: 'active',
  pass: 1,
  transferred: 412 * MiB,
  total: 1024 * MiB,
  remaining: 614 * MiB,
  percent: 40.04,
  throughput: 112.3 * MiB,
  dirtyPagesRate: 1200,
  expectedDowntimeMs: 300,
  etaS: 5.2,
};

test('formatBytes: IEC units with one decimal, rounding up to the next unit', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(412 * MiB), '412.0 MiB');
  assert.equal(formatBytes(1024 * MiB), '1.0 GiB');
  assert.equal(formatBytes(1024 * MiB - 1), '1.0 GiB');
});

test('formatEta: mm:ss, h:mm:ss past an hour, --:-- when unknown', () => {
  assert.equal(formatEta(5.2), '00:06');
  assert.equal(formatEta(83), '01:23');
  assert.equal(formatEta(3723), '1:02:03');
  assert.equal(formatEta(undefined), '--:--');
  assert.equal(formatEta(Number.POSITIVE_INFINITY), '--:--');
});

test('formatProgressLine: every field on a wide terminal', () => {
  assert.equal(
    formatProgressLine(sample, { width: 200 }),
    'active 40%  412.0 MiB / 1.0 GiB  112.3 MiB/s  dirty 1200 pages/s  pass 1  downtime ~300 ms  ETA 00:06',
  );
});

test('formatProgressLine: narrower terminals drop downtime, dirty rate, pass, throughput, bytes in turn', () => {
  const at = (width: number) => formatProgressLine(sample, { width });
  assert.equal(at(85), 'active 40%  412.0 MiB / 1.0 GiB  112.3 MiB/s  dirty 1200 pages/s  pass 1  ETA 00:06');
  assert.equal(at(80), 'active 40%  412.0 MiB / 1.0 GiB  112.3 MiB/s  pass 1  ETA 00:06');
  assert.equal(at(56), 'active 40%  412.0 MiB / 1.0 GiB  112.3 MiB/s  ETA 00:06');
  assert.equal(at(45), 'active 40%  412.0 MiB / 1.0 GiB  ETA 00:06');
  assert.equal(at(22), 'active 40%  ETA 00:06');
  assert.equal(at(20), 'active 40%');
  assert.equal(at(6), 'active');
  for (const w of [6, 20, 22, 40, 45, 50, 56, 70, 80, 85, 100])
    assert.ok(at(w).length <= w, `width ${w}: ${at(w)}`);
});

test('formatProgressLine: unknown percent and a migration that does not converge', () => {
  const s = {
    ...sample,
    status: 'setup' as const,
    percent: undefined,
    etaS: undefined,
    expectedDowntimeMs: undefined,
  };
  assert.equal(
    formatProgressLine(s, { width: 200 }),
    'setup --%  412.0 MiB / 1.0 GiB  112.3 MiB/s  dirty 1200 pages/s  pass 1  ETA --:--',
  );
});

test('from the second pass on, the bytes are what was sent and what is dirty again', () => {
  const later = { ...sample, pass: 3, transferred: 1300 * MiB, remaining: 12 * MiB, percent: 98.8 };
  assert.equal(
    formatProgressLine(later, { width: 200 }),
    'active 98%  1.3 GiB sent, 12.0 MiB dirty  112.3 MiB/s  dirty 1200 pages/s  pass 3  downtime ~300 ms  ETA 00:06',
  );
});

test('formatPlainLine: every field, time since migrate, no clock', () => {
  assert.equal(
    formatPlainLine(sample),
    '[12.0 s] active 40%, 412.0 MiB / 1.0 GiB, 112.3 MiB/s, dirty 1200 pages/s, pass 1, expected downtime 300 ms, ETA 00:06',
  );
});

const completed: MigrationReport = {
  type: 'report',
  status: 'completed',
  totalTimeMs: 12_345,
  setupTimeMs: 5,
  downtimeMs: 1,
  transferred: 1024 * MiB,
  throughput: 83.2 * MiB,
  passes: 4,
  pages: { normal: 262144, duplicate: 0 },
  sourceRunState: 'postmigrate',
  destinationRunState: 'running',
};

test('formatReport: a completed migration', () => {
  assert.deepEqual(formatReport(completed), [
    'migration completed in 12.3 s (setup 5 ms, downtime 1 ms)',
    '  1.0 GiB sent at 83.2 MiB/s, 4 passes, pages: 262144 normal, 0 zero',
    '  the guest runs on the destination',
  ]);
});

test('formatReport: a completed migration whose destination waits (-S), forced by the timeout', () => {
  assert.deepEqual(formatReport({ ...completed, endedBy: 'timeout-pause', destinationRunState: 'paused' }), [
    'migration completed in 12.3 s (setup 5 ms, downtime 1 ms)',
    "  the timeout passed and the source's guest was paused so the migration could converge (--on-timeout pause)",
    '  1.0 GiB sent at 83.2 MiB/s, 4 passes, pages: 262144 normal, 0 zero',
    "  the guest is on the destination, whose run state is 'paused'",
  ]);
});

test('formatReport: a failure says why and that the source still runs', () => {
  const failed: MigrationReport = {
    type: 'report',
    status: 'failed',
    reason: 'Unable to write to socket: Connection reset by peer',
    totalTimeMs: 3200,
    transferred: 412 * MiB,
    passes: 1,
    sourceRunState: 'running',
  };
  assert.deepEqual(formatReport(failed), [
    'migration failed after 3200 ms: Unable to write to socket: Connection reset by peer',
    '  412.0 MiB sent, 1 pass',
    "  the source's guest is still running",
  ]);
});

test('formatReport: a cancel by timeout or interrupt names the cause; a stopped source is said loudly', () => {
  const base: MigrationReport = { type: 'report', status: 'cancelled', sourceRunState: 'running' };
  assert.deepEqual(formatReport({ ...base, endedBy: 'timeout-cancel', totalTimeMs: 30_000 }), [
    'migration cancelled after 30.0 s: the timeout passed and the migration was cancelled (--on-timeout cancel)',
    "  the source's guest is still running",
  ]);
  assert.deepEqual(
    formatReport({
      ...base,
      endedBy: 'interrupt',
      reason: 'SIGINT',
      sourceRunState: 'paused',
      warnings: ["the source's guest ran before the migration and does not now"],
    }),
    [
      'migration cancelled: interrupted: the migration was cancelled',
      '  SIGINT',
      "  the source's guest is NOT running: its run state is 'paused'",
      "  warning: the source's guest ran before the migration and does not now",
    ],
  );
});

test('EtaEstimator: time-weighted; the burst at the start counts for nothing; undefined while dirtying outpaces sending', () => {
  const eta = new EtaEstimator({ tauS: 1 });
  const s = (
    elapsedMs: number,
    throughput: number,
    dirtyPagesRate: number,
    remaining: number,
  ): ProgressSample => ({
    ...sample,
    elapsedMs,
    throughput,
    dirtyPagesRate,
    remaining,
  });
  // At migrate, a burst of 1 GiB/s over no time: no estimate yet.
  assert.equal(eta.update(s(0, 1024 * MiB, 0, 100 * MiB)), undefined);
  // 1 s at 100 MiB/s, 100 MiB left: 1 s.
  assert.equal(eta.update(s(1000, 100 * MiB, 0, 100 * MiB)), 1);
  // Another second at 300 MiB/s: weights 1/e (the older) and 1: (100/e + 300) / (1/e + 1).
  const avg = (100 / Math.E + 300) / (1 / Math.E + 1);
  assert.ok(Math.abs((eta.update(s(2000, 300 * MiB, 0, avg * MiB)) ?? 0) - 1) < 1e-9);
  const stuck = new EtaEstimator();
  stuck.update(s(0, 10 * MiB, 0, 100 * MiB));
  assert.equal(
    stuck.update(s(1000, 10 * MiB, 65536, 100 * MiB)),
    undefined,
    '10 MiB/s sent, 256 MiB/s dirtied',
  );
  assert.equal(stuck.update({ ...s(2000, 10 * MiB, 65536, 0), status: 'completed' }), 0);
});

test('EtaEstimator: no ETA before a second has been seen (67 bytes in the first half second say little)', () => {
  const eta = new EtaEstimator();
  const s = (elapsedMs: number, throughput: number): ProgressSample => ({ ...sample, elapsedMs, throughput });
  assert.equal(eta.update(s(0, 0)), undefined);
  assert.equal(eta.update(s(500, 134)), undefined);
  assert.equal(eta.update(s(1000, 100 * MiB)), undefined, '0.92 s seen, decayed');
  assert.equal(typeof eta.update(s(1500, 100 * MiB)), 'number');
});

test('EtaEstimator: none while nothing moves (a stopped peer), none once cancelled or failed', () => {
  const s = (
    elapsedMs: number,
    throughput: number,
    status: ProgressSample['status'] = 'active',
  ): ProgressSample => ({
    ...sample,
    status,
    elapsedMs,
    throughput,
    dirtyPagesRate: 0,
    remaining: 90 * MiB,
  });
  const eta = new EtaEstimator();
  eta.update(s(0, 0));
  assert.equal(eta.update(s(1000, 10 * MiB)), 9);
  // The destination SIGSTOPped: 0 B/s for a minute. The faded average never quite reaches 0;
  // it gave 120482:16:54 and growing.
  for (let ms = 2000; ms <= 60_000; ms += 1000) assert.equal(eta.update(s(ms, 0)), undefined, `${ms} ms`);
  const cancelled = new EtaEstimator();
  cancelled.update(s(0, 0));
  cancelled.update(s(1000, 10 * MiB));
  for (const status of ['cancelling', 'cancelled', 'failed'] as const)
    assert.equal(cancelled.update({ ...s(2000, 10 * MiB, status), remaining: 0 }), undefined, status);
});
