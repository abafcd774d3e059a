/**
 * The sets of migration states that the command rules and `query-migrate` read (QEMU's
 * migration/migration.c: migration_is_running, the postcopy states, and the states
 * fill_source_migration_info / fill_destination_migration_info report). options.ts and
 * migration.ts both ask whether a migration runs, so the sets sit below both.
 */
import type { MigrationStatus } from '../qapi/types.js';

/** The source states in which a migration counts as running (migration_is_running). */
export const RUNNING_STATES: readonly MigrationStatus[] = [
  'setup',
  'active',
  'postcopy-active',
  'postcopy-paused',
  'postcopy-recover-setup',
  'postcopy-recover',
  'pre-switchover',
  'device',
  'wait-unplug',
  'cancelling',
  'colo',
];

export const isRunning = (s: MigrationStatus) => RUNNING_STATES.includes(s);

/** The postcopy states, in which `migrate_cancel` is refused. */
export const POSTCOPY_STATES: readonly MigrationStatus[] = [
  'postcopy-active',
  'postcopy-paused',
  'postcopy-recover-setup',
  'postcopy-recover',
];

/** Outgoing states in which `query-migrate` reports times and RAM statistics. */
export const RAM_STATES: readonly MigrationStatus[] = [
  'active',
  'cancelling',
  'postcopy-active',
  'pre-switchover',
  'device',
  'postcopy-paused',
  'postcopy-recover-setup',
  'postcopy-recover',
  'completed',
];

/** Incoming states `query-migrate` reports. */
export const INCOMING_REPORTED: readonly MigrationStatus[] = [
  'setup',
  'cancelling',
  'cancelled',
  'active',
  'postcopy-active',
  'postcopy-paused',
  'postcopy-recover',
  'failed',
  'colo',
  'completed',
];
